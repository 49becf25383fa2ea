//! One span to the toolkit's steps (the table in docs/otlp.md), and an export walked span by
//! span into per-run groups.
//!
//! Steps are built as typed [`IntermediateStep`]s, one at a time, and handed to the caller as
//! they are made: a span with thousands of streamed-token events never exists as thousands of
//! steps at once, so the caller's memory budget applies while the export is mapped.

use crate::trace::{
    EventType, Framework, IntermediateStep, InvocationNode, MAX_ABS_TIMESTAMP, Payload,
    StreamEventData, TokenUsage, UsageInfo, value_fits,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use uuid::Uuid;

/// Which run an export's spans join (docs/otlp.md#which-run).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunTarget {
    /// `x-agentprof-run-id`: an existing run, for every span of the export.
    Header(Uuid),
    /// The resource attribute `agentprof.run.id`: that run, created on first sight.
    Resource(Uuid),
    /// Neither: one run per `service.name`, created on first sight under a fixed id
    /// ([`RunTarget::service_run_id`]), so replicas and restarts agree on it.
    Service(String),
}

impl RunTarget {
    /// The run id of a service's run: a UUIDv5 of its name, stable across servers.
    pub fn service_run_id(service: &str) -> Uuid {
        /// The namespace of agentprof's name-based run ids (a random v4, fixed forever).
        const NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_4c0e_9a57_4d3e_8f21_5c7a_0d94_e3b6);
        Uuid::new_v5(
            &NAMESPACE,
            format!("otlp service.name={service}").as_bytes(),
        )
    }

    pub fn run_id(&self) -> Uuid {
        match self {
            RunTarget::Header(id) | RunTarget::Resource(id) => *id,
            RunTarget::Service(name) => RunTarget::service_run_id(name),
        }
    }
}

/// The runs of an export, in the order they first appear.
#[derive(Debug, Clone, PartialEq)]
pub struct RunGroup {
    pub target: RunTarget,
    /// `service.name` of the first resource seen for this run.
    pub service: String,
    /// Spans mapped into this run.
    pub spans: usize,
}

/// What walking an export found: its runs, and the spans that could not be mapped and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Walked {
    pub groups: Vec<RunGroup>,
    pub rejected: u64,
    /// The first few reasons, then a count.
    pub message: String,
}

/// What an OTLP span without a service name is called (the SDKs' own default).
const UNKNOWN_SERVICE: &str = "unknown_service";
/// Reasons quoted in `partial_success.error_message` before the rest are only counted.
const MAX_REASONS: usize = 5;
/// The longest service name that names a run (the run-name limit of the API).
pub const MAX_SERVICE_NAME: usize = 500;

/// Walks every span of an export, handing each of its steps to `emit(group, trace id, step)`
/// as it is made. `header` (the `x-agentprof-run-id` header) sends every span to one run;
/// otherwise each resource picks its run, and spans of resources that would add more than
/// `max_runs` runs are refused. A span sent twice in one export is mapped once. `emit` may stop
/// the walk (a memory budget spent): its error is returned.
pub fn walk<E>(
    req: &ExportTraceServiceRequest,
    header: Option<Uuid>,
    max_runs: usize,
    mut emit: impl FnMut(usize, &str, IntermediateStep) -> Result<(), E>,
) -> Result<Walked, E> {
    let mut out = Walked::default();
    let mut reasons = Reasons::default();
    let mut group_of: HashMap<RunTarget, usize> = HashMap::new();
    let mut seen: HashSet<(&[u8], &[u8])> = HashSet::new();
    for rs in &req.resource_spans {
        let attrs = Attrs(rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]));
        let spans = || rs.scope_spans.iter().flat_map(|s| &s.spans);
        let mut refuse_all = |why: String| {
            let n = spans().count() as u64;
            if n > 0 {
                reasons.add(&mut out.rejected, n, why);
            }
        };
        let service = attrs
            .str("service.name")
            .filter(|s| !s.is_empty())
            .unwrap_or(UNKNOWN_SERVICE);
        if header.is_none() && service.chars().count() > MAX_SERVICE_NAME {
            refuse_all(format!(
                "{} span(s) of a resource whose service.name is longer than {MAX_SERVICE_NAME} characters",
                spans().count()
            ));
            continue;
        }
        let target = match header {
            Some(id) => RunTarget::Header(id),
            None => match attrs.str("agentprof.run.id") {
                Some(text) => match Uuid::parse_str(text.trim()) {
                    Ok(id) => RunTarget::Resource(id),
                    Err(_) => {
                        refuse_all(format!(
                            "{} span(s) of a resource whose agentprof.run.id {:?} is not a UUID",
                            spans().count(),
                            truncate(text, 64)
                        ));
                        continue;
                    }
                },
                None => RunTarget::Service(service.to_owned()),
            },
        };
        let g = match group_of.get(&target) {
            Some(&g) => g,
            None if out.groups.len() >= max_runs => {
                refuse_all(format!(
                    "{} span(s) of a resource beyond the {max_runs} runs one export may write to",
                    spans().count()
                ));
                continue;
            }
            None => {
                group_of.insert(target.clone(), out.groups.len());
                out.groups.push(RunGroup {
                    target,
                    service: service.to_owned(),
                    spans: 0,
                });
                out.groups.len() - 1
            }
        };
        for span in spans() {
            if !seen.insert((&span.trace_id, &span.span_id)) {
                continue;
            }
            match SpanSteps::new(span) {
                Ok(steps) => {
                    let trace = hex(&span.trace_id);
                    for step in steps {
                        emit(g, &trace, step)?;
                    }
                    out.groups[g].spans += 1;
                }
                Err(why) => reasons.add(
                    &mut out.rejected,
                    1,
                    format!("span {}: {why}", hex(&span.span_id)),
                ),
            }
        }
    }
    out.message = reasons.message(out.rejected);
    Ok(out)
}

