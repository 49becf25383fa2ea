//! Validation of step JSON into [`IntermediateStep`], with pydantic 2's lax-mode coercions and a
//! JSON pointer for every rejected value.
//!
//! The rules are those the reference applies when it loads a step (docs/toolkit-semantics.md#step-validation), checked
//! against pydantic 2.10 (tests/fixtures/validation_matrix.json): numbers and numeric strings become floats,
//! integral floats and numeric strings become ints, strings stay strict, unknown keys are kept in
//! `payload` and `data`, dropped in `usage_info` and `function_ancestry`, and rejected at the top.
//! Two deliberate differences: non-finite numbers (`"nan"`, `"inf"`) and integers beyond `i64`
//! are rejected, because no JSON output or database column could carry them back.

use super::model::*;
use serde_json::{Map, Value};
use std::fmt::Write;

/// One rejected value: where it is (a JSON pointer into the document) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Largest timestamp magnitude accepted, in epoch seconds (about ±31,700 years): beyond it the
/// profiler's sums of timestamps could overflow to infinity, which no JSON output can carry.
pub const MAX_ABS_TIMESTAMP: f64 = 1e12;

/// At most this many field errors are collected from one document; the rest are counted.
pub const MAX_FIELD_ERRORS: usize = 50;

// The declared fields of a step, its `function_ancestry` and its `payload`; the direct reader
// ([`super::direct`]) knows each by its place in these lists.
pub(crate) const STEP_FIELDS: [&str; 3] = ["function_ancestry", "parent_id", "payload"];
pub(crate) const NODE_FIELDS: [&str; 4] =
    ["function_id", "function_name", "parent_id", "parent_name"];
pub(crate) const PAYLOAD_FIELDS: [&str; 10] = [
    "event_type",
    "event_timestamp",
    "span_event_timestamp",
    "framework",
    "name",
    "tags",
    "metadata",
    "data",
    "usage_info",
    "UUID",
];

/// An object split in one pass into its declared fields and the remaining keys (in order).
/// Removing keys one at a time from an insertion-ordered map shifts its entries each time.
struct Fields {
    declared: Vec<(&'static str, Option<Value>)>,
    extra: Map<String, Value>,
}

impl Fields {
    fn split(map: Map<String, Value>, names: &[&'static str]) -> Fields {
        let mut declared: Vec<(&'static str, Option<Value>)> =
            names.iter().map(|n| (*n, None)).collect();
        let mut extra = Map::new();
        for (k, v) in map {
            match declared.iter_mut().find(|(n, _)| *n == k) {
                Some((_, slot)) => *slot = Some(v),
                None => {
                    extra.insert(k, v);
                }
            }
        }
        Fields { declared, extra }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.declared
            .iter_mut()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.take())
    }
}

/// Collects errors while walking a document, tracking the JSON pointer of the current value.
pub(crate) struct Validator {
    pub(crate) errors: Vec<FieldError>,
    pub(crate) omitted: usize,
    path: Vec<String>,
    /// `time.time()` at validation: the toolkit's default for a missing `event_timestamp`.
    now: f64,
}

/// `/seg` with RFC 6901's escapes (`~` -> `~0`, `/` -> `~1`), to append to a JSON pointer.
pub fn pointer_segment(seg: &str) -> String {
    format!("/{}", seg.replace('~', "~0").replace('/', "~1"))
}

/// A JSON value read into a typed request shape; a failure names the JSON pointer of the value
/// that failed (for an unknown field, the field itself) below `prefix`.
/// serde_path_to_error tracks the place, unknown keys included.
pub fn from_value_at<T: serde::de::DeserializeOwned>(
    value: Value,
    prefix: &str,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path: String = prefix.to_owned();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => path.push_str(&pointer_segment(key)),
                serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("/{index}")),
                _ => {}
            }
        }
        let message = e.inner().to_string();
        FieldError { path, message }
    })
}

