//! The `IntermediateStep` data model of aiqtoolkit 1.1.0 (docs/toolkit-semantics.md#step-schema), widened to accept the
//! nvidia-nat 1.9 additions (docs/toolkit-semantics.md#nvidia-nat-19-dialect) without losing them.
//!
//! Serialising a step gives the key order of the toolkit's `model_dump()`: declared fields first,
//! then the extra keys that `payload` and `data` allow, in the order they arrived.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// `IntermediateStepType`, plus nat's `TTC_START`/`TTC_END`.
///
/// The discriminants are the codes stored in the database's `steps.event_type` column: they are
/// fixed forever, whatever order the variants are listed in (a test pins each one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i16)]
pub enum EventType {
    LlmStart = 0,
    LlmEnd = 1,
    LlmNewToken = 2,
    ToolStart = 3,
    ToolEnd = 4,
    WorkflowStart = 5,
    WorkflowEnd = 6,
    TaskStart = 7,
    TaskEnd = 8,
    FunctionStart = 9,
    FunctionEnd = 10,
    CustomStart = 11,
    CustomEnd = 12,
    SpanStart = 13,
    SpanChunk = 14,
    SpanEnd = 15,
    TtcStart = 16,
    TtcEnd = 17,
}

/// Whether an event opens, continues or closes a span (`event_state`, not serialised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    Start,
    Chunk,
    End,
}

impl EventType {
    pub const ALL: [EventType; 18] = [
        EventType::LlmStart,
        EventType::LlmEnd,
        EventType::LlmNewToken,
        EventType::ToolStart,
        EventType::ToolEnd,
        EventType::WorkflowStart,
        EventType::WorkflowEnd,
        EventType::TaskStart,
        EventType::TaskEnd,
        EventType::FunctionStart,
        EventType::FunctionEnd,
        EventType::CustomStart,
        EventType::CustomEnd,
        EventType::SpanStart,
        EventType::SpanChunk,
        EventType::SpanEnd,
        EventType::TtcStart,
        EventType::TtcEnd,
    ];

    /// The wire value, e.g. `"LLM_START"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::LlmStart => "LLM_START",
            EventType::LlmEnd => "LLM_END",
            EventType::LlmNewToken => "LLM_NEW_TOKEN",
            EventType::ToolStart => "TOOL_START",
            EventType::ToolEnd => "TOOL_END",
            EventType::WorkflowStart => "WORKFLOW_START",
            EventType::WorkflowEnd => "WORKFLOW_END",
            EventType::TaskStart => "TASK_START",
            EventType::TaskEnd => "TASK_END",
            EventType::FunctionStart => "FUNCTION_START",
            EventType::FunctionEnd => "FUNCTION_END",
            EventType::CustomStart => "CUSTOM_START",
            EventType::CustomEnd => "CUSTOM_END",
            EventType::SpanStart => "SPAN_START",
            EventType::SpanChunk => "SPAN_CHUNK",
            EventType::SpanEnd => "SPAN_END",
            EventType::TtcStart => "TTC_START",
            EventType::TtcEnd => "TTC_END",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The stored code (see the type's doc).
    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i16) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.code() == code)
    }

    /// `event_category`: the part before the first `_` (`LLM`, `TOOL`, `FUNCTION`, ...).
    /// Whether `nat eval` keeps steps of this type in `workflow_output.json` by default (its
    /// step filter keeps LLM and tool ends only).
    pub fn kept_by_default_eval_filter(self) -> bool {
        matches!(self, EventType::LlmEnd | EventType::ToolEnd)
    }

    pub fn category(self) -> &'static str {
        let s = self.as_str();
        s.split_once('_').map_or(s, |(head, _)| head)
    }

    pub fn state(self) -> EventState {
        match self {
            EventType::LlmNewToken | EventType::SpanChunk => EventState::Chunk,
            e if e.as_str().ends_with("_START") => EventState::Start,
            _ => EventState::End,
        }
    }
}

/// `LLMFrameworkEnum` (aiq 1.1.0), plus the values nat 1.9 added.
///
/// The discriminants are the codes stored in `steps.framework`; never change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum Framework {
    Langchain = 0,
    LlamaIndex = 1,
    Crewai = 2,
    SemanticKernel = 3,
    Agno = 4,
    Adk = 5,
    Strands = 6,
    Autogen = 7,
}