/// The reasons quoted for refused spans: the first few, then a count of the rest.
#[derive(Default)]
struct Reasons {
    quoted: Vec<String>,
    counted: u64,
}

impl Reasons {
    fn add(&mut self, rejected: &mut u64, spans: u64, why: String) {
        *rejected += spans;
        if self.quoted.len() < MAX_REASONS {
            self.quoted.push(why);
            self.counted += spans;
        }
    }

    fn message(self, rejected: u64) -> String {
        let mut message = self.quoted.join("; ");
        if rejected > self.counted {
            let _ = write!(message, "; and {} more", rejected - self.counted);
        }
        message
    }
}

/// The steps of one span, made one at a time: its START, one `LLM_NEW_TOKEN` per streamed-token
/// event of an LLM span, and its END.
struct SpanSteps<'a> {
    span: &'a Span,
    start_type: EventType,
    end_type: EventType,
    uuid: String,
    parent: String,
    name: String,
    framework: Option<Framework>,
    ancestry: Option<InvocationNode>,
    start: f64,
    end: f64,
    input: Value,
    output: Value,
    usage: Option<UsageInfo>,
    /// What the sender says an LLM call cost (USD): kept in the END step as `cost_usd`.
    cost: Option<f64>,
    /// What comes next: 0 the START, 1 + i the span's event i, past the events the END.
    next: usize,
    done: bool,
}

impl<'a> SpanSteps<'a> {
    /// The span's steps, or why it has none.
    fn new(span: &'a Span) -> Result<SpanSteps<'a>, String> {
        if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
            return Err("its trace id is not 16 bytes, or is all zero".to_owned());
        }
        if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
            return Err("its span id is not 8 bytes, or is all zero".to_owned());
        }
        if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
            return Err("its parent span id is not 8 bytes".to_owned());
        }
        if span.start_time_unix_nano == 0 || span.end_time_unix_nano < span.start_time_unix_nano {
            return Err("it has no start time, or ends before it starts".to_owned());
        }
        let attrs = Attrs(&span.attributes);
        let (start_type, end_type) = kind_of(span, attrs);
        let uuid = hex(&span.span_id);
        let parent = if span.parent_span_id.is_empty() {
            "root".to_owned()
        } else {
            hex(&span.parent_span_id)
        };
        // The toolkit's own start time when it sent a usable one (exact), else the span's.
        let start = attrs
            .f64("nat.event_timestamp")
            .filter(|t| t.is_finite() && *t > 0.0 && *t <= MAX_ABS_TIMESTAMP)
            .unwrap_or_else(|| seconds(span.start_time_unix_nano));
        let end = seconds(span.end_time_unix_nano).max(start);
        let (genai_in, genai_out) = genai_keys(start_type);
        Ok(SpanSteps {
            name: step_name(span, attrs, start_type),
            framework: attrs.str("nat.framework").and_then(Framework::parse),
            ancestry: ancestry(span, attrs, start_type, &uuid, &parent),
            input: or_genai(
                value_attr(attrs, ["input.value_obj", "input.value", "input.mime_type"]),
                attrs,
                genai_in,
            ),
            output: or_genai(
                value_attr(
                    attrs,
                    ["output.value_obj", "output.value", "output.mime_type"],
                ),
                attrs,
                genai_out,
            ),
            usage: usage(attrs),
            cost: (start_type == EventType::LlmStart)
                .then(|| reported_cost(attrs))
                .flatten(),
            span,
            start_type,
            end_type,
            uuid,
            parent,
            start,
            end,
            next: 0,
            done: false,
        })
    }

    fn step(
        &self,
        event_type: EventType,
        event_timestamp: f64,
        span_event_timestamp: Option<f64>,
        data: StreamEventData,
        usage_info: Option<UsageInfo>,
    ) -> IntermediateStep {
        IntermediateStep {
            parent_id: Some(self.parent.clone()),
            function_ancestry: self.ancestry.clone(),
            payload: Payload {
                event_type,
                event_timestamp,
                span_event_timestamp,
                framework: self.framework,
                name: Some(self.name.clone()),
                tags: None,
                metadata: None,
                data: Some(data),
                usage_info,
                uuid: self.uuid.clone(),
                extra: Map::new(),
            },
        }
    }
}

