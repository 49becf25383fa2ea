//! The documents that carry steps, and how we tell them apart.
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

use super::document::{DocRequest, Document, KeepSteps, ReadError, StepSink, read_document};
use super::model::IntermediateStep;
use super::parse::{FieldError, Validator};
use super::source::{JsonSource, read_json_document};
use serde_json::Value;
use std::io::Read;

/// Largest `request_number` we accept: it must fit PostgreSQL's `integer` and stay meaningful.
pub const MAX_REQUEST_NUMBER: i64 = i32::MAX as i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputForm {
    Profiler,
    Eval,
    Raw,
    /// An empty list: no requests at all.
    Empty,
}

/// One request of a parsed document, with its steps.
pub type RequestInput = DocRequest<IntermediateStep>;

/// What an eval item (`workflow_output.json`) says about its request besides the steps: the
/// dataset's id, question and answer, and the workflow's answer, as they were sent. nat 1.9's
/// ATIF export carries them.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct EvalItem {
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub id: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub question: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub answer: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub generated_answer: Value,
}

/// A request as a standalone run sees it (see [`Batch::into_numbered`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NumberedRequest {
    pub number: i64,
    pub eval: Option<EvalItem>,
    pub steps: Vec<IntermediateStep>,
}

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

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("not valid gzip data: {0}")]
    Gzip(String),
    #[error("the decompressed body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The reader was stopped by its sink (a budget was spent); the message says how to split.
    #[error("{0}")]
    Refused(String),
    #[error("{}", describe(.errors, *.omitted))]
    Invalid {
        errors: Vec<FieldError>,
        /// Errors beyond the ones listed.
        omitted: usize,
    },
}

fn describe(errors: &[FieldError], omitted: usize) -> String {
    let total = errors.len() + omitted;
    match errors.first() {
        Some(e) if total == 1 => format!("{}: {}", pointer_or_root(&e.path), e.message),
        Some(e) => format!(
            "{}: {} (and {} more invalid value{})",
            pointer_or_root(&e.path),
            e.message,
            total - 1,
            if total == 2 { "" } else { "s" }
        ),
        None => "invalid document".to_owned(),
    }
}

fn pointer_or_root(p: &str) -> &str {
    if p.is_empty() { "(document root)" } else { p }
}

/// Options for reading a document.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Epoch seconds used for a step without `event_timestamp` (the toolkit's `time.time()`).
    pub now: f64,
    /// Refuse gzip bodies that inflate beyond this many bytes.
    pub max_decompressed_bytes: Option<u64>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            max_decompressed_bytes: None,
        }
    }
}

/// `true` when the bytes start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Inflates a gzip body, refusing to go past `limit` bytes (gzip bombs).
pub fn gunzip(bytes: &[u8], limit: Option<u64>) -> Result<Vec<u8>, TraceError> {
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut out = Vec::new();
    match limit {
        Some(limit) => {
            let mut limited = decoder.take(limit + 1);
            limited
                .read_to_end(&mut out)
                .map_err(|e| TraceError::Gzip(e.to_string()))?;
            if out.len() as u64 > limit {
                return Err(TraceError::TooLarge { limit });
            }
        }
        None => {
            let mut decoder = decoder;
            decoder
                .read_to_end(&mut out)
                .map_err(|e| TraceError::Gzip(e.to_string()))?;
        }
    }
    Ok(out)
}

/// Reads a document in any form from bytes (gzip-compressed or not).
pub fn parse_document(bytes: &[u8], opts: &ParseOptions) -> Result<Batch, TraceError> {
    if is_gzip(bytes) {
        let inflated = gunzip(bytes, opts.max_decompressed_bytes)?;
        return parse_json_document(&inflated, opts);
    }
    parse_json_document(bytes, opts)
}

/// Reads an uncompressed JSON document in any form.
pub fn parse_json_document(bytes: &[u8], opts: &ParseOptions) -> Result<Batch, TraceError> {
    read_json_document(JsonSource::Text(bytes), opts, &mut KeepSteps)
}

/// Detects the form of a decoded document and validates every step in it.
pub fn parse_value(doc: Value, opts: &ParseOptions) -> Result<Batch, TraceError> {
    read_value(doc, opts, &mut KeepSteps)
}

/// [`parse_value`] with the steps handed to `sink` as they are validated (the service prepares
/// them within its batch budget).
pub fn read_value<K: StepSink>(
    doc: Value,
    opts: &ParseOptions,
    sink: &mut K,
) -> Result<Document<K::Kept>, TraceError> {
    let mut v = Validator::new(opts.now);
    read_document(doc, &mut v, sink).map_err(|e| match e {
        ReadError::Syntax(msg) => TraceError::Syntax(msg),
        ReadError::Refused(why) => TraceError::Refused(why),
        ReadError::Invalid => TraceError::Invalid {
            errors: v.errors,
            omitted: v.omitted,
        },
    })
}