impl Framework {
    pub const ALL: [Framework; 8] = [
        Framework::Langchain,
        Framework::LlamaIndex,
        Framework::Crewai,
        Framework::SemanticKernel,
        Framework::Agno,
        Framework::Adk,
        Framework::Strands,
        Framework::Autogen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Langchain => "langchain",
            Framework::LlamaIndex => "llama_index",
            Framework::Crewai => "crewai",
            Framework::SemanticKernel => "semantic_kernel",
            Framework::Agno => "agno",
            Framework::Adk => "adk",
            Framework::Strands => "strands",
            Framework::Autogen => "autogen",
        }
    }

    pub fn parse(s: &str) -> Option<Framework> {
        Framework::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The stored code (see the type's doc).
    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i16) -> Option<Framework> {
        Framework::ALL.into_iter().find(|f| f.code() == code)
    }
}

/// `InvocationNode`: which function a step ran in. In 1.1.0 `parent_id` is the parent *span*'s
/// UUID; in nat it is the parent *function*'s id (B18, docs/toolkit-semantics.md#b18).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvocationNode {
    pub function_id: String,
    pub function_name: String,
    pub parent_id: Option<String>,
    pub parent_name: Option<String>,
}

impl InvocationNode {
    /// What the toolkit fills in when `function_ancestry` is absent.
    pub fn not_available() -> Self {
        InvocationNode {
            function_id: "N/A".to_owned(),
            function_name: "N/A".to_owned(),
            parent_id: None,
            parent_name: None,
        }
    }
}

/// `TokenUsageBaseModel`; nat's `cached_tokens` and `reasoning_tokens` are kept when present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenUsage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cached_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageInfo {
    pub token_usage: TokenUsage,
    pub num_llm_calls: i64,
    pub seconds_between_calls: i64,
}

/// `StreamEventData`: three free-form values plus any extra keys (`extra="allow"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamEventData {
    pub input: Value,
    pub output: Value,
    pub chunk: Value,
    pub extra: Map<String, Value>,
}

/// A JSON object held as its compact text, for a part of a step that nothing reads but the
/// files and rows that restate the step.
///
/// A step's `metadata` (chat responses with their generation info, tool inputs and outputs) is
/// the most finely structured part of a step: parsed into values, it was more than half of a
/// parsed step's memory, for a fifth of its text (BENCHMARKS.md#third-session-2026-11-30). As
/// text it costs its length, and it is parsed again only while the step is being written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectText(Box<str>);

impl ObjectText {
    pub fn of(map: Map<String, Value>) -> ObjectText {
        // Keys keep their order and numbers their digits (serde_json's `preserve_order` and
        // `arbitrary_precision`), so the text reads back into the same object.
        ObjectText(Value::Object(map).to_string().into_boxed_str())
    }

    /// The object again.
    pub fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for ObjectText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Piece by piece, so that every serializer lays it out in its own style (the toolkit's
        // files are indented), without building the object again (see `compact`).
        super::compact::serialize(&self.0, s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub event_type: EventType,
    /// Epoch seconds.
    pub event_timestamp: f64,
    /// The span's start time; only END events may carry it.
    pub span_event_timestamp: Option<f64>,
    pub framework: Option<Framework>,
    /// Model name for LLM events, tool name for TOOL events, function name for FUNCTION events.
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Always a plain object when read from JSON (the `dict[str, Any]` arm of the union wins).
    pub metadata: Option<ObjectText>,
    pub data: Option<StreamEventData>,
    pub usage_info: Option<UsageInfo>,
    pub uuid: String,
    /// Keys beyond the declared fields (`extra="allow"`), kept in arrival order.
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntermediateStep {
    /// nat 1.9's top-level `parent_id` (the parent span's UUID); aiq 1.1.0 has no such field.
    pub parent_id: Option<String>,
    /// `None` is an explicit JSON `null`, which the reference accepts and then crashes on.
    pub function_ancestry: Option<InvocationNode>,
    pub payload: Payload,
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Framework {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for InvocationNode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("function_id", &self.function_id)?;
        m.serialize_entry("function_name", &self.function_name)?;
        m.serialize_entry("parent_id", &self.parent_id)?;
        m.serialize_entry("parent_name", &self.parent_name)?;
        m.end()
    }
}

/// Which toolkit's step schema to write a step in. The toolkits re-serialise the steps they read,
/// each in its own schema, and the combined requests file shows that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepSchema {
    /// Every field the step was sent with, and no other: what the store keeps.
    AsGiven,
    /// aiqtoolkit 1.1: no top-level `parent_id`, and `token_usage` without nat's cached and
    /// reasoning counts (aiq drops them on reading).
    Aiq,
    /// nvidia-nat 1.9: `parent_id` first (a step without one gets its parent function's id or
    /// `root`, as the toolkit's reader needs it), `data.payload` after `chunk`, and every token
    /// count (0 when not sent).
    Nat,
}

/// A step written in one toolkit's schema.
pub struct InSchema<'a>(pub &'a IntermediateStep, pub StepSchema);

impl IntermediateStep {
    /// Whether writing this step in `schema` gives other JSON than writing it as it was sent.
    pub fn rewritten_by(&self, schema: StepSchema) -> bool {
        let usage = self.payload.usage_info.as_ref().map(|u| &u.token_usage);
        match schema {
            StepSchema::AsGiven => false,
            StepSchema::Aiq => {
                self.parent_id.is_some()
                    || usage
                        .is_some_and(|t| t.cached_tokens.is_some() || t.reasoning_tokens.is_some())
            }
            StepSchema::Nat => {
                self.parent_id.is_none()
                    || self.function_ancestry.is_none()
                    || usage
                        .is_some_and(|t| t.cached_tokens.is_none() || t.reasoning_tokens.is_none())
                    || self.payload.data.as_ref().is_some_and(|d| {
                        d.extra.keys().next().map(String::as_str) != Some("payload")
                    })
            }
        }
    }
}

struct TokenUsageIn<'a>(&'a TokenUsage, StepSchema);

