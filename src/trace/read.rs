//! Reading documents whole: the steps of a document (bytes or a parsed value) or of one step's
//! text, kept. The streaming readers, which hand each step to a sink as it is read, are in
//! [`super::source`]. The forms documents come in:
//!
//! Four JSON forms arrive (docs/toolkit-semantics.md#input-forms), optionally gzip-compressed:
//! - the profiler form, `all_requests_profiler_traces.json`:
//!   `[{"request_number": n, "intermediate_steps": [...]}, ...]`;
//! - the eval form, `workflow_output.json`: `[{"id": ..., "intermediate_steps": [...], ...}, ...]`;
//! - bare lists of step lists: `[[step, ...], ...]`;
//! - the EvalInput dump: `{"eval_input_items": [{"id": ..., "trajectory": [...]}, ...]}`.
//!
//! The form is read off the document itself, so a user can post whatever file their workflow left
//! behind.

use super::document::{DocRequest, Document, KeepSteps, ReadError, read_document};
use super::model::IntermediateStep;
use super::parse::Validator;
use super::source::{JsonSource, read};
use super::text::{gunzip, is_gzip, json_value};
use super::types::{NumberedRequest, ParseOptions, TraceError};
use serde_json::Value;

/// One request of a parsed document, with its steps.
pub type RequestInput = DocRequest<IntermediateStep>;

/// A parsed document: its requests with their steps.
pub type Batch = Document<IntermediateStep>;

impl Document<IntermediateStep> {
    pub fn step_count(&self) -> usize {
        self.requests.iter().map(|r| r.steps.len()).sum()
    }

    /// The requests as a standalone run sees them: numbered (see
    /// [`RequestInput::number_in_document`]), ordered by number, and with the steps of items
    /// that share a number concatenated in document order (the first item's eval fields kept).
    pub fn into_numbered(self) -> Vec<NumberedRequest> {
        let mut out: Vec<NumberedRequest> = Vec::with_capacity(self.requests.len());
        let mut index: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
        for r in self.requests {
            let n = r.number_in_document();
            match index.get(&n) {
                Some(&i) => out[i].steps.extend(r.steps),
                None => {
                    index.insert(n, out.len());
                    out.push(NumberedRequest {
                        number: n,
                        eval: r.eval,
                        steps: r.steps,
                    });
                }
            }
        }
        out.sort_by_key(|r| r.number);
        out
    }

    /// Every step of the document, in order.
    pub fn steps(&self) -> impl Iterator<Item = &IntermediateStep> {
        self.requests.iter().flat_map(|r| &r.steps)
    }
}

/// Reads a document in any form from bytes (gzip-compressed or not), keeping its steps.
pub fn parse(bytes: &[u8], opts: &ParseOptions) -> Result<Batch, TraceError> {
    if is_gzip(bytes) {
        let inflated = gunzip(bytes, opts.max_decompressed_bytes)?;
        return read(JsonSource::Text(&inflated), opts, &mut KeepSteps);
    }
    read(JsonSource::Text(bytes), opts, &mut KeepSteps)
}

/// Reads a document already parsed into a value, keeping its steps.
pub fn parse_value(doc: Value, opts: &ParseOptions) -> Result<Batch, TraceError> {
    let mut v = Validator::new(opts.now);
    read_document(doc, &mut v, &mut KeepSteps).map_err(|e| match e {
        ReadError::Syntax(msg) => TraceError::Syntax(msg),
        ReadError::Refused(why) => TraceError::Refused(why),
        ReadError::Invalid => TraceError::Invalid {
            errors: v.errors,
            omitted: v.omitted,
        },
    })
}