/// A step's `data`: its three values, and the `payload` key the toolkit's exporter writes as
/// null (kept so that a span renders to the same step it always has, and meets its stored copy
/// when it is sent again).
fn data(input: Value, output: Value, chunk: Value) -> StreamEventData {
    let mut extra = Map::new();
    extra.insert("payload".to_owned(), Value::Null);
    StreamEventData {
        input,
        output,
        chunk,
        extra,
    }
}

impl Iterator for SpanSteps<'_> {
    type Item = IntermediateStep;

    fn next(&mut self) -> Option<IntermediateStep> {
        if self.done {
            return None;
        }
        if self.next == 0 {
            self.next = 1;
            return Some(self.step(
                self.start_type,
                self.start,
                None,
                data(self.input.clone(), Value::Null, Value::Null),
                None,
            ));
        }
        if self.start_type == EventType::LlmStart {
            while let Some(event) = self.span.events.get(self.next - 1) {
                self.next += 1;
                if !matches!(event.name.as_str(), "LLM_NEW_TOKEN" | "new_token") {
                    continue;
                }
                let chunk = Attrs(&event.attributes)
                    .str("chunk")
                    .map_or(Value::Null, Value::from);
                let at = seconds(event.time_unix_nano).clamp(self.start, self.end);
                return Some(self.step(
                    EventType::LlmNewToken,
                    at,
                    None,
                    data(Value::Null, Value::Null, chunk),
                    None,
                ));
            }
        }
        self.done = true;
        let data = data(
            std::mem::take(&mut self.input),
            std::mem::take(&mut self.output),
            Value::Null,
        );
        let usage = self.usage.take();
        let mut step = self.step(self.end_type, self.end, Some(self.start), data, usage);
        if let Some(cost) = self.cost.and_then(serde_json::Number::from_f64) {
            step.payload
                .extra
                .insert("cost_usd".to_owned(), Value::Number(cost));
        }
        Some(step)
    }
}

/// What kind of call a span is: the START and END event types it becomes.
fn kind_of(span: &Span, attrs: Attrs<'_>) -> (EventType, EventType) {
    use EventType::*;
    let pair = |category: &str| match category {
        "LLM" => Some((LlmStart, LlmEnd)),
        "TOOL" => Some((ToolStart, ToolEnd)),
        "WORKFLOW" => Some((WorkflowStart, WorkflowEnd)),
        "TASK" => Some((TaskStart, TaskEnd)),
        "FUNCTION" => Some((FunctionStart, FunctionEnd)),
        "CUSTOM" => Some((CustomStart, CustomEnd)),
        "SPAN" => Some((SpanStart, SpanEnd)),
        "TTC" => Some((TtcStart, TtcEnd)),
        _ => None,
    };
    if let Some(et) = attrs.str("nat.event_type").and_then(EventType::parse)
        && let Some(p) = pair(et.category())
    {
        return p;
    }
    // A chain or agent at the root of its trace is the workflow run itself.
    let function = if span.parent_span_id.is_empty() {
        (WorkflowStart, WorkflowEnd)
    } else {
        (FunctionStart, FunctionEnd)
    };
    if let Some(kind) = attrs.str("openinference.span.kind") {
        return match kind.to_ascii_uppercase().as_str() {
            "LLM" => (LlmStart, LlmEnd),
            "TOOL" | "RETRIEVER" | "RERANKER" | "EMBEDDING" => (ToolStart, ToolEnd),
            "CHAIN" | "AGENT" => function,
            "GUARDRAIL" | "EVALUATOR" | "PROMPT" => (FunctionStart, FunctionEnd),
            _ => (SpanStart, SpanEnd),
        };
    }
    // The OTel GenAI conventions' operations; retrieval and embeddings are tools as
    // OpenInference's RETRIEVER and EMBEDDING are.
    match attrs.str("gen_ai.operation.name") {
        Some("chat" | "text_completion" | "generate_content") => (LlmStart, LlmEnd),
        Some("execute_tool" | "embeddings" | "retrieval") => (ToolStart, ToolEnd),
        Some("invoke_agent" | "create_agent" | "invoke_workflow") => function,
        _ => (SpanStart, SpanEnd),
    }
}

/// `payload.name`: the model of an LLM call, the tool of a tool call, else the toolkit's own
/// name for the step, else the span's name.
fn step_name(span: &Span, attrs: Attrs<'_>, start_type: EventType) -> String {
    let nonempty = |key: &str| attrs.str(key).filter(|s| !s.is_empty());
    let picked = match start_type {
        EventType::LlmStart => nonempty("nat.subspan.name")
            .or_else(|| nonempty("llm.model_name"))
            .or_else(|| nonempty("gen_ai.request.model"))
            .or_else(|| nonempty("gen_ai.response.model")),
        EventType::ToolStart => nonempty("nat.subspan.name")
            .or_else(|| nonempty("tool.name"))
            .or_else(|| nonempty("gen_ai.tool.name")),
        _ => nonempty("nat.subspan.name"),
    };
    picked.unwrap_or(&span.name).to_owned()
}