/// JSON text read into a typed request shape, with no `Value` in between (a body's free-form
/// parts stay raw text): a syntax error is [`TraceError::Syntax`], a value of the wrong shape
/// [`TraceError::Invalid`] with its JSON pointer below `prefix`.
pub fn from_text_at<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    prefix: &str,
) -> Result<T, super::types::TraceError> {
    use super::types::TraceError;
    let text = super::text::without_lone_surrogates(bytes);
    let syntax = |e: serde_json::Error| {
        TraceError::Syntax(format!("{e}; {}", super::text::describe_start(&text)))
    };
    let mut de = serde_json::Deserializer::from_slice(&text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut path: String = prefix.to_owned();
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => path.push_str(&pointer_segment(key)),
                serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("/{index}")),
                _ => {}
            }
        }
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => TraceError::Invalid {
                errors: vec![FieldError {
                    path,
                    message: inner.to_string(),
                }],
                omitted: 0,
            },
            _ => syntax(inner),
        }
    })?;
    de.end().map_err(syntax)?;
    Ok(value)
}

/// [`from_text_at`] for a body that must be one JSON object: serde's derived structs also read
/// an array as their fields in order, which would take `[null, null]` for a patch.
pub fn object_from_text_at<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    prefix: &str,
) -> Result<T, super::types::TraceError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b) if *b != b'{') {
        return Err(super::types::TraceError::Invalid {
            errors: vec![FieldError {
                path: prefix.to_owned(),
                message: "must be a JSON object".to_owned(),
            }],
            omitted: 0,
        });
    }
    from_text_at(bytes, prefix)
}

impl Validator {
    pub(crate) fn new(now: f64) -> Self {
        Validator {
            errors: Vec::new(),
            omitted: 0,
            path: Vec::new(),
            now,
        }
    }

    pub(crate) fn pointer(&self) -> String {
        self.path.iter().map(|seg| pointer_segment(seg)).collect()
    }

    pub(crate) fn error(&mut self, message: impl Into<String>) {
        if self.errors.len() < MAX_FIELD_ERRORS {
            let path = self.pointer();
            self.errors.push(FieldError {
                path,
                message: message.into(),
            });
        } else {
            self.omitted += 1;
        }
    }

    /// Enters a segment of the pointer; [`Validator::pop`] leaves it (for visitors that cannot
    /// nest a closure around the parser's callbacks).
    pub(crate) fn push(&mut self, seg: impl ToString) {
        self.path.push(seg.to_string());
    }

    pub(crate) fn pop(&mut self) {
        self.path.pop();
    }

    pub(crate) fn at<R>(&mut self, seg: impl ToString, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(seg.to_string());
        let r = f(self);
        self.path.pop();
        r
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len() + self.omitted
    }

    /// Rejects float literals beyond `f64`'s range anywhere in a document (`1e400`): Python would
    /// read them as infinity, which no JSON document (or stored step) can carry back. Integers of
    /// any size are fine: they are kept digit for digit.
    pub(crate) fn finite_numbers(&mut self, v: &Value) {
        // Pointers are built only on the rare walk that has something to report.
        if !all_finite(v) {
            self.report_non_finite(v);
        }
    }

