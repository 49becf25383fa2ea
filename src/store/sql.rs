//! The read-path SQL both backends share: `$N` placeholders work in PostgreSQL and in SQLite
//! (sqlx binds SQLite's `$NNN` by number), and the tables have the same columns in both. Only the
//! bound values' types differ (timestamps are `timestamptz` in one and microseconds in the other).

/// The `runs` columns a `RunRecord` is read from.
macro_rules! run_columns {
    () => {
        "id, name, created_at, updated_at, version, request_count, step_count, profiler_config, metadata, \
         toolkit, nat_schema, non_end_steps, aiq_rewrite, nat_rewrite, \
         first_event_at, last_event_at, llm_calls, llm_tokens"
    };
}
pub(crate) use run_columns;

pub(crate) const SELECT_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");

pub(crate) const SELECT_VERSION: &str = "SELECT version FROM runs WHERE id = $1";

pub(crate) const SELECT_STAMP: &str = "SELECT version, updated_at FROM runs WHERE id = $1";

/// The first outcome of an Idempotency-Key.
pub(crate) const SELECT_IDEMPOTENCY_KEY: &str =
    "SELECT fingerprint, record, outcome FROM idempotency_keys WHERE scope = $1 AND key = $2";

/// Records a keyed request's outcome once its write is done (the row was claimed first).
pub(crate) const SAVE_IDEMPOTENCY_OUTCOME: &str = "UPDATE idempotency_keys SET run_id = $3, record = $4, outcome = $5 WHERE scope = $1 AND key = $2";

/// Recounts a run's summary figures from its steps (`$2`: the LLM_END code), for a batch of which
/// some steps were already stored: their figures are in the run already. `tokens` is the
/// backend's sum of the LLM_END steps' `total_tokens`, held within 64 bits (token counts are any
/// integers a client sends).
macro_rules! recount_summary {
    ($tokens:literal) => {
        concat!(
            "UPDATE runs SET
    first_event_at = (SELECT MIN(event_timestamp) FROM steps WHERE run_id = $1),
    last_event_at = (SELECT MAX(event_timestamp) FROM steps WHERE run_id = $1),
    llm_calls = (SELECT COUNT(*) FROM steps WHERE run_id = $1 AND event_type = $2),
    llm_tokens = (SELECT ",
            $tokens,
            " FROM steps WHERE run_id = $1 AND event_type = $2)
  WHERE id = $1"
        )
    };
}

/// PostgreSQL: `SUM(bigint)` is a numeric, clamped before it becomes a bigint again.
pub(crate) const RECOUNT_SUMMARY_PG: &str = recount_summary!(
    "LEAST(GREATEST(COALESCE(SUM(total_tokens), 0), -9223372036854775808), 9223372036854775807)::bigint"
);

/// SQLite: `SUM` fails on overflow; `TOTAL` is a float that cannot, clamped and stored back as an
/// integer.
pub(crate) const RECOUNT_SUMMARY_SQLITE: &str = recount_summary!(
    "CAST(MAX(MIN(TOTAL(total_tokens), 9223372036854775807), -9223372036854775808) AS INTEGER)"
);

pub(crate) const RUN_EXISTS: &str = "SELECT 1 FROM runs WHERE id = $1";

pub(crate) const DELETE_RUN: &str = "DELETE FROM runs WHERE id = $1";

/// A page of the newest-first run list: `$1` is the page size + 1, then the cursor `(created_at,
/// id)` when `after`, then the name filter's needle when `name_match` (a backend's expression
/// that is true when the placeholder it is given occurs in the name, ignoring ASCII case).
pub(crate) fn list_runs(after: bool, name_match: Option<fn(&str) -> String>) -> String {
    let mut conditions = Vec::new();
    if after {
        conditions.push("(created_at, id) < ($2, $3)".to_owned());
    }
    if let Some(matches) = name_match {
        conditions.push(matches(if after { "$4" } else { "$2" }));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT {} FROM runs{filter} ORDER BY created_at DESC, id DESC LIMIT $1",
        run_columns!()
    )
}

pub(crate) const SELECT_REQUESTS: &str =
    "SELECT request_number, external_id FROM requests WHERE run_id = $1 ORDER BY request_number";

/// Every request with its eval fields (`eval_item`, JSON), for the ATIF export.
pub(crate) const SELECT_REQUEST_ITEMS: &str = "SELECT request_number, external_id, eval_item FROM requests \
     WHERE run_id = $1 ORDER BY request_number";

pub(crate) const SELECT_REQUEST_NUMBERS: &str =
    "SELECT request_number FROM requests WHERE run_id = $1 ORDER BY request_number";

/// The profiler columns of every step of a run, in frame order.
pub(crate) const SELECT_STEP_COLUMNS: &str = "
    SELECT request_number, event_type, event_timestamp, uuid, name, framework, function_name,
           function_id, parent_name, parent_id, prompt_tokens, completion_tokens, total_tokens,
           seconds_between_calls, text_value, span_event_timestamp, step_parent_id
    FROM steps WHERE run_id = $1 ORDER BY request_number, seq";

/// The rendered body of every step of a run, in file order.
pub(crate) const SELECT_STEP_BODIES: &str =
    "SELECT request_number, body FROM steps WHERE run_id = $1 ORDER BY request_number, seq";
