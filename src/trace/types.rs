//! What reading steps produces and needs, shared by every reader: the input forms, eval fields,
//! numbered requests, options and errors.

use super::model::IntermediateStep;
use super::parse::FieldError;
use serde_json::Value;

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