    fn report_non_finite(&mut self, v: &Value) {
        match v {
            Value::Number(n) if !number_fits(n) => {
                self.error(format!(
                    "number out of range: {n} does not fit a 64-bit float"
                ));
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.at(i, |c| c.report_non_finite(item));
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.at(k, |c| c.report_non_finite(item));
                }
            }
            _ => {}
        }
    }

    /// `time.time()` at validation, which a step without `event_timestamp` gets.
    pub(crate) fn now(&self) -> f64 {
        self.now
    }

    /// Validates one step. `None` means it was rejected (the errors say why).
    pub(crate) fn step(&mut self, v: Value) -> Option<IntermediateStep> {
        let before = self.error_count();
        let Value::Object(map) = v else {
            self.error(format!("a step must be an object, got {}", type_name(&v)));
            return None;
        };
        let mut obj = Fields::split(map, &STEP_FIELDS);
        let function_ancestry = match obj.take("function_ancestry") {
            None => Some(InvocationNode::not_available()),
            Some(Value::Null) => None,
            Some(v) => self.at("function_ancestry", |c| c.invocation_node(v)),
        };
        let parent_id = match obj.take("parent_id") {
            None | Some(Value::Null) => None,
            Some(v) => self.at("parent_id", |c| c.string(v)),
        };
        let payload = match obj.take("payload") {
            None => {
                self.at("payload", |c| c.error("field required"));
                None
            }
            Some(v) => self.at("payload", |c| c.payload(v)),
        };
        for key in obj.extra.keys() {
            self.at(key, |c| {
                c.error("unknown field: a step has only function_ancestry, payload and parent_id")
            });
        }
        if self.error_count() > before {
            return None;
        }
        Some(IntermediateStep {
            parent_id,
            function_ancestry,
            payload: payload?,
        })
    }

    fn invocation_node(&mut self, v: Value) -> Option<InvocationNode> {
        let Value::Object(map) = v else {
            self.error(format!("expected an object or null, got {}", type_name(&v)));
            return None;
        };
        let mut obj = Fields::split(map, &NODE_FIELDS);
        let function_id = self.required_string(&mut obj, "function_id");
        let function_name = self.required_string(&mut obj, "function_name");
        let parent_id = self.optional_string(&mut obj, "parent_id");
        let parent_name = self.optional_string(&mut obj, "parent_name");
        // Extra keys are ignored, as pydantic's default `extra="ignore"` does.
        Some(InvocationNode {
            function_id: function_id?,
            function_name: function_name?,
            parent_id: parent_id?,
            parent_name: parent_name?,
        })
    }

    fn payload(&mut self, v: Value) -> Option<Payload> {
        let Value::Object(map) = v else {
            self.error(format!("expected an object, got {}", type_name(&v)));
            return None;
        };
        let mut obj = Fields::split(map, &PAYLOAD_FIELDS);
        let before = self.error_count();
        let event_type = match obj.take("event_type") {
            None => {
                self.at("event_type", |c| c.error("field required"));
                None
            }
            Some(v) => self.at("event_type", |c| c.event_type(v)),
        };
        let event_timestamp = match obj.take("event_timestamp") {
            None => Some(self.now),
            Some(v) => self.at("event_timestamp", |c| c.float(v)),
        };
        let span_event_timestamp = match obj.take("span_event_timestamp") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.at("span_event_timestamp", |c| c.float(v).map(Some)),
        };
        let framework = match obj.take("framework") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.at("framework", |c| c.framework(v).map(Some)),
        };
        let name = self.optional_string(&mut obj, "name");
        let tags = match obj.take("tags") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.at("tags", |c| c.string_list(v).map(Some)),
        };
        let metadata = match obj.take("metadata") {
            None | Some(Value::Null) => Some(None),
            Some(Value::Object(m)) => Some(Some(ObjectText::of(m))),
            Some(v) => {
                self.at("metadata", |c| {
                    c.error(format!("expected an object or null, got {}", type_name(&v)))
                });
                None
            }
        };
        let data = match obj.take("data") {
            None | Some(Value::Null) => Some(None),
            Some(Value::Object(m)) => Some(Some(stream_event_data(m))),
            Some(v) => {
                self.at("data", |c| {
                    c.error(format!("expected an object or null, got {}", type_name(&v)))
                });
                None
            }
        };
        let usage_info = match obj.take("usage_info") {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.at("usage_info", |c| c.usage_info(v).map(Some)),
        };
        let uuid = match obj.take("UUID") {
            // Filled in by the caller, which knows the step's position (see `input.rs`).
            None => Some(String::new()),
            Some(v) => self.at("UUID", |c| c.string(v)),
        };
        if let (Some(et), Some(Some(_))) = (event_type, span_event_timestamp)
            && et.state() != EventState::End
        {
            self.at("span_event_timestamp", |c| {
                c.error(format!(
                    "span_event_timestamp can only be provided for events with an END state, not {}",
                    et.as_str()
                ))
            });
        }
        if self.error_count() > before {
            return None;
        }
        Some(Payload {
            event_type: event_type?,
            event_timestamp: event_timestamp?,
            span_event_timestamp: span_event_timestamp?,
            framework: framework?,
            name: name?,
            tags: tags?,
            metadata: metadata?,
            data: data?,
            usage_info: usage_info?,
            uuid: uuid?,
            extra: obj.extra,
        })
    }

    pub(crate) fn usage_info(&mut self, v: Value) -> Option<UsageInfo> {
        let Value::Object(map) = v else {
            self.error(format!("expected an object or null, got {}", type_name(&v)));
            return None;
        };
        let mut obj = Fields::split(
            map,
            &["token_usage", "num_llm_calls", "seconds_between_calls"],
        );
        let token_usage = match obj.take("token_usage") {
            None => Some(TokenUsage::default()),
            Some(v) => self.at("token_usage", |c| c.token_usage(v)),
        };
        let num_llm_calls = self.int_field(&mut obj, "num_llm_calls");
        let seconds_between_calls = self.int_field(&mut obj, "seconds_between_calls");
        Some(UsageInfo {
            token_usage: token_usage?,
            num_llm_calls: num_llm_calls?,
            seconds_between_calls: seconds_between_calls?,
        })
    }

    fn token_usage(&mut self, v: Value) -> Option<TokenUsage> {
        let Value::Object(map) = v else {
            self.error(format!("expected an object, got {}", type_name(&v)));
            return None;
        };
        let mut obj = Fields::split(
            map,
            &[
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "cached_tokens",
                "reasoning_tokens",
            ],
        );
        let prompt_tokens = self.int_field(&mut obj, "prompt_tokens");
        let completion_tokens = self.int_field(&mut obj, "completion_tokens");
        let total_tokens = self.int_field(&mut obj, "total_tokens");
        let cached_tokens = self.optional_int_field(&mut obj, "cached_tokens");
        let reasoning_tokens = self.optional_int_field(&mut obj, "reasoning_tokens");
        Some(TokenUsage {
            prompt_tokens: prompt_tokens?,
            completion_tokens: completion_tokens?,
            total_tokens: total_tokens?,
            cached_tokens: cached_tokens?,
            reasoning_tokens: reasoning_tokens?,
        })
    }

    fn int_field(&mut self, obj: &mut Fields, key: &str) -> Option<i64> {
        match obj.take(key) {
            None => Some(0),
            Some(v) => self.at(key, |c| c.int(v)),
        }
    }

    /// nat-only counters: kept when present, never invented.
    fn optional_int_field(&mut self, obj: &mut Fields, key: &str) -> Option<Option<i64>> {
        match obj.take(key) {
            None => Some(None),
            Some(v) => self.at(key, |c| c.int(v).map(Some)),
        }
    }

    fn required_string(&mut self, obj: &mut Fields, key: &str) -> Option<String> {
        match obj.take(key) {
            None => {
                self.at(key, |c| c.error("field required"));
                None
            }
            Some(v) => self.at(key, |c| c.string(v)),
        }
    }

    fn optional_string(&mut self, obj: &mut Fields, key: &str) -> Option<Option<String>> {
        match obj.take(key) {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.at(key, |c| c.string(v).map(Some)),
        }
    }

    fn string(&mut self, v: Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.error(format!("expected a string, got {}", type_name(&other)));
                None
            }
        }
    }

    pub(crate) fn string_list(&mut self, v: Value) -> Option<Vec<String>> {
        let Value::Array(items) = v else {
            self.error(format!(
                "expected a list of strings or null, got {}",
                type_name(&v)
            ));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            match self.at(i, |c| c.string(item)) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(crate) fn event_type(&mut self, v: Value) -> Option<EventType> {
        if let Value::String(s) = &v
            && let Some(et) = EventType::parse(s)
        {
            return Some(et);
        }
        let mut msg = String::from("expected one of ");
        for (i, e) in EventType::ALL.iter().enumerate() {
            let _ = write!(msg, "{}{}", if i > 0 { ", " } else { "" }, e.as_str());
        }
        let _ = write!(msg, "; got {}", short(&v));
        self.error(msg);
        None
    }

    pub(crate) fn framework(&mut self, v: Value) -> Option<Framework> {
        if let Value::String(s) = &v
            && let Some(f) = Framework::parse(s)
        {
            return Some(f);
        }
        let names: Vec<&str> = Framework::ALL.iter().map(|f| f.as_str()).collect();
        self.error(format!(
            "expected one of {} or null; got {}",
            names.join(", "),
            short(&v)
        ));
        None
    }

    /// pydantic's lax `float` for a timestamp: numbers, booleans and numeric strings (in plain
    /// decimal notation), within [`MAX_ABS_TIMESTAMP`].
    pub(crate) fn float(&mut self, v: Value) -> Option<f64> {
        let x = match &v {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::String(s) => parse_python_float(s),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() && x.abs() <= MAX_ABS_TIMESTAMP => Some(x),
            Some(_) => {
                self.error(format!(
                    "timestamp out of range: epoch seconds must lie within ±1e12, got {}",
                    short(&v)
                ));
                None
            }
            None => {
                self.error(format!("expected a number, got {}", short(&v)));
                None
            }
        }
    }

    /// pydantic's lax `int`: integers, integral floats, booleans and integer strings.
    pub(crate) fn int(&mut self, v: Value) -> Option<i64> {
        let x = match &v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(integral_f64)),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::String(s) => parse_python_int(s),
            _ => None,
        };
        if x.is_none() {
            self.error(format!(
                "expected an integer between {} and {}, got {}",
                i64::MIN,
                i64::MAX,
                short(&v)
            ));
        }
        x
    }
}