/// One step from its JSON text, validated as a step inside a document would be.
pub fn parse_step(text: &str) -> Result<IntermediateStep, TraceError> {
    if let Some(step) = super::direct::read_step(text, 0.0) {
        return Ok(step);
    }
    let value = json_value(text.as_bytes())?;
    let mut v = Validator::new(0.0);
    match v.step(value) {
        Some(step) if v.error_count() == 0 => Ok(step),
        _ => Err(TraceError::Invalid {
            errors: v.errors,
            omitted: v.omitted,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::InputForm;
    use serde_json::json;

    fn step(et: &str, ts: f64) -> Value {
        json!({"payload": {"event_type": et, "event_timestamp": ts, "UUID": "u"}})
    }

    #[test]
    fn detects_each_form() {
        let opts = ParseOptions::default();
        let p = parse_value(
            json!([{"request_number": 3, "intermediate_steps": [step("LLM_START", 1.0)]}]),
            &opts,
        )
        .unwrap();
        assert_eq!(p.form, InputForm::Profiler);
        assert_eq!(p.requests[0].request_number, Some(3));
        let e = parse_value(
            json!([{"id": 17, "question": "q", "intermediate_steps": []}]),
            &opts,
        )
        .unwrap();
        assert_eq!(e.form, InputForm::Eval);
        assert_eq!(e.requests[0].external_id.as_deref(), Some("17"));
        let r = parse_value(json!([[step("LLM_START", 1.0)], []]), &opts).unwrap();
        assert_eq!(r.form, InputForm::Raw);
        assert_eq!(r.requests.len(), 2);
        let empty = parse_value(json!([]), &opts).unwrap();
        assert_eq!(empty.form, InputForm::Empty);
    }

    #[test]
    fn errors_point_into_the_document() {
        let opts = ParseOptions::default();
        let err = parse_value(
            json!([{"request_number": 0, "intermediate_steps": [step("LLM_START", 1.0), {"payload": {"event_type": "LLM_END", "event_timestamp": []}}]}]),
            &opts,
        )
        .unwrap_err();
        let TraceError::Invalid { errors, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(
            errors[0].path,
            "/0/intermediate_steps/1/payload/event_timestamp"
        );
    }

    #[test]
    fn rejects_bad_request_numbers_and_mixed_forms() {
        let opts = ParseOptions::default();
        for n in [
            json!(-1),
            json!(1e30),
            json!("3"),
            json!(2147483648u64),
            json!(2.5),
        ] {
            let err = parse_value(
                json!([{"request_number": n, "intermediate_steps": []}]),
                &opts,
            )
            .unwrap_err();
            assert!(err.to_string().starts_with("/0/request_number"), "{err}");
        }
        let mixed = parse_value(
            json!([{"request_number": 1, "intermediate_steps": []}, {"intermediate_steps": []}]),
            &opts,
        )
        .unwrap();
        assert_eq!(
            mixed.form,
            InputForm::Eval,
            "not every item has a request_number: the eval form"
        );
        let err = parse_value(json!([[], {"request_number": 1}]), &opts).unwrap_err();
        assert!(err.to_string().starts_with("/1:"), "{err}");
        let err = parse_value(json!({"a": 1}), &opts).unwrap_err();
        assert!(err.to_string().starts_with("(document root)"), "{err}");
    }

    #[test]
    fn missing_uuid_is_deterministic() {
        let opts = ParseOptions::default();
        let doc = json!([[{"payload": {"event_type": "LLM_START", "event_timestamp": 1.0}}]]);
        let a = parse_value(doc.clone(), &opts).unwrap();
        let b = parse_value(doc, &opts).unwrap();
        assert_eq!(
            a.requests[0].steps[0].payload.uuid,
            b.requests[0].steps[0].payload.uuid
        );
        assert_eq!(a.requests[0].steps[0].payload.uuid.len(), 36);
    }

    #[test]
    fn gzip_limit_stops_bombs() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&vec![b' '; 1 << 20]).unwrap();
        let gz = enc.finish().unwrap();
        assert!(matches!(
            gunzip(&gz, Some(1000)),
            Err(TraceError::TooLarge { limit: 1000 })
        ));
        assert_eq!(gunzip(&gz, None).unwrap().len(), 1 << 20);
    }
}