/// `function_ancestry`: the toolkit's own (`nat.function.*`), or else one that needs nothing
/// but this span: a function-like span is its own function under its parent span; any other
/// span runs in its parent span, whose name a span does not carry.
fn ancestry(
    span: &Span,
    attrs: Attrs<'_>,
    start_type: EventType,
    uuid: &str,
    parent: &str,
) -> Option<InvocationNode> {
    let known = |key: &str| {
        attrs
            .str(key)
            .filter(|s| *s != "unknown")
            .map(str::to_owned)
    };
    let node =
        |id: &str, name: &str, parent_id: Option<&str>, parent_name: Option<&str>| InvocationNode {
            function_id: id.to_owned(),
            function_name: name.to_owned(),
            parent_id: parent_id.map(str::to_owned),
            parent_name: parent_name.map(str::to_owned),
        };
    if let Some(id) = attrs.str("nat.function.id") {
        if id == "unknown" {
            return None;
        }
        return Some(InvocationNode {
            function_id: id.to_owned(),
            function_name: known("nat.function.name").unwrap_or_else(|| "unknown".to_owned()),
            parent_id: known("nat.function.parent_id"),
            parent_name: known("nat.function.parent_name"),
        });
    }
    let root = || node("root", "root", None, None);
    if start_type == EventType::WorkflowStart {
        // As the toolkit records its workflow steps.
        return Some(root());
    }
    let own_function = start_type == EventType::FunctionStart;
    Some(match (own_function, span.parent_span_id.is_empty()) {
        (true, true) => node(uuid, &span.name, Some("root"), Some("root")),
        (true, false) => node(uuid, &span.name, Some(parent), None),
        (false, true) => root(),
        (false, false) => node(parent, "unknown", None, None),
    })
}

/// `usage_info` of the END step, when the span carries any count. Each count is read from the
/// first of its keys the span has: OpenInference's, then the OTel GenAI conventions' current
/// name, then the names earlier versions and instrumentations used (docs/otlp.md lists them).
fn usage(attrs: Attrs<'_>) -> Option<UsageInfo> {
    let count = |keys: &[&str]| keys.iter().find_map(|k| attrs.i64(k));
    let prompt = count(&["llm.token_count.prompt", "gen_ai.usage.input_tokens"]);
    let completion = count(&["llm.token_count.completion", "gen_ai.usage.output_tokens"]);
    let cached = count(&[
        "llm.token_count.prompt_details.cache_read",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "gen_ai.usage.details.cache_read_tokens",
    ]);
    let reasoning = count(&[
        "llm.token_count.completion_details.reasoning",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
        "gen_ai.usage.details.reasoning_tokens",
    ]);
    let total = count(&["llm.token_count.total", "gen_ai.usage.total_tokens"]);
    let calls = attrs.i64("nat.usage.num_llm_calls");
    let between = attrs.i64("nat.usage.seconds_between_calls");
    let any = [prompt, completion, cached, reasoning, total]
        .iter()
        .any(Option::is_some);
    if !any && calls.is_none() && between.is_none() {
        return None;
    }
    let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
    let total = match total.unwrap_or(0) {
        // Counts come from the sender: no overflow, whatever they are.
        0 => prompt.saturating_add(completion),
        t => t,
    };
    Some(UsageInfo {
        token_usage: TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: total,
            cached_tokens: Some(cached.unwrap_or(0)),
            reasoning_tokens: Some(reasoning.unwrap_or(0)),
        },
        num_llm_calls: calls.unwrap_or(0),
        seconds_between_calls: between.unwrap_or(0),
    })
}

/// What an LLM span says its call cost, in USD: OpenInference's `llm.cost.total` (or its prompt
/// and completion parts), else the `gen_ai.usage.cost` OpenLIT and Langfuse read, else the
/// `operation.cost` of pydantic-ai and Logfire. The OTel GenAI conventions have no cost yet.
/// Only LLM spans: an agent span's cost (Logfire's Claude integration sends one) sums its calls'.
fn reported_cost(attrs: Attrs<'_>) -> Option<f64> {
    let (prompt, completion) = (
        attrs.f64("llm.cost.prompt"),
        attrs.f64("llm.cost.completion"),
    );
    let parts = (prompt.is_some() || completion.is_some())
        .then(|| prompt.unwrap_or(0.0) + completion.unwrap_or(0.0));
    // In this order; a value that is no cost (negative, not a number) passes to the next.
    [
        attrs.f64("llm.cost.total"),
        parts,
        attrs.f64("gen_ai.usage.cost"),
        attrs.f64("operation.cost"),
    ]
    .into_iter()
    .flatten()
    .find(|v| v.is_finite() && *v >= 0.0)
}