impl Serialize for TokenUsageIn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let TokenUsageIn(t, schema) = *self;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("prompt_tokens", &t.prompt_tokens)?;
        m.serialize_entry("completion_tokens", &t.completion_tokens)?;
        // nat's order: prompt, completion, cached, reasoning, total.
        match schema {
            StepSchema::AsGiven => {
                if let Some(v) = t.cached_tokens {
                    m.serialize_entry("cached_tokens", &v)?;
                }
                if let Some(v) = t.reasoning_tokens {
                    m.serialize_entry("reasoning_tokens", &v)?;
                }
            }
            StepSchema::Aiq => {}
            StepSchema::Nat => {
                m.serialize_entry("cached_tokens", &t.cached_tokens.unwrap_or(0))?;
                m.serialize_entry("reasoning_tokens", &t.reasoning_tokens.unwrap_or(0))?;
            }
        }
        m.serialize_entry("total_tokens", &t.total_tokens)?;
        m.end()
    }
}

struct UsageInfoIn<'a>(&'a UsageInfo, StepSchema);

impl Serialize for UsageInfoIn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let UsageInfoIn(u, schema) = *self;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("token_usage", &TokenUsageIn(&u.token_usage, schema))?;
        m.serialize_entry("num_llm_calls", &u.num_llm_calls)?;
        m.serialize_entry("seconds_between_calls", &u.seconds_between_calls)?;
        m.end()
    }
}

struct DataIn<'a>(&'a StreamEventData, StepSchema);

impl Serialize for DataIn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let DataIn(d, schema) = *self;
        let mut m = s.serialize_map(Some(4 + d.extra.len()))?;
        m.serialize_entry("input", &d.input)?;
        m.serialize_entry("output", &d.output)?;
        m.serialize_entry("chunk", &d.chunk)?;
        if schema == StepSchema::Nat {
            m.serialize_entry("payload", d.extra.get("payload").unwrap_or(&Value::Null))?;
        }
        for (k, v) in &d.extra {
            if schema == StepSchema::Nat && k == "payload" {
                continue;
            }
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct PayloadIn<'a>(&'a Payload, StepSchema);

impl Serialize for PayloadIn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let PayloadIn(p, schema) = *self;
        let mut m = s.serialize_map(Some(10 + p.extra.len()))?;
        m.serialize_entry("event_type", &p.event_type)?;
        m.serialize_entry("event_timestamp", &p.event_timestamp)?;
        m.serialize_entry("span_event_timestamp", &p.span_event_timestamp)?;
        m.serialize_entry("framework", &p.framework)?;
        m.serialize_entry("name", &p.name)?;
        m.serialize_entry("tags", &p.tags)?;
        m.serialize_entry("metadata", &p.metadata)?;
        m.serialize_entry("data", &p.data.as_ref().map(|d| DataIn(d, schema)))?;
        m.serialize_entry(
            "usage_info",
            &p.usage_info.as_ref().map(|u| UsageInfoIn(u, schema)),
        )?;
        m.serialize_entry("UUID", &p.uuid)?;
        for (k, v) in &p.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for InSchema<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let InSchema(step, schema) = *self;
        let mut m = s.serialize_map(None)?;
        match schema {
            StepSchema::AsGiven => {
                if let Some(parent_id) = &step.parent_id {
                    m.serialize_entry("parent_id", parent_id)?;
                }
            }
            StepSchema::Aiq => {}
            StepSchema::Nat => {
                let parent = step.parent_id.as_deref().or_else(|| {
                    step.function_ancestry
                        .as_ref()
                        .and_then(|a| a.parent_id.as_deref())
                });
                m.serialize_entry("parent_id", parent.unwrap_or("root"))?;
            }
        }
        match (&step.function_ancestry, schema) {
            // nat requires an ancestry where aiqtoolkit allowed null; its absent value is N/A.
            (None, StepSchema::Nat) => {
                m.serialize_entry("function_ancestry", &InvocationNode::not_available())?
            }
            (ancestry, _) => m.serialize_entry("function_ancestry", ancestry)?,
        }
        m.serialize_entry("payload", &PayloadIn(&step.payload, schema))?;
        m.end()
    }
}

