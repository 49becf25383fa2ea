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

/// A frame from a JSON document in any input form.
pub fn frame_of_json(doc: Value) -> Frame {
    Frame::from_batch(parse_value(doc, &ParseOptions::default()).expect("test document is valid"))
}
