//! Decoding stored columns: the pinned enum codes, JSON kept as text, and step columns read from
//! either engine's rows.

use super::backend::{Backend, Rec};
use crate::profiler::statistics::cost::PriceTable;
use crate::profiler::{Dialect, StepColumns};
use crate::store::StoreError;
use crate::store::packed::{Dictionaries, Numbers, Unpacked};
use crate::trace::{EventType, Framework, IntermediateStep};
use serde_json::Value;

pub(crate) fn event_type_from_code(code: i16) -> Result<EventType, StoreError> {
    EventType::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown event type code {code}")))
}

pub(crate) fn framework_from_code(code: i16) -> Result<Framework, StoreError> {
    Framework::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown framework code {code}")))
}

/// A JSON document kept in a text column (metadata, profiler configs). Text rather than
/// PostgreSQL's jsonb, which cannot hold an escaped NUL.
pub(crate) fn json_text(text: String, name: &str) -> Result<Value, StoreError> {
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("stored {name} is not JSON: {e}")))
}

/// The columns of [`super::queries::SELECT_STEP_COLUMNS`], in its order. A frame load reads them
/// by position: by name, sqlx hashes and compares each name for each of a large run's 200k rows,
/// which stood out in a profile of a cold load (BENCHMARKS.md#third-session-2026-11-30). A test
/// holds the two in step.
pub(crate) const STEP_COLUMNS: [&str; 9] = [
    "request_number",
    "event_type",
    "event_timestamp",
    "span_event_timestamp",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "packed",
];

/// Where a column sits in [`STEP_COLUMNS`] (evaluated at compile time).
const fn at(name: &str) -> usize {
    let mut i = 0;
    while i < STEP_COLUMNS.len() {
        let (a, b) = (STEP_COLUMNS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a step column")
}

/// The request number of a row of [`super::queries::SELECT_STEP_COLUMNS`].
pub(crate) const REQUEST_NUMBER: usize = at("request_number");

/// A stored step's profiler columns, read by position from a row of
/// [`super::queries::SELECT_STEP_COLUMNS`] of either backend: the plain columns, and the text
/// ones unpacked.
pub(crate) fn step_columns<B: Backend>(
    row: &B::Row,
    dicts: &Dictionaries,
) -> Result<StepColumns, StoreError> {
    let r = Rec::<B>(row);
    const EVENT_TYPE: usize = at("event_type");
    const EVENT_TIMESTAMP: usize = at("event_timestamp");
    const SPAN_EVENT_TIMESTAMP: usize = at("span_event_timestamp");
    const PROMPT_TOKENS: usize = at("prompt_tokens");
    const COMPLETION_TOKENS: usize = at("completion_tokens");
    const TOTAL_TOKENS: usize = at("total_tokens");
    const CACHED_TOKENS: usize = at("cached_tokens");
    const PACKED: usize = at("packed");
    let numbers = Numbers {
        event_type: event_type_from_code(r.col(EVENT_TYPE)?)?,
        event_timestamp: r.col(EVENT_TIMESTAMP)?,
        span_event_timestamp: r.col(SPAN_EVENT_TIMESTAMP)?,
        prompt_tokens: r.col(PROMPT_TOKENS)?,
        completion_tokens: r.col(COMPLETION_TOKENS)?,
        total_tokens: r.col(TOTAL_TOKENS)?,
        cached_tokens: r.col::<Option<i64>>(CACHED_TOKENS)?.unwrap_or(0),
    };
    Unpacked::of(&r.col::<Vec<u8>>(PACKED)?, dicts)?.columns(numbers)
}

/// The stored `cached_tokens`: NULL for the many steps without any, which then cost a bit in
/// the row's null bitmap rather than eight bytes.
pub(crate) fn cached(tokens: i64) -> Option<i64> {
    (tokens != 0).then_some(tokens)
}

/// A run's stored price table (NULL for runs stored before prices: none).
pub(crate) fn prices(text: Option<String>) -> Result<PriceTable, StoreError> {
    match text {
        None => Ok(PriceTable::default()),
        Some(t) => serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("stored prices are not a price table: {e}"))),
    }
}

pub(crate) fn prices_text(prices: &PriceTable) -> String {
    // A map of strings to numbers always serializes; an empty text stored instead would make
    // the run unreadable.
    serde_json::to_string(prices).expect("a price table serializes")
}

/// A run's chosen dialect as stored (`NULL`: detect it).
pub(crate) fn toolkit_column(text: Option<String>) -> Result<Option<Dialect>, StoreError> {
    text.map(|t| {
        Dialect::parse(&t)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown stored toolkit {t:?}")))
    })
    .transpose()
}

/// A step body parsed back into a step: bodies are rendered from validated steps, so one that
/// does not parse is corrupt data.
pub(crate) fn step_from_body(body: &str) -> Result<IntermediateStep, StoreError> {
    crate::trace::parse_step(body)
        .map_err(|e| StoreError::Corrupt(format!("a stored step body does not parse: {e}")))
}

pub(crate) fn utf8(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes)
        .map_err(|e| StoreError::Corrupt(format!("stored text is not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_columns_are_those_the_query_selects_in_its_order() {
        let sql = super::super::queries::SELECT_STEP_COLUMNS;
        let list = sql
            .split("SELECT")
            .nth(1)
            .and_then(|rest| rest.split("FROM").next())
            .expect("a SELECT ... FROM");
        let selected: Vec<&str> = list.split(',').map(str::trim).collect();
        assert_eq!(selected, STEP_COLUMNS);
        assert_eq!(STEP_COLUMNS[REQUEST_NUMBER], "request_number");
    }

    #[test]
    fn unknown_codes_are_corrupt_data() {
        assert!(matches!(
            event_type_from_code(99),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            framework_from_code(-1),
            Err(StoreError::Corrupt(_))
        ));
    }
}
