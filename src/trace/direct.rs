//! Reading a well-formed step straight into its types.
//!
//! The validator ([`super::parse`]) works on a step parsed into a `serde_json::Value`: an
//! insertion-ordered map per object and a string per key, all built to be taken apart again. That
//! was most of the cost of reading a document
//! (BENCHMARKS.md#earlier-in-the-day-second-session-2026-11-30), and nearly every step needs none
//! of the validator's help. So each step is first read here, from its text, straight into an
//! [`IntermediateStep`].
//!
//! This reader never explains anything. At the first thing it does not take as it is (a step
//! without a `UUID`, an unknown top-level key, a value of the wrong type, a number beyond `f64`,
//! a `span_event_timestamp` on a start event) it declines, and the caller reads the step again
//! through the validator, which decides and says why. What it accepts, it builds with the
//! validator's own conversions, so the two agree; a test holds them equal on every fixture step.

use super::model::{
    EventState, IntermediateStep, InvocationNode, ObjectText, Payload, StreamEventData, UsageInfo,
};
use super::parse::{
    NODE_FIELDS, PAYLOAD_FIELDS, STEP_FIELDS, Validator, all_finite, stream_event_data,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The step in `text`, when it is one this reader takes as it is; `None` sends it to the
/// validator. `now` is the `event_timestamp` of a step that has none.
pub(crate) fn read_step(text: &str, now: f64) -> Option<IntermediateStep> {
    // A validator that only lends its conversions: an error in it means "decline".
    let mut scratch = Validator::new(now);
    let mut de = serde_json::Deserializer::from_str(text);
    let step = StepVisitor { v: &mut scratch }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    (scratch.error_count() == 0).then_some(step)
}

/// Any error: the step goes to the validator.
fn decline<E: de::Error>() -> E {
    E::custom("not read directly")
}

/// A key of an object with declared fields: which one, or the key itself.
enum Key {
    Declared(usize),
    Other(String),
}

struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Key, D::Error> {
        de.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
        Ok(match self.0.iter().position(|name| *name == s) {
            Some(i) => Key::Declared(i),
            None => Key::Other(s.to_owned()),
        })
    }
}

/// A value that is not one of the declared fields: kept or ignored by the caller, but numbers
/// beyond `f64` anywhere in a step are the validator's to report.
fn undeclared<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Value, A::Error> {
    let value: Value = map.next_value()?;
    if all_finite(&value) {
        Ok(value)
    } else {
        Err(decline())
    }
}

fn optional_string<E: de::Error>(value: Value) -> Result<Option<String>, E> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(decline()),
    }
}

/// Converts with one of the validator's lax conversions; `None` (an error recorded) declines.
fn converted<T, E: de::Error>(
    v: &mut Validator,
    f: impl FnOnce(&mut Validator) -> Option<T>,
) -> Result<T, E> {
    f(v).ok_or_else(decline)
}

struct StepVisitor<'v> {
    v: &'v mut Validator,
}

impl<'de> DeserializeSeed<'de> for StepVisitor<'_> {
    type Value = IntermediateStep;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<IntermediateStep, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StepVisitor<'_> {
    type Value = IntermediateStep;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a step")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IntermediateStep, A::Error> {
        // A repeated key takes its last value, as it does in a parsed object.
        let mut function_ancestry = Some(InvocationNode::not_available());
        let mut parent_id = None;
        let mut payload = None;
        while let Some(key) = map.next_key_seed(KeySeed(&STEP_FIELDS))? {
            match key {
                Key::Declared(0) => function_ancestry = map.next_value_seed(NodeSeed)?,
                Key::Declared(1) => parent_id = optional_string(map.next_value()?)?,
                Key::Declared(_) => {
                    payload = Some(map.next_value_seed(PayloadSeed { v: &mut *self.v })?)
                }
                Key::Other(_) => return Err(decline()),
            }
        }
        Ok(IntermediateStep {
            parent_id,
            function_ancestry,
            payload: payload.ok_or_else(decline)?,
        })
    }
}

/// `function_ancestry`: an object, or null.
struct NodeSeed;

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Option<InvocationNode>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed {
    type Value = Option<InvocationNode>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an invocation node or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: [Option<Option<String>>; 4] = Default::default();
        while let Some(key) = map.next_key_seed(KeySeed(&NODE_FIELDS))? {
            match key {
                Key::Declared(i) => fields[i] = Some(optional_string(map.next_value()?)?),
                // Ignored, as pydantic ignores them.
                Key::Other(_) => {
                    undeclared(&mut map)?;
                }
            }
        }
        let [function_id, function_name, parent_id, parent_name] = fields;
        Ok(Some(InvocationNode {
            function_id: function_id.flatten().ok_or_else(decline)?,
            function_name: function_name.flatten().ok_or_else(decline)?,
            parent_id: parent_id.flatten(),
            parent_name: parent_name.flatten(),
        }))
    }
}