/// Parses JSON text; a syntax error says what the text started with, so that a client that sent
/// something else (a zip file, form data, protobuf) learns what the server saw.
pub fn json_value(bytes: &[u8]) -> Result<Value, TraceError> {
    let bytes = without_lone_surrogates(bytes);
    serde_json::from_slice(&bytes)
        .map_err(|e| TraceError::Syntax(format!("{e}; {}", describe_start(&bytes))))
}

/// The text with every unpaired surrogate escape replaced (see [`replace_lone_surrogates`]),
/// borrowed when there is none.
pub(super) fn without_lone_surrogates(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match replace_lone_surrogates(bytes) {
        Some(fixed) => std::borrow::Cow::Owned(fixed),
        None => std::borrow::Cow::Borrowed(bytes),
    }
}

/// Python's `json.dumps` writes a string holding an unpaired UTF-16 surrogate as `"\ud800"`, and
/// `json.loads` reads it back; a Rust string cannot hold one, so each unpaired surrogate escape
/// becomes `\ufffd`, the replacement character (docs/deviations.md). Escapes come in pairs or not
/// at all, and a text without unpaired ones is left alone (`None`).
fn replace_lone_surrogates(bytes: &[u8]) -> Option<Vec<u8>> {
    fn escape_at(b: &[u8], i: usize) -> Option<u16> {
        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }
    let is_high = |u: u16| (0xD800..=0xDBFF).contains(&u);
    let is_low = |u: u16| (0xDC00..=0xDFFF).contains(&u);
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    // Straight to the next `\u`: prompts hold a `\n` every line, and stopping at each of them
    // was most of this pass.
    let unicode_escape = memchr::memmem::Finder::new(b"\\u");
    while let Some(at) = unicode_escape.find(&bytes[i..]) {
        let at = i + at;
        // After an odd number of backslashes this one is escaped: a character, not an escape.
        let before = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if before % 2 == 1 {
            i = at + 2;
            continue;
        }
        match escape_at(bytes, at) {
            Some(u) if is_high(u) && escape_at(bytes, at + 6).is_some_and(is_low) => i = at + 12,
            Some(u) if is_high(u) || is_low(u) => {
                let fixed = out.get_or_insert_with(|| bytes.to_vec());
                fixed[at + 2..at + 6].copy_from_slice(b"fffd");
                i = at + 6;
            }
            _ => i = at + 2,
        }
        if i >= bytes.len() {
            break;
        }
    }
    out
}

/// What a body that failed to parse begins with: a short excerpt of text, or the first bytes in
/// hex with the file type their magic number suggests.
pub fn describe_start(bytes: &[u8]) -> String {
    const MAGIC: [(&[u8], &str); 7] = [
        (&[0x1f, 0x8b], "gzip data"),
        (b"PK\x03\x04", "a zip archive"),
        (b"BZh", "bzip2 data"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd data"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz data"),
        (b"%PDF", "a PDF document"),
        (&[0xef, 0xbb, 0xbf], "a UTF-8 byte-order mark"),
    ];
    if bytes.is_empty() {
        return "the body is empty".to_owned();
    }
    if let Some((_, what)) = MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
        return format!("the body starts with {} ({what})", hex_prefix(bytes));
    }
    let head = &bytes[..bytes.len().min(40)];
    match std::str::from_utf8(head) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) => {
            let more = if bytes.len() > head.len() { "..." } else { "" };
            format!("the body starts with {text:?}{more}")
        }
        _ => format!("the body starts with bytes {}", hex_prefix(bytes)),
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
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
mod surrogate_tests {
    use super::*;

    #[test]
    fn escaped_backslashes_are_not_escapes() {
        // `\\ud800` is a backslash and the text "ud800"; `\\\ud800` a backslash and a surrogate.
        let v = json_value(br#"["\\ud800", "\\\ud800", "\\\\ud800\n\ud83d\ude00\u0041"]"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!(["\\ud800", "\\\u{fffd}", "\\\\ud800\n\u{1f600}A"])
        );
        assert!(replace_lone_surrogates(br#"["\\\\ud800", "\ud83d\ude00"]"#).is_none());
    }

    #[test]
    fn unpaired_surrogates_become_the_replacement_character() {
        let v = json_value(br#"["a\ud800b", "\udc00", "\ud83d\ude00", "\\ud800"]"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!(["a\u{fffd}b", "\u{fffd}", "\u{1f600}", "\\ud800"])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
