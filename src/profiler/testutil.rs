//! Small frames for unit tests.

use crate::profiler::core::frame::Frame;
use crate::trace::{ParseOptions, parse_value};
use serde_json::{Value, json};

/// A frame from requests given as `(event_type, timestamp, uuid)` triples; LLM events get the
/// model name `m`, TOOL events the tool name `t`.
pub fn frame_of(requests: &[Vec<(&str, f64, &str)>]) -> Frame {
    let doc: Vec<Value> = requests
        .iter()
        .map(|steps| {
            Value::Array(
                steps
                    .iter()
                    .map(|(et, ts, uuid)| {
                        let name = if et.starts_with("LLM") { "m" } else { "t" };
                        json!({"function_ancestry": {"function_id": "f", "function_name": "agent"},
                               "payload": {"event_type": et, "event_timestamp": ts, "UUID": uuid, "name": name}})
                    })
                    .collect(),
            )
        })
        .collect();
    frame_of_json(Value::Array(doc))
}

/// One request of `depth` TOOL calls, each inside the previous one: the input whose outputs
/// grow with the square of its size in the toolkit.
pub fn nested_calls(depth: usize) -> Frame {
    let uuids: Vec<String> = (0..depth).map(|i| format!("t{i}")).collect();
    let mut steps: Vec<(&str, f64, &str)> = Vec::new();
    for (i, u) in uuids.iter().enumerate() {
        steps.push(("TOOL_START", i as f64, u));
    }
    for (i, u) in uuids.iter().enumerate().rev() {
        steps.push(("TOOL_END", (2 * depth - i) as f64, u));
    }
    frame_of(&[steps])
}

/// A frame from a JSON document in any input form.
pub fn frame_of_json(doc: Value) -> Frame {
    Frame::from_batch(parse_value(doc, &ParseOptions::default()).expect("test document is valid"))
}
