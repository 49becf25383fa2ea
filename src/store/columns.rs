//! Decoding stored columns: the pinned enum codes, JSON kept as text, and step columns read from
//! either backend's rows.

use super::StoreError;
use crate::profiler::{Dialect, StepColumns};
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
pub(crate) fn json_column<R>(r: &R, name: &str) -> Result<Value, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text: String = r.try_get(name)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("stored {name} is not JSON: {e}")))
}

/// The run-list figures of a `runs` row of either backend.
pub(crate) fn step_summary<R>(r: &R) -> Result<super::StepSummary, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(super::StepSummary {
        first_event_at: r.try_get("first_event_at")?,
        last_event_at: r.try_get("last_event_at")?,
        llm_calls: r.try_get("llm_calls")?,
        llm_tokens: r.try_get("llm_tokens")?,
    })
}

/// A stored step's profiler columns, read from a `steps` row of either backend.
pub(crate) fn step_columns<R>(r: &R) -> Result<StepColumns, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let opt = |name: &str| -> Result<Option<String>, StoreError> {
        r.try_get::<Option<Vec<u8>>, _>(name)?.map(utf8).transpose()
    };
    let ancestry = match opt("function_name")? {
        Some(function_name) => Some(crate::trace::InvocationNode {
            function_name,
            function_id: opt("function_id")?.unwrap_or_default(),
            parent_name: opt("parent_name")?,
            parent_id: opt("parent_id")?,
        }),
        None => None,
    };
    Ok(StepColumns {
        event_type: event_type_from_code(r.try_get("event_type")?)?,
        event_timestamp: r.try_get("event_timestamp")?,
        uuid: utf8(r.try_get("uuid")?)?,
        name: opt("name")?,
        framework: r
            .try_get::<Option<i16>, _>("framework")?
            .map(framework_from_code)
            .transpose()?,
        ancestry,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        total_tokens: r.try_get("total_tokens")?,
        seconds_between_calls: r.try_get("seconds_between_calls")?,
        text: opt("text_value")?,
        span_event_timestamp: r.try_get("span_event_timestamp")?,
        parent_id: opt("step_parent_id")?,
    })
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