impl Serialize for IntermediateStep {
    /// The step as it was sent ([`StepSchema::AsGiven`]).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        InSchema(self, StepSchema::AsGiven).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_states() {
        assert_eq!(EventType::LlmNewToken.category(), "LLM");
        assert_eq!(EventType::FunctionEnd.category(), "FUNCTION");
        assert_eq!(EventType::TtcStart.category(), "TTC");
        assert_eq!(EventType::LlmNewToken.state(), EventState::Chunk);
        assert_eq!(EventType::SpanChunk.state(), EventState::Chunk);
        assert_eq!(EventType::TaskStart.state(), EventState::Start);
        assert_eq!(EventType::CustomEnd.state(), EventState::End);
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
        }
        assert_eq!(EventType::parse("llm_start"), None);
    }

    #[test]
    fn object_text_reads_back_as_the_object_it_was() {
        let text =
            r#"{"z": 1, "a": [12345678901234567890123, 1.50, "é\n\u0000"], "m": {"k": null}}"#;
        let map: Map<String, Value> = serde_json::from_str(text).unwrap();
        let kept = ObjectText::of(map.clone());
        let back = kept.to_map().unwrap();
        assert_eq!(back, map);
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            ["z", "a", "m"],
            "key order is kept"
        );
        assert!(kept.as_str().contains("12345678901234567890123"));
        assert!(kept.as_str().contains("1.50"), "numbers keep their digits");
        // Serialised through the object, so an indenting serializer indents it.
        assert_eq!(
            serde_json::to_string_pretty(&kept).unwrap(),
            serde_json::to_string_pretty(&map).unwrap()
        );
    }

    /// The codes are stored in every database: changing one silently corrupts every stored run.
    #[test]
    fn stored_codes_are_pinned() {
        let pinned = [
            ("LLM_START", 0),
            ("LLM_END", 1),
            ("LLM_NEW_TOKEN", 2),
            ("TOOL_START", 3),
            ("TOOL_END", 4),
            ("WORKFLOW_START", 5),
            ("WORKFLOW_END", 6),
            ("TASK_START", 7),
            ("TASK_END", 8),
            ("FUNCTION_START", 9),
            ("FUNCTION_END", 10),
            ("CUSTOM_START", 11),
            ("CUSTOM_END", 12),
            ("SPAN_START", 13),
            ("SPAN_CHUNK", 14),
            ("SPAN_END", 15),
            ("TTC_START", 16),
            ("TTC_END", 17),
        ];
        assert_eq!(pinned.len(), EventType::ALL.len());
        for (name, code) in pinned {
            let et = EventType::parse(name).unwrap();
            assert_eq!(et.code(), code, "{name}");
            assert_eq!(EventType::from_code(code), Some(et));
        }
        let pinned = [
            ("langchain", 0),
            ("llama_index", 1),
            ("crewai", 2),
            ("semantic_kernel", 3),
            ("agno", 4),
            ("adk", 5),
            ("strands", 6),
            ("autogen", 7),
        ];
        assert_eq!(pinned.len(), Framework::ALL.len());
        for (name, code) in pinned {
            let f = Framework::parse(name).unwrap();
            assert_eq!(f.code(), code, "{name}");
            assert_eq!(Framework::from_code(code), Some(f));
        }
        assert_eq!(EventType::from_code(18), None);
        assert_eq!(Framework::from_code(-1), None);
    }
    #[test]
    fn a_null_ancestry_is_n_a_in_nat_and_null_in_aiq() {
        let step = crate::trace::parse_step(
            r#"{"function_ancestry": null, "payload": {"event_type": "LLM_START"}}"#,
        )
        .unwrap();
        assert!(step.function_ancestry.is_none(), "the premise");
        let written = |schema| serde_json::to_value(InSchema(&step, schema)).unwrap();
        assert_eq!(written(StepSchema::Aiq)["function_ancestry"], Value::Null);
        assert_eq!(
            written(StepSchema::Nat)["function_ancestry"],
            serde_json::json!({"function_id": "N/A", "function_name": "N/A",
                               "parent_id": null, "parent_name": null})
        );
        assert!(step.rewritten_by(StepSchema::Nat));
    }
}