/// An input or output, from its `[value_obj, value, mime_type]` attribute keys: the toolkit's
/// JSON-encoded original (`*.value_obj`) when it sent one a step can hold, else the
/// OpenInference value, parsed when its mime type says JSON (so a list of messages reads as the
/// list the toolkit would have recorded). JSON a step cannot hold (a number beyond a 64-bit
/// float, nesting deeper than a stored step can be read back with) is kept as its text.
fn value_attr(attrs: Attrs<'_>, [obj_key, text_key, mime_key]: [&str; 3]) -> Value {
    let parsed = |text: &str| serde_json::from_str::<Value>(text).ok().filter(value_fits);
    let obj_text = attrs.str(obj_key);
    if let Some(v) = obj_text.and_then(parsed) {
        return v;
    }
    let Some(text) = attrs.str(text_key) else {
        return obj_text.map_or(Value::Null, Value::from);
    };
    let json = attrs
        .str(mime_key)
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    json.then(|| parsed(text))
        .flatten()
        .unwrap_or_else(|| Value::from(text))
}

/// The OTel GenAI attributes that hold a step's input and output, by kind: an LLM call's
/// messages, a tool call's arguments and result. Read only when the span has no OpenInference
/// value: both describe the same call, and OpenInference's is what the toolkit's own exporter
/// sends.
fn genai_keys(start_type: EventType) -> (Option<&'static str>, Option<&'static str>) {
    match start_type {
        EventType::LlmStart => (
            Some("gen_ai.input.messages"),
            Some("gen_ai.output.messages"),
        ),
        EventType::ToolStart => (
            Some("gen_ai.tool.call.arguments"),
            Some("gen_ai.tool.call.result"),
        ),
        _ => (None, None),
    }
}

/// A step's input or output: OpenInference's (`value`, from [`value_attr`]) when the span has
/// one, else GenAI attribute `key`'s.
fn or_genai(value: Value, attrs: Attrs<'_>, key: Option<&str>) -> Value {
    match key.and_then(|k| attrs.get(k)) {
        Some(v) if value.is_null() => genai_value(v),
        _ => value,
    }
}

/// A GenAI content attribute as a step holds it. Instrumentations send these as JSON text or as
/// structured values. Text is read as JSON only when it is an object or a list (messages,
/// arguments), so that a result "42" or "null" stays the text it was; JSON a step cannot hold
/// stays its text.
fn genai_value(v: &any_value::Value) -> Value {
    match v {
        any_value::Value::StringValue(text) => text
            .trim_start()
            .starts_with(['{', '['])
            .then(|| serde_json::from_str::<Value>(text).ok())
            .flatten()
            .filter(value_fits)
            .unwrap_or_else(|| Value::from(text.as_str())),
        other => {
            let json = any_to_json(other);
            if value_fits(&json) {
                json
            } else {
                Value::from(json.to_string())
            }
        }
    }
}

/// An OTLP value as JSON: lists as arrays, key-value lists as objects, bytes as hex.
fn any_to_json(v: &any_value::Value) -> Value {
    use any_value::Value as V;
    let of = |a: &AnyValue| a.value.as_ref().map_or(Value::Null, any_to_json);
    match v {
        V::StringValue(s) => Value::from(s.as_str()),
        V::BoolValue(b) => Value::from(*b),
        V::IntValue(n) => Value::from(*n),
        V::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        V::BytesValue(b) => Value::from(hex(b)),
        V::ArrayValue(a) => Value::Array(a.values.iter().map(of).collect()),
        V::KvlistValue(kv) => Value::Object(
            kv.values
                .iter()
                .map(|e| (e.key.clone(), e.value.as_ref().map_or(Value::Null, of)))
                .collect(),
        ),
    }
}

fn seconds(nanos: u64) -> f64 {
    // Whole seconds and the remainder apart, so the fraction keeps every digit a float can hold.
    (nanos / 1_000_000_000) as f64 + (nanos % 1_000_000_000) as f64 / 1e9
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn truncate(s: &str, chars: usize) -> &str {
    s.char_indices().nth(chars).map_or(s, |(i, _)| &s[..i])
}

/// A span's or resource's attributes, looked up by key (a span has a few dozen: a scan is
/// cheaper than building a map).
#[derive(Clone, Copy)]
pub(crate) struct Attrs<'a>(pub &'a [KeyValue]);