struct PayloadSeed<'v> {
    v: &'v mut Validator,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Payload;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Payload, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PayloadSeed<'_> {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a payload")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload, A::Error> {
        let v = self.v;
        let mut event_type = None;
        let mut event_timestamp = v.now();
        let mut span_event_timestamp = None;
        let mut framework = None;
        let mut name = None;
        let mut tags = None;
        let mut metadata = None;
        let mut data: Option<StreamEventData> = None;
        let mut usage_info: Option<UsageInfo> = None;
        let mut uuid = None;
        let mut extra = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed(&PAYLOAD_FIELDS))? {
            let i = match key {
                Key::Declared(i) => i,
                Key::Other(key) => {
                    let value = undeclared(&mut map)?;
                    extra.insert(key, value);
                    continue;
                }
            };
            let value: Value = map.next_value()?;
            match (i, value) {
                (0, value) => event_type = Some(converted(v, |v| v.event_type(value))?),
                (1, value) => event_timestamp = converted(v, |v| v.float(value))?,
                (2, Value::Null) => span_event_timestamp = None,
                (2, value) => span_event_timestamp = Some(converted(v, |v| v.float(value))?),
                (3, Value::Null) => framework = None,
                (3, value) => framework = Some(converted(v, |v| v.framework(value))?),
                (4, value) => name = optional_string(value)?,
                (5, Value::Null) => tags = None,
                (5, value) => tags = Some(converted(v, |v| v.string_list(value))?),
                (6, Value::Null) => metadata = None,
                (6, Value::Object(m)) if all_finite_map(&m) => metadata = Some(ObjectText::of(m)),
                (7, Value::Null) => data = None,
                (7, Value::Object(m)) if all_finite_map(&m) => data = Some(stream_event_data(m)),
                (8, Value::Null) => usage_info = None,
                (8, value) if all_finite(&value) => {
                    usage_info = Some(converted(v, |v| v.usage_info(value))?)
                }
                (9, Value::String(s)) => uuid = Some(s),
                _ => return Err(decline()),
            }
        }
        let event_type = event_type.ok_or_else(decline)?;
        if span_event_timestamp.is_some() && event_type.state() != EventState::End {
            return Err(decline());
        }
        Ok(Payload {
            event_type,
            event_timestamp,
            span_event_timestamp,
            framework,
            name,
            tags,
            metadata,
            data,
            usage_info,
            // A step without one gets a UUID derived from its place, which the caller computes.
            uuid: uuid.ok_or_else(decline)?,
            extra,
        })
    }
}

