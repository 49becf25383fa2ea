//! `all_requests_profiler_traces.json` (docs/toolkit-semantics.md#all_requests_profiler_tracesjson): every request with its steps, as the
//! toolkit's `json.dump(..., indent=2, default=str)` writes it.
//!
//! The service streams this file from stored step text, so the layout is built from pieces: a
//! request header, each step pre-rendered at its nesting depth, and the closing brackets. The
//! CLI uses the same pieces, so both produce the same bytes.

use super::model::{InSchema, IntermediateStep, StepSchema};
use crate::py;
use std::io::{self, Write};

/// Steps sit three levels deep: list -> request object -> `intermediate_steps` list.
pub const STEP_DEPTH: usize = 3;

/// A step rendered as it appears inside the combined file (indented for depth 3, no trailing
/// separator), as it was sent. This is what the service stores per step.
pub fn render_step(step: &IntermediateStep) -> Vec<u8> {
    render_step_in(step, StepSchema::AsGiven)
}

/// A step rendered in one toolkit's schema.
pub fn render_step_in(step: &IntermediateStep, schema: StepSchema) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    // Writing into a Vec cannot fail.
    let _ = py::json::write_at_depth(&mut out, &InSchema(step, schema), STEP_DEPTH);
    out
}

/// Writes the combined file incrementally, one request at a time.
pub struct TracesWriter<W: Write> {
    out: W,
    requests: usize,
    steps_in_request: usize,
}

impl<W: Write> TracesWriter<W> {
    pub fn new(out: W) -> Self {
        TracesWriter {
            out,
            requests: 0,
            steps_in_request: 0,
        }
    }

    pub fn begin_request(&mut self, request_number: i64) -> io::Result<()> {
        if self.requests > 0 {
            self.end_request()?;
            self.out.write_all(b",\n")?;
        } else {
            self.out.write_all(b"[\n")?;
        }
        self.requests += 1;
        self.steps_in_request = 0;
        write!(
            self.out,
            "  {{\n    \"request_number\": {request_number},\n    \"intermediate_steps\": ["
        )
    }

    /// Appends one step already rendered by [`render_step`].
    pub fn rendered_step(&mut self, rendered: &[u8]) -> io::Result<()> {
        self.separator()?;
        self.out.write_all(rendered)
    }

    /// What comes before a step: a new line at the steps' indentation, after a comma but for the
    /// request's first step.
    fn separator(&mut self) -> io::Result<()> {
        self.steps_in_request += 1;
        self.out.write_all(if self.steps_in_request == 1 {
            b"\n      "
        } else {
            b",\n      "
        })
    }

    /// Appends one step, rendered straight into the output.
    pub fn step(&mut self, step: &IntermediateStep, schema: StepSchema) -> io::Result<()> {
        self.separator()?;
        py::json::write_at_depth(&mut self.out, &InSchema(step, schema), STEP_DEPTH)
            .map_err(io::Error::other)
    }

    fn end_request(&mut self) -> io::Result<()> {
        if self.steps_in_request == 0 {
            self.out.write_all(b"]\n  }")
        } else {
            self.out.write_all(b"\n    ]\n  }")
        }
    }

    /// Closes the document and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.requests == 0 {
            self.out.write_all(b"[]")?;
        } else {
            self.end_request()?;
            self.out.write_all(b"\n]")?;
        }
        Ok(self.out)
    }
}

impl TracesWriter<Vec<u8>> {
    /// Bytes written and not yet taken.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes written so far, for streaming the file out in chunks.
    pub fn take(&mut self) -> Vec<u8> {
        let capacity = self.out.capacity();
        std::mem::replace(&mut self.out, Vec::with_capacity(capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{ParseOptions, parse_value};
    use serde_json::json;

    #[test]
    fn pieces_equal_one_dump_of_the_whole() {
        let doc = json!([
            {"request_number": 0, "intermediate_steps": [
                {"function_ancestry": {"function_id": "a", "function_name": "b", "parent_id": null, "parent_name": null},
                 "payload": {"event_type": "LLM_START", "event_timestamp": 1.5, "UUID": "u", "data": {"input": ["é", {}]}}},
                {"payload": {"event_type": "LLM_END", "event_timestamp": 2.0, "UUID": "u"}}]},
            {"request_number": 1, "intermediate_steps": []}
        ]);
        let batch = parse_value(doc, &ParseOptions::default()).unwrap();
        let mut w = TracesWriter::new(Vec::new());
        let mut whole = Vec::new();
        for r in &batch.requests {
            w.begin_request(r.number_in_document()).unwrap();
            for s in &r.steps {
                w.step(s, StepSchema::AsGiven).unwrap();
            }
            whole.push(
                json!({"request_number": r.number_in_document(), "intermediate_steps": r.steps}),
            );
        }
        let got = w.finish().unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(py::json::to_vec(&whole)).unwrap()
        );
        assert_eq!(TracesWriter::new(Vec::new()).finish().unwrap(), b"[]");
    }
}