impl<'a> Attrs<'a> {
    fn get(self, key: &str) -> Option<&'a any_value::Value> {
        self.0
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v: &AnyValue| v.value.as_ref())
    }

    fn str(self, key: &str) -> Option<&'a str> {
        match self.get(key)? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }

    fn i64(self, key: &str) -> Option<i64> {
        match self.get(key)? {
            any_value::Value::IntValue(n) => Some(*n),
            any_value::Value::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => {
                Some(*d as i64)
            }
            any_value::Value::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn f64(self, key: &str) -> Option<f64> {
        match self.get(key)? {
            any_value::Value::DoubleValue(d) => Some(*d),
            any_value::Value::IntValue(n) => Some(*n as f64),
            any_value::Value::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, span::Event};
    use serde_json::json;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.to_owned())
    }

    fn span(id: u8, parent: Option<u8>, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("span{id}"),
            start_time_unix_nano: 1_700_000_000_250_000_000,
            end_time_unix_nano: 1_700_000_001_750_000_000,
            attributes: attrs,
            ..Default::default()
        }
    }

    /// The old shape of a mapped export, for assertions: per group, eval-form requests of the
    /// steps as JSON, each request's steps in time order.
    struct MappedExport {
        groups: Vec<Group>,
        rejected: u64,
        message: String,
    }

    struct Group {
        target: RunTarget,
        requests: Vec<Value>,
    }

    fn map_export(req: &ExportTraceServiceRequest, header: Option<Uuid>) -> MappedExport {
        let mut steps: Vec<(usize, String, IntermediateStep)> = Vec::new();
        let walked = walk(req, header, 64, |g, trace, step| {
            steps.push((g, trace.to_owned(), step));
            Ok::<_, ()>(())
        })
        .unwrap();
        let groups = walked
            .groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                let mut traces: Vec<String> = Vec::new();
                for (_, t, _) in steps.iter().filter(|(sg, _, _)| *sg == g) {
                    if !traces.contains(t) {
                        traces.push(t.clone());
                    }
                }
                let requests = traces
                    .iter()
                    .map(|t| {
                        let mut list: Vec<&IntermediateStep> = steps
                            .iter()
                            .filter(|(sg, st, _)| *sg == g && st == t)
                            .map(|(_, _, s)| s)
                            .collect();
                        list.sort_by(|a, b| {
                            a.payload
                                .event_timestamp
                                .total_cmp(&b.payload.event_timestamp)
                        });
                        let list: Vec<Value> = list
                            .into_iter()
                            .map(|s| {
                                serde_json::to_value(crate::trace::InSchema(
                                    s,
                                    crate::trace::StepSchema::AsGiven,
                                ))
                                .unwrap()
                            })
                            .collect();
                        serde_json::json!({"id": t, "intermediate_steps": list})
                    })
                    .collect();
                Group {
                    target: group.target.clone(),
                    requests,
                }
            })
            .collect();
        MappedExport {
            groups,
            rejected: walked.rejected,
            message: walked.message,
        }
    }

    fn export(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s(service))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn an_openinference_llm_span_becomes_a_start_and_an_end() {
        let mut llm = span(
            2,
            Some(1),
            vec![
                kv("openinference.span.kind", s("LLM")),
                kv("llm.model_name", s("gpt-x")),
                kv("llm.token_count.prompt", any_value::Value::IntValue(10)),
                kv("llm.token_count.completion", any_value::Value::IntValue(5)),
                kv("input.value", s("hello")),
                kv("output.value", s("world")),
            ],
        );
        llm.events.push(Event {
            time_unix_nano: 1_700_000_001_000_000_000,
            name: "new_token".to_owned(),
            attributes: vec![kv("chunk", s("wor"))],
            dropped_attributes_count: 0,
        });
        let mapped = map_export(&export("svc", vec![llm]), None);
        assert_eq!(mapped.rejected, 0);
        let g = &mapped.groups[0];
        assert_eq!(g.target, RunTarget::Service("svc".to_owned()));
        let steps = g.requests[0]["intermediate_steps"].as_array().unwrap();
        let types: Vec<&str> = steps
            .iter()
            .map(|s| s["payload"]["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["LLM_START", "LLM_NEW_TOKEN", "LLM_END"]);
        let end = &steps[2]["payload"];
        assert_eq!(end["name"], "gpt-x");
        assert_eq!(end["event_timestamp"], 1_700_000_001.75);
        assert_eq!(end["span_event_timestamp"], 1_700_000_000.25);
        assert_eq!(end["usage_info"]["token_usage"]["total_tokens"], 15);
        assert_eq!(end["data"]["output"], "world");
        assert_eq!(end["UUID"], "0202020202020202");
        assert_eq!(steps[0]["parent_id"], "0101010101010101");
        assert_eq!(steps[1]["payload"]["data"]["chunk"], "wor");
        assert_eq!(g.requests[0]["id"], "07070707070707070707070707070707");
    }

    /// The END step's payload of one span with `attrs`.
    fn end_of(attrs: Vec<KeyValue>) -> Value {
        let mapped = map_export(&export("svc", vec![span(2, Some(1), attrs)]), None);
        let steps = mapped.groups[0].requests[0]["intermediate_steps"]
            .as_array()
            .unwrap()
            .clone();
        steps.last().unwrap()["payload"].clone()
    }

    #[test]
    fn genai_counts_are_read_under_every_name_they_have_had() {
        let int = any_value::Value::IntValue;
        let chat = || kv("gen_ai.operation.name", s("chat"));
        for (cache_key, reasoning_key) in [
            (
                "gen_ai.usage.cache_read.input_tokens",
                "gen_ai.usage.reasoning.output_tokens",
            ),
            (
                "gen_ai.usage.cache_read_input_tokens",
                "gen_ai.usage.reasoning_tokens",
            ),
            (
                "gen_ai.usage.details.cache_read_tokens",
                "gen_ai.usage.details.reasoning_tokens",
            ),
        ] {
            let end = end_of(vec![
                chat(),
                kv("gen_ai.response.model", s("m-2024")),
                kv("gen_ai.usage.input_tokens", int(100)),
                kv("gen_ai.usage.output_tokens", int(20)),
                kv(cache_key, int(64)),
                kv(reasoning_key, int(16)),
                kv("gen_ai.usage.total_tokens", int(130)),
            ]);
            assert_eq!(end["event_type"], "LLM_END");
            assert_eq!(
                end["name"], "m-2024",
                "the response model when no request model"
            );
            let usage = &end["usage_info"]["token_usage"];
            assert_eq!(usage["cached_tokens"], 64, "{cache_key}");
            assert_eq!(usage["reasoning_tokens"], 16, "{reasoning_key}");
            assert_eq!(usage["total_tokens"], 130);
        }
        // OpenInference's count, when both are there, is the one kept.
        let end = end_of(vec![
            chat(),
            kv("llm.token_count.prompt_details.cache_read", int(5)),
            kv("gen_ai.usage.cache_read.input_tokens", int(64)),
        ]);
        assert_eq!(end["usage_info"]["token_usage"]["cached_tokens"], 5);
    }

    #[test]
    fn an_llm_calls_reported_cost_is_kept() {
        let dbl = any_value::Value::DoubleValue;
        let chat = || kv("gen_ai.operation.name", s("chat"));
        for (attrs, cost) in [
            (vec![kv("operation.cost", dbl(2.25e-5))], Some(2.25e-5)),
            (vec![kv("gen_ai.usage.cost", s("0.5"))], Some(0.5)),
            (
                vec![
                    kv("llm.cost.prompt", dbl(0.25)),
                    kv("llm.cost.completion", dbl(0.5)),
                ],
                Some(0.75),
            ),
            (
                vec![
                    kv("llm.cost.total", dbl(1.0)),
                    kv("operation.cost", dbl(9.0)),
                ],
                Some(1.0),
            ),
            (vec![kv("operation.cost", dbl(-1.0))], None),
            // OpenInference's parts come before the other conventions' totals.
            (
                vec![
                    kv("llm.cost.prompt", dbl(0.25)),
                    kv("gen_ai.usage.cost", dbl(9.0)),
                ],
                Some(0.25),
            ),
            // A value that is no cost passes to the next attribute.
            (
                vec![
                    kv("llm.cost.total", dbl(-1.0)),
                    kv("operation.cost", dbl(0.3)),
                ],
                Some(0.3),
            ),
            (vec![], None),
        ] {
            let end = end_of([vec![chat()], attrs.clone()].concat());
            assert_eq!(end["cost_usd"].as_f64(), cost, "{attrs:?}");
        }
        // An agent's span sums its calls' costs: not kept, which would count them twice.
        let agent = end_of(vec![
            kv("gen_ai.operation.name", s("invoke_agent")),
            kv("operation.cost", dbl(3.0)),
        ]);
        assert!(agent.get("cost_usd").is_none());
    }

    #[test]
    fn genai_messages_and_tool_calls_are_read_as_text_or_structured() {
        use any_value::Value as V;
        let structured = V::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(V::KvlistValue(KeyValueList {
                    values: vec![
                        kv("role", s("assistant")),
                        kv("n", V::IntValue(3)),
                        kv("ok", V::BoolValue(true)),
                    ],
                })),
            }],
        });
        let end = end_of(vec![
            kv("gen_ai.operation.name", s("chat")),
            kv(
                "gen_ai.input.messages",
                s(r#"[{"role":"user","parts":[]}]"#),
            ),
            kv("gen_ai.output.messages", structured),
        ]);
        assert_eq!(end["data"]["input"], json!([{"role": "user", "parts": []}]));
        assert_eq!(
            end["data"]["output"],
            json!([{"role": "assistant", "n": 3, "ok": true}])
        );

        let tool = end_of(vec![
            kv("gen_ai.operation.name", s("execute_tool")),
            kv("gen_ai.tool.name", s("get_weather")),
            kv("gen_ai.tool.call.arguments", s(r#"{"city":"Paris"}"#)),
            kv("gen_ai.tool.call.result", s("not json")),
        ]);
        assert_eq!(tool["event_type"], "TOOL_END");
        assert_eq!(tool["data"]["input"], json!({"city": "Paris"}));
        assert_eq!(tool["data"]["output"], "not json");
        let scalar = end_of(vec![
            kv("gen_ai.operation.name", s("execute_tool")),
            kv("gen_ai.tool.call.result", s("42")),
        ]);
        assert_eq!(
            scalar["data"]["output"], "42",
            "a scalar result stays its text"
        );

        // An OpenInference value wins over the GenAI one.
        let both = end_of(vec![
            kv("gen_ai.operation.name", s("execute_tool")),
            kv("input.value", s("from openinference")),
            kv("gen_ai.tool.call.arguments", s("{}")),
        ]);
        assert_eq!(both["data"]["input"], "from openinference");

        for (operation, event) in [
            ("retrieval", "TOOL_END"),
            ("invoke_workflow", "FUNCTION_END"),
        ] {
            let end = end_of(vec![kv("gen_ai.operation.name", s(operation))]);
            assert_eq!(end["event_type"], event, "{operation}");
        }
    }

    #[test]
    fn the_toolkits_own_attributes_win() {
        let sp = span(
            3,
            None,
            vec![
                kv("nat.event_type", s("TOOL_START")),
                kv("openinference.span.kind", s("CHAIN")),
                kv("nat.function.id", s("f-1")),
                kv("nat.function.name", s("<workflow>")),
                kv("nat.function.parent_id", s("root")),
                kv("nat.function.parent_name", s("unknown")),
                kv("nat.subspan.name", s("capital_lookup")),
                kv("nat.framework", s("langchain")),
                kv(
                    "nat.event_timestamp",
                    any_value::Value::DoubleValue(1_700_000_000.123_456_7),
                ),
                kv("input.value_obj", s(r#"{"country": "Peru"}"#)),
            ],
        );
        let mapped = map_export(&export("svc", vec![sp]), None);
        let steps = mapped.groups[0].requests[0]["intermediate_steps"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(steps[0]["payload"]["event_type"], "TOOL_START");
        assert_eq!(
            steps[0]["payload"]["event_timestamp"],
            1_700_000_000.123_456_7
        );
        assert_eq!(steps[0]["payload"]["name"], "capital_lookup");
        assert_eq!(steps[0]["payload"]["framework"], "langchain");
        assert_eq!(steps[0]["payload"]["data"]["input"]["country"], "Peru");
        assert_eq!(
            steps[0]["function_ancestry"],
            json!({"function_id": "f-1", "function_name": "<workflow>", "parent_id": "root", "parent_name": null})
        );
        assert_eq!(steps[1]["payload"]["event_type"], "TOOL_END");
        assert_eq!(steps[0]["parent_id"], "root");
    }

    #[test]
    fn a_span_maps_the_same_whatever_else_is_in_its_export() {
        let child = span(2, Some(1), vec![kv("openinference.span.kind", s("TOOL"))]);
        let parent = span(1, None, vec![kv("openinference.span.kind", s("AGENT"))]);
        let alone = map_export(&export("svc", vec![child.clone()]), None);
        let with_parent = map_export(&export("svc", vec![child, parent]), None);
        let steps_of = |m: &MappedExport| m.groups[0].requests[0]["intermediate_steps"].clone();
        let alone = steps_of(&alone);
        let with_parent = steps_of(&with_parent);
        for step in alone.as_array().unwrap() {
            assert!(with_parent.as_array().unwrap().contains(step));
        }
    }

    #[test]
    fn bad_spans_are_counted_and_named() {
        let mut no_id = span(4, None, vec![]);
        no_id.span_id = vec![];
        let mut backwards = span(5, None, vec![]);
        backwards.end_time_unix_nano = 1;
        let good = span(6, None, vec![]);
        let mapped = map_export(
            &export("svc", vec![no_id, backwards, good.clone(), good]),
            None,
        );
        assert_eq!(mapped.rejected, 2);
        assert!(mapped.message.contains("span id"), "{}", mapped.message);
        assert!(mapped.message.contains("ends before"), "{}", mapped.message);
        // The duplicate of `good` in the same export is mapped once; a plain span is a SPAN pair.
        let steps = mapped.groups[0].requests[0]["intermediate_steps"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0]["payload"]["event_type"], "SPAN_START");
    }

    #[test]
    fn runs_are_chosen_by_header_then_resource_then_service() {
        let id = Uuid::new_v4();
        let mut req = export("svc", vec![span(1, None, vec![])]);
        assert_eq!(
            map_export(&req, Some(id)).groups[0].target,
            RunTarget::Header(id)
        );
        if let Some(r) = req.resource_spans[0].resource.as_mut() {
            r.attributes
                .push(kv("agentprof.run.id", s(&id.to_string())));
        }
        assert_eq!(
            map_export(&req, None).groups[0].target,
            RunTarget::Resource(id)
        );
        assert_eq!(
            RunTarget::Service("a".into()).run_id(),
            RunTarget::service_run_id("a")
        );
        assert_ne!(
            RunTarget::service_run_id("a"),
            RunTarget::service_run_id("b")
        );
    }
}