fn all_finite_map(map: &Map<String, Value>) -> bool {
    map.values().all(all_finite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: f64 = 1_748_779_000.5;

    /// The validator's reading of the step in `text`, as a document reader does it.
    fn validated(text: &str) -> Option<IntermediateStep> {
        let raw: Value = serde_json::from_str(text).unwrap();
        let mut v = Validator::new(NOW);
        v.finite_numbers(&raw);
        let step = v.step(raw);
        if v.error_count() == 0 { step } else { None }
    }

    /// Whether the direct reader took the step; what it takes, the validator reads the same.
    fn taken(text: &str) -> bool {
        let direct = read_step(text, NOW);
        if let Some(step) = &direct {
            assert_eq!(
                Some(step),
                validated(text).as_ref(),
                "read differently: {text}"
            );
        }
        direct.is_some()
    }

    /// Every step object of every fixture case's input, as text.
    fn fixture_steps() -> Vec<String> {
        fn collect(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Array(items) => {
                    for item in items {
                        if item.get("payload").is_some() {
                            out.push(item.to_string());
                        } else {
                            collect(item, out);
                        }
                    }
                }
                Value::Object(map) => map.values().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        for doc in crate::trace::testutil::fixture_documents() {
            collect(&doc, &mut out);
        }
        out
    }

    #[test]
    fn every_fixture_step_is_taken_and_read_as_the_validator_reads_it() {
        let steps = fixture_steps();
        assert!(steps.len() > 10_000, "{} steps", steps.len());
        let declined: Vec<&String> = steps.iter().filter(|s| !taken(s)).collect();
        // The fixtures hold only well-formed steps with UUIDs: none should need the validator.
        assert!(
            declined.is_empty(),
            "{} declined, e.g. {}",
            declined.len(),
            declined[0]
        );
    }

    /// A step with every field set, to vary one thing at a time.
    fn full() -> Value {
        serde_json::from_str(
            r#"{
            "parent_id": "p-0",
            "function_ancestry": {"function_id": "f-1", "function_name": "agent",
                                  "parent_id": "root", "parent_name": "root"},
            "payload": {
                "event_type": "LLM_END", "event_timestamp": 1748779200.25,
                "span_event_timestamp": 1748779199.5, "framework": "langchain",
                "name": "model", "tags": ["a", "b"],
                "metadata": {"chat_responses": [{"text": "hi", "n": 12345678901234567890123}]},
                "data": {"input": "q", "output": {"k": [1, 2.5e-3]}, "chunk": null, "payload": 3},
                "usage_info": {"token_usage": {"prompt_tokens": 7, "completion_tokens": 2,
                               "total_tokens": 9, "cached_tokens": 1}, "num_llm_calls": 1,
                               "seconds_between_calls": 0},
                "UUID": "u-1", "custom": {"x": 1}
            }
        }"#,
        )
        .unwrap()
    }

    fn with(pointer: &str, value: Option<Value>) -> String {
        let mut step = full();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let obj = step.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        match value {
            Some(value) => obj.insert(key.to_owned(), value),
            None => obj.remove(key),
        };
        step.to_string()
    }

    #[test]
    fn takes_what_needs_no_help_and_reads_it_as_the_validator() {
        assert!(taken(&full().to_string()));
        for (pointer, value) in [
            ("/function_ancestry", Some(Value::Null)),
            ("/function_ancestry", None),
            ("/parent_id", None),
            ("/parent_id", Some(Value::Null)),
            ("/function_ancestry/parent_id", Some(Value::Null)),
            ("/function_ancestry/extra", Some(json!([1, {"a": null}]))),
            ("/payload/event_timestamp", None),
            ("/payload/event_timestamp", Some(json!(1748779200))),
            ("/payload/span_event_timestamp", Some(Value::Null)),
            ("/payload/framework", Some(Value::Null)),
            ("/payload/tags", Some(json!([]))),
            ("/payload/metadata", Some(json!({}))),
            ("/payload/data", Some(json!({}))),
            ("/payload/usage_info", Some(json!({}))),
            (
                "/payload/usage_info/token_usage/prompt_tokens",
                Some(json!(7.0)),
            ),
            (
                "/payload/usage_info/token_usage/extra",
                Some(json!("dropped")),
            ),
            ("/payload/another", Some(json!(null))),
        ] {
            assert!(
                taken(&with(pointer, value.clone())),
                "{pointer} = {value:?}"
            );
        }
    }

    #[test]
    fn declines_what_the_validator_must_decide() {
        for (pointer, value) in [
            // Errors.
            ("/bogus", Some(json!(1))),
            ("/payload", None),
            ("/payload/event_type", None),
            ("/payload/event_type", Some(json!("LLM_MIDDLE"))),
            ("/payload/event_timestamp", Some(Value::Null)),
            ("/payload/event_timestamp", Some(json!(1e13))),
            ("/payload/framework", Some(json!("haystack"))),
            ("/payload/name", Some(json!(5))),
            ("/payload/tags", Some(json!(["a", 1]))),
            ("/payload/metadata", Some(json!([1]))),
            ("/payload/data", Some(json!("text"))),
            ("/payload/usage_info/num_llm_calls", Some(json!(1.5))),
            ("/payload/UUID", Some(json!(7))),
            ("/function_ancestry/function_id", None),
            ("/function_ancestry/function_name", Some(Value::Null)),
            ("/function_ancestry", Some(json!("agent"))),
            ("/parent_id", Some(json!(1))),
            // Valid, but the validator's to derive: the UUID comes from the step's place.
            ("/payload/UUID", None),
        ] {
            assert!(
                !taken(&with(pointer, value.clone())),
                "{pointer} = {value:?}"
            );
        }
        // A span timestamp on an event that does not end a span.
        let mut start = full();
        start["payload"]["event_type"] = json!("LLM_START");
        assert!(!taken(&start.to_string()));
        // Numbers beyond f64, wherever they are (only text can carry them).
        for text in [
            r#"{"payload": {"event_type": "LLM_START", "UUID": "u", "data": {"input": 1e400}}}"#,
            r#"{"payload": {"event_type": "LLM_START", "UUID": "u", "metadata": {"a": [-1e999]}}}"#,
            r#"{"payload": {"event_type": "LLM_START", "UUID": "u", "x": 2e308}}"#,
            r#"{"function_ancestry": {"function_id": "f", "function_name": "n", "y": 1e400},
                "payload": {"event_type": "LLM_START", "UUID": "u"}}"#,
            r#"{"payload": {"event_type": "LLM_START", "UUID": "u",
                "usage_info": {"token_usage": {"zz": 1e400}}}}"#,
            "[1]",
            "7",
            // Text after the step (stored bodies are read with this reader too).
            r#"{"payload": {"event_type": "LLM_START", "UUID": "u"}} {}"#,
        ] {
            assert!(!taken(text), "{text}");
        }
    }

    #[test]
    fn repeated_and_escaped_keys_read_as_in_a_parsed_object() {
        for text in [
            // The last of a repeated key wins, in its first place.
            r#"{"payload": {"event_type": "LLM_START", "UUID": "a", "UUID": "b", "x": 1, "y": 2, "x": 3}}"#,
            r#"{"payload": {"event_type": "TOOL_START", "UUID": "a"}, "payload": {"event_type": "LLM_START", "UUID": "c"}}"#,
            r#"{"payload": {"event_type": "LLM_START", "\u0055UID": "escaped", "na\u006de": "n"}}"#,
            r#"{"payload": {"event_type": "LLM_START", "UUID": "a", "data": {"input": 1, "input": 2, "z": 0}}}"#,
        ] {
            assert!(taken(text), "{text}");
        }
    }
}