/// `StreamEventData` from its object: anything but its three values is kept as it came.
pub(crate) fn stream_event_data(map: Map<String, Value>) -> StreamEventData {
    let mut m = Fields::split(map, &["input", "output", "chunk"]);
    StreamEventData {
        input: m.take("input").unwrap_or(Value::Null),
        output: m.take("output").unwrap_or(Value::Null),
        chunk: m.take("chunk").unwrap_or(Value::Null),
        extra: m.extra,
    }
}

/// The deepest a value carried inside a step may nest. A stored step is read back on its own
/// (ATIF, a rewritten requests file), by a JSON parser that refuses more than 128 levels in all;
/// a step puts four of its own around the values it carries. A document posted whole can never
/// hold deeper values (its own levels come on top); values built elsewhere (from OTLP attributes)
/// are held to this.
pub const MAX_VALUE_DEPTH: usize = 100;

/// Whether a value built outside a step document can go into a step: every number fits a 64-bit
/// float, and it nests at most [`MAX_VALUE_DEPTH`] levels.
pub fn value_fits(v: &Value) -> bool {
    fn depth_within(v: &Value, budget: usize) -> bool {
        match v {
            Value::Array(items) => budget > 0 && items.iter().all(|i| depth_within(i, budget - 1)),
            Value::Object(map) => budget > 0 && map.values().all(|i| depth_within(i, budget - 1)),
            _ => true,
        }
    }
    all_finite(v) && depth_within(v, MAX_VALUE_DEPTH)
}

