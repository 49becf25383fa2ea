//! Decoding stored columns: the pinned enum codes, JSON kept as text, and step columns read from
//! either engine's rows.

use super::backend::{Backend, Rec};
use crate::profiler::Dialect;
use crate::profiler::statistics::cost::PriceTable;
use crate::store::StoreError;
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

/// A row of [`super::queries::SELECT_STEPS`] of either backend: its request number, its place
/// in the request, and the packed step. Read by position (a test holds the query and this in
/// step): by name, sqlx hashes and compares each name for each of a large run's rows, which stood
/// out in a profile of a cold load (BENCHMARKS.md#third-session-2026-11-30).
pub(crate) fn step_row<B: Backend>(row: &B::Row) -> Result<(i64, i64, Vec<u8>), StoreError> {
    let r = Rec::<B>(row);
    let packed = r.col::<Option<Vec<u8>>>(2)?.ok_or_else(|| {
        StoreError::Corrupt(
            "a step is not packed: a server older than compact steps stored it after this one              started (docs/storage.md, \"Upgrading\"); restarting a server packs it"
                .into(),
        )
    })?;
    Ok((i64::from(r.col::<i32>(0)?), r.col(1)?, packed))
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
        let sql = super::super::queries::SELECT_STEPS;
        let list = sql
            .split("SELECT")
            .nth(1)
            .and_then(|rest| rest.split("FROM").next())
            .expect("a SELECT ... FROM");
        let selected: Vec<&str> = list.split(',').map(str::trim).collect();
        assert_eq!(selected, ["request_number", "seq", "packed"]);
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