/// Whether every number in `v` fits a 64-bit float (see [`Validator::finite_numbers`]).
pub(crate) fn all_finite(v: &Value) -> bool {
    match v {
        Value::Number(n) => number_fits(n),
        Value::Array(items) => items.iter().all(all_finite),
        Value::Object(map) => map.values().all(all_finite),
        _ => true,
    }
}

/// Integers of any size fit (their digits are kept); a float literal must not overflow `f64`.
fn number_fits(n: &serde_json::Number) -> bool {
    let text = n.as_str();
    let integer = text
        .strip_prefix('-')
        .unwrap_or(text)
        .bytes()
        .all(|b| b.is_ascii_digit());
    integer || text.parse::<f64>().is_ok_and(f64::is_finite)
}

fn integral_f64(x: f64) -> Option<i64> {
    // 2^63 is exactly representable; anything at or beyond it does not fit.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    // Open at both ends: a float equal to -2^63 stands for a rounded, out-of-range integer (an
    // in-range -2^63 arrives as an integer, not a float).
    (x.fract() == 0.0 && x > -TWO_63 && x < TWO_63).then_some(x as i64)
}

/// A numeric string as Python's `float(str)` reads it (surrounding whitespace, `_` between
/// digits), limited to plain decimal notation: `"1748779200.25"`, not `"1.7e9"`, `"inf"` or
/// `"nan"`. Exponents in a timestamp string are a spelling nobody uses, and allowing them would
/// let a short string name an out-of-range value.
fn parse_python_float(s: &str) -> Option<f64> {
    let t = trim_ascii_space(s);
    let cleaned = strip_digit_underscores(t)?;
    let body = cleaned.strip_prefix(['+', '-']).unwrap_or(&cleaned);
    let (int_part, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac.is_empty()) || !digits(int_part) || !digits(frac) {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// Integer strings, as pydantic reads them: `"7"`, `" 7 "`, `"1_000"`, and `"7.0"` (an integral
/// float spelled out).
fn parse_python_int(s: &str) -> Option<i64> {
    let t = trim_ascii_space(s);
    let cleaned = strip_digit_underscores(t)?;
    if let Ok(i) = cleaned.parse::<i64>() {
        return Some(i);
    }
    let (int_part, frac) = cleaned.split_once('.')?;
    if !frac.is_empty() && frac.chars().all(|c| c == '0') {
        return int_part.parse::<i64>().ok();
    }
    None
}

/// Trims ASCII whitespace (space, tab, newlines, form feed, vertical tab), the set the API's
/// documented patterns allow. (Python also strips other Unicode spaces; nobody sends those.)
fn trim_ascii_space(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b'))
}

/// Removes `_` separators that sit between two digits; any other `_` makes the string invalid.
fn strip_digit_underscores(s: &str) -> Option<String> {
    if !s.contains('_') {
        return Some(s.to_owned());
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, c) in chars.iter().enumerate() {
        if *c == '_' {
            let before = i > 0 && chars[i - 1].is_ascii_digit();
            let after = chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
            if !(before && after) {
                return None;
            }
        } else {
            out.push(*c);
        }
    }
    Some(out)
}

/// How a JSON value's type reads in an error message (`a string`, `a list`, ...).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A short rendering of a rejected value for error messages (never the whole of a large value).
pub(crate) fn short(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => type_name(v).to_owned(),
        other => {
            let s = other.to_string();
            if s.chars().count() > 60 {
                let cut: String = s.chars().take(57).collect();
                format!("{cut}...")
            } else {
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validate(v: Value) -> Result<IntermediateStep, Vec<FieldError>> {
        let mut c = Validator::new(123.0);
        match c.step(v) {
            Some(s) => Ok(s),
            None => Err(c.errors),
        }
    }

    #[test]
    fn defaults_match_model_dump() {
        let s = validate(json!({"payload": {"event_type": "LLM_START", "UUID": "u"}})).unwrap();
        assert_eq!(s.function_ancestry, Some(InvocationNode::not_available()));
        assert_eq!(s.payload.event_timestamp, 123.0);
        let dumped = serde_json::to_value(&s).unwrap();
        assert_eq!(
            dumped,
            json!({"function_ancestry": {"function_id": "N/A", "function_name": "N/A", "parent_id": null, "parent_name": null},
                   "payload": {"event_type": "LLM_START", "event_timestamp": 123.0, "span_event_timestamp": null,
                               "framework": null, "name": null, "tags": null, "metadata": null, "data": null,
                               "usage_info": null, "UUID": "u"}})
        );
    }

    #[test]
    fn lax_coercions() {
        let s = validate(json!({"payload": {"event_type": "LLM_END", "event_timestamp": " 1_000.5 ",
            "span_event_timestamp": 3, "usage_info": {"token_usage": {"prompt_tokens": "7.0", "completion_tokens": 2.0,
            "total_tokens": true, "zz": 1}, "seconds_between_calls": "4"}}}))
        .unwrap();
        assert_eq!(s.payload.event_timestamp, 1000.5);
        assert_eq!(s.payload.span_event_timestamp, Some(3.0));
        let u = s.payload.usage_info.unwrap();
        assert_eq!(
            (
                u.token_usage.prompt_tokens,
                u.token_usage.completion_tokens,
                u.token_usage.total_tokens
            ),
            (7, 2, 1)
        );
        assert_eq!(u.seconds_between_calls, 4);
    }

    #[test]
    fn errors_carry_json_pointers() {
        let errs = validate(json!({"payload": {"event_type": "LLM_START", "event_timestamp": "abc",
            "span_event_timestamp": 1.0, "name": 5, "tags": ["a", 1], "usage_info": {"token_usage": {"prompt_tokens": 1.5}}},
            "bogus": 1}))
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/payload/event_timestamp",
                "/payload/name",
                "/payload/tags/1",
                "/payload/usage_info/token_usage/prompt_tokens",
                "/payload/span_event_timestamp",
                "/bogus"
            ]
        );
    }

    #[test]
    fn span_timestamp_only_on_end_events() {
        let errs = validate(
            json!({"payload": {"event_type": "LLM_NEW_TOKEN", "span_event_timestamp": 1.0}}),
        )
        .unwrap_err();
        assert_eq!(errs[0].path, "/payload/span_event_timestamp");
        assert!(
            validate(json!({"payload": {"event_type": "TOOL_END", "span_event_timestamp": 1.0}}))
                .is_ok()
        );
    }

    #[test]
    fn null_ancestry_is_kept_as_null() {
        let s =
            validate(json!({"function_ancestry": null, "payload": {"event_type": "LLM_START"}}))
                .unwrap();
        assert_eq!(s.function_ancestry, None);
    }

    #[test]
    fn nat_shape_is_accepted_and_kept() {
        let s = validate(json!({"parent_id": "root", "function_ancestry": {"function_id": "f", "function_name": "n", "parent_id": null, "parent_name": null},
            "payload": {"event_type": "TTC_START", "framework": "adk", "data": {"input": 1, "payload": null},
            "usage_info": {"token_usage": {"prompt_tokens": 1, "completion_tokens": 2, "cached_tokens": 3, "reasoning_tokens": 4, "total_tokens": 3}}}}))
        .unwrap();
        let dumped = serde_json::to_value(&s).unwrap();
        assert_eq!(dumped["parent_id"], json!("root"));
        assert_eq!(dumped["payload"]["data"]["payload"], json!(null));
        assert_eq!(
            dumped["payload"]["usage_info"]["token_usage"]["cached_tokens"],
            json!(3)
        );
    }

    #[test]
    fn rejects_non_finite_and_oversized_numbers() {
        assert!(
            validate(json!({"payload": {"event_type": "LLM_START", "event_timestamp": "nan"}}))
                .is_err()
        );
        assert!(validate(json!({"payload": {"event_type": "LLM_START", "usage_info": {"num_llm_calls": 1e30}}})).is_err());
    }

    #[test]
    fn python_number_strings() {
        assert_eq!(parse_python_float(" 1_000.5 "), Some(1000.5));
        assert_eq!(parse_python_float(".5"), Some(0.5));
        assert_eq!(parse_python_float("-7."), Some(-7.0));
        assert_eq!(parse_python_float("1e3"), None);
        assert_eq!(parse_python_float("inf"), None);
        assert_eq!(parse_python_float("."), None);
        assert_eq!(parse_python_float("0x10"), None);
        assert_eq!(parse_python_float("1__0"), None);
        assert_eq!(parse_python_float("_1"), None);
        assert_eq!(parse_python_int("7.0"), Some(7));
        assert_eq!(parse_python_int("7.5"), None);
        assert_eq!(parse_python_int(" -12 "), Some(-12));
    }
}
