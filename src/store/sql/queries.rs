//! The SQL both engines share. `$N` placeholders work in PostgreSQL and in SQLite (sqlx binds
//! SQLite's `$NNN` by number), and the tables have the same columns in both, of types that read
//! back as the same Rust types; only timestamps differ ([`super::Backend::Time`]). The few
//! statements that cannot be shared are constants of [`super::Backend`].

/// The `runs` columns a `RunRecord` is read from, in [`RUN_COLUMNS`]' order.
macro_rules! run_columns {
    () => {
        "id, name, created_at, updated_at, version, request_count, step_count, profiler_config, metadata, \
         toolkit, nat_schema, non_end_steps, aiq_rewrite, nat_rewrite, \
         first_event_at, last_event_at, llm_calls, llm_tokens, retention_seconds, prices"
    };
}
pub(crate) use run_columns;

/// The positions of [`run_columns!`]; a test holds the two in step.
pub(crate) mod run {
    pub const ID: usize = 0;
    pub const NAME: usize = 1;
    pub const CREATED_AT: usize = 2;
    pub const UPDATED_AT: usize = 3;
    pub const VERSION: usize = 4;
    pub const REQUEST_COUNT: usize = 5;
    pub const STEP_COUNT: usize = 6;
    pub const PROFILER_CONFIG: usize = 7;
    pub const METADATA: usize = 8;
    pub const TOOLKIT: usize = 9;
    pub const NAT_SCHEMA: usize = 10;
    pub const NON_END_STEPS: usize = 11;
    pub const AIQ_REWRITE: usize = 12;
    pub const NAT_REWRITE: usize = 13;
    pub const FIRST_EVENT_AT: usize = 14;
    pub const LAST_EVENT_AT: usize = 15;
    pub const LLM_CALLS: usize = 16;
    pub const LLM_TOKENS: usize = 17;
    pub const RETENTION_SECONDS: usize = 18;
    pub const PRICES: usize = 19;
}

/// [`super::Backend::UPDATE_AFTER_BATCH`] around an engine's expressions for the new
/// `updated_at` (from `$4`), the first and last step times (from `$9`, `$10`) and the token sum
/// (from `$12`).
macro_rules! update_after_batch {
    (updated_at: $updated:literal, first: $first:literal, last: $last:literal, tokens: $tokens:literal) => {
        concat!(
            "UPDATE runs SET version = version + 1, request_count = request_count + $2, ",
            "step_count = step_count + $3, updated_at = ",
            $updated,
            ", ",
            "nat_schema = nat_schema OR $5, non_end_steps = non_end_steps OR $6, ",
            "aiq_rewrite = aiq_rewrite OR $7, nat_rewrite = nat_rewrite OR $8, ",
            "first_event_at = ",
            $first,
            ", last_event_at = ",
            $last,
            ", ",
            "llm_calls = llm_calls + $11, llm_tokens = ",
            $tokens,
            " ",
            "WHERE id = $1 RETURNING version"
        )
    };
}
pub(crate) use update_after_batch;

/// [`super::Backend::UPDATE_RUN`] around an engine's new `updated_at` (from `$5`) and its test
/// of the precondition `$6`.
macro_rules! update_run {
    (updated_at: $updated:literal, unconditional: $any:literal) => {
        concat!(
            "UPDATE runs SET name = COALESCE($2, name), ",
            "profiler_config = COALESCE($3, profiler_config), metadata = COALESCE($4, metadata), ",
            "updated_at = ",
            $updated,
            ", toolkit = CASE WHEN $7 THEN $8 ELSE toolkit END, ",
            "retention_seconds = CASE WHEN $9 THEN $10 ELSE retention_seconds END, ",
            "prices = COALESCE($11, prices) ",
            "WHERE id = $1 AND (",
            $any,
            " OR updated_at = $6) RETURNING ",
            $crate::store::sql::queries::run_columns!()
        )
    };
}
pub(crate) use update_run;

pub(crate) const SELECT_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1");

pub(crate) const SELECT_VERSION: &str = "SELECT version FROM runs WHERE id = $1";

pub(crate) const SELECT_STAMP: &str = "SELECT version, updated_at FROM runs WHERE id = $1";

pub(crate) const RUN_EXISTS: &str = "SELECT 1 FROM runs WHERE id = $1";

pub(crate) const DELETE_RUN: &str = "DELETE FROM runs WHERE id = $1";

/// `$1` id, `$2` name, `$3` now, `$4` profiler config, `$5` metadata, `$6` toolkit, `$7`
/// retention in seconds, `$8` prices.
pub(crate) const INSERT_RUN: &str = "INSERT INTO runs (id, name, created_at, updated_at, profiler_config, metadata, toolkit, retention_seconds, \
     prices) VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8)";

/// [`INSERT_RUN`], leaving an existing run of that id as it is.
pub(crate) const INSERT_RUN_IF_ABSENT: &str = "INSERT INTO runs (id, name, created_at, updated_at, profiler_config, metadata, toolkit, retention_seconds, \
     prices) VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING";

/// Claims an Idempotency-Key: `$1` scope, `$2` key, `$3` fingerprint, `$4` run, `$5` now,
/// `$6` client.
pub(crate) const CLAIM_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys (scope, key, fingerprint, run_id, record, created_at, client) \
     VALUES ($1, $2, $3, $4, '', $5, $6) ON CONFLICT DO NOTHING";

/// Forgets client `$1`'s keys beyond its newest `$2`.
pub(crate) const TRIM_CLIENT_KEYS: &str = "DELETE FROM idempotency_keys WHERE client = $1 AND (scope, key) IN \
     (SELECT scope, key FROM idempotency_keys WHERE client = $1 ORDER BY created_at DESC, scope, key LIMIT -1 OFFSET $2)";

/// The first outcome of an Idempotency-Key.
pub(crate) const SELECT_IDEMPOTENCY_KEY: &str =
    "SELECT fingerprint, run_id, outcome FROM idempotency_keys WHERE scope = $1 AND key = $2";

/// Records a keyed request's outcome once its write is done (the row was claimed first).
pub(crate) const SAVE_IDEMPOTENCY_OUTCOME: &str =
    "UPDATE idempotency_keys SET run_id = $3, outcome = $4 WHERE scope = $1 AND key = $2";

pub(crate) const PURGE_IDEMPOTENCY_KEYS: &str =
    "DELETE FROM idempotency_keys WHERE created_at < $1";

/// A page of the newest-first run list: `$1` is the page size + 1, then the cursor `(created_at,
/// id)` when `after`, then the name filter's needle when `name_match` (the engine's expression
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

/// `$1` run, `$2` request number, `$3` eval id, `$4` eval fields: one row of a multi-row insert
/// of the requests a batch creates.
pub(crate) const INSERT_REQUESTS: &str =
    "INSERT INTO requests (run_id, request_number, external_id, eval_item) VALUES ";

/// The highest request number of run `$1`.
pub(crate) const MAX_REQUEST_NUMBER: &str =
    "SELECT max(request_number) FROM requests WHERE run_id = $1";

/// `SELECT ... WHERE run_id = $1 AND <column> IN ($2, ..., $n+1) <tail>`: the statements that look
/// up a batch's eval ids or step contents, always with [`IN_LIST`] values (the last one repeated
/// to fill a chunk), so that each is one prepared statement whatever the batch.
pub(crate) fn in_list(head: &str, column: &str, tail: &str) -> String {
    let mut sql = format!("{head} WHERE run_id = $1 AND {column} IN (");
    for i in 0..IN_LIST {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&(i + 2).to_string());
    }
    sql.push(')');
    sql.push_str(tail);
    sql
}

/// Values per [`in_list`] statement.
pub(crate) const IN_LIST: usize = 100;

pub(crate) const SELECT_REQUESTS: &str = "SELECT request_number, external_id, step_count FROM requests \
     WHERE run_id = $1 ORDER BY request_number";

/// Every request with its eval fields (`eval_item`, JSON), for the ATIF export.
pub(crate) const SELECT_REQUEST_ITEMS: &str = "SELECT request_number, external_id, eval_item FROM requests \
     WHERE run_id = $1 ORDER BY request_number";

pub(crate) const SELECT_REQUEST_NUMBERS: &str =
    "SELECT request_number FROM requests WHERE run_id = $1 ORDER BY request_number";

/// A step's request, its place in the request and its packed columns and body, in the order
/// `columns::step_row` reads them.
macro_rules! step_columns {
    () => {
        "SELECT request_number, seq, packed FROM steps "
    };
}

/// The requests of run `$1` that started in `[$2, $3)`: served by the index `requests_by_start`.
macro_rules! in_window {
    () => {
        "run_id = $1 AND started_at >= $2 AND started_at < $3"
    };
}

/// Every step of a run, by request: the order of the steps' primary key, so no sort is needed;
/// the reader puts each request's steps in `seq` order (see `steps::SeqOrder`).
pub(crate) const SELECT_STEPS: &str =
    concat!(step_columns!(), "WHERE run_id = $1 ORDER BY request_number");

/// [`SELECT_STEPS`] of a window's requests.
pub(crate) const SELECT_WINDOW_STEPS: &str = concat!(
    step_columns!(),
    "WHERE run_id = $1 AND request_number IN (SELECT request_number FROM requests WHERE ",
    in_window!(),
    ") ORDER BY request_number"
);

/// [`SELECT_REQUESTS`] of a window.
pub(crate) const SELECT_WINDOW_REQUESTS: &str = concat!(
    "SELECT request_number, external_id, step_count FROM requests WHERE ",
    in_window!(),
    " ORDER BY request_number"
);

/// [`SELECT_REQUEST_ITEMS`] of a window.
pub(crate) const SELECT_WINDOW_REQUEST_ITEMS: &str = concat!(
    "SELECT request_number, external_id, eval_item FROM requests WHERE ",
    in_window!(),
    " ORDER BY request_number"
);

/// [`SELECT_REQUEST_NUMBERS`] of a window.
pub(crate) const SELECT_WINDOW_REQUEST_NUMBERS: &str = concat!(
    "SELECT request_number FROM requests WHERE ",
    in_window!(),
    " ORDER BY request_number"
);

/// The sums of a size: cast, as PostgreSQL sums `bigint`s into `numeric`.
macro_rules! size_sums {
    () => {
        "SELECT COUNT(*), CAST(COALESCE(SUM(step_count), 0) AS BIGINT), \
         CAST(COALESCE(SUM(column_bytes), 0) AS BIGINT), \
         CAST(COALESCE(SUM(body_bytes), 0) AS BIGINT) FROM requests WHERE "
    };
}

/// How many requests and steps run `$1` holds, and their column and body bytes.
pub(crate) const RUN_SIZE: &str = concat!(size_sums!(), "run_id = $1");

/// [`RUN_SIZE`] of a window.
pub(crate) const WINDOW_SIZE: &str = concat!(size_sums!(), in_window!());

/// The earliest start in `[$2, $3)` from which the window's requests, newest first, cost at
/// most `$7` in all, each costing `$4` per step plus `$5` per column byte plus `$6`; no row when
/// even the latest request alone costs more.
pub(crate) const FITTING_START: &str = concat!(
    "SELECT started_at FROM (SELECT started_at, ",
    "SUM(step_count * $4 + column_bytes * $5 + $6) OVER (ORDER BY started_at DESC) AS cost ",
    "FROM requests WHERE ",
    in_window!(),
    ") AS w WHERE cost <= $7 ORDER BY started_at LIMIT 1"
);

/// Adds a batch's figures to its requests: `$1` run, then per request (number, earliest step
/// time, steps, column bytes, body bytes, latest step time) from `$2` on, as [`values`] lists
/// them.
pub(crate) fn add_request_figures(rows: usize) -> String {
    format!(
        "UPDATE requests SET \
         started_at = CASE WHEN started_at IS NULL OR v.column2 < started_at THEN v.column2 \
         ELSE started_at END, step_count = step_count + v.column3, \
         column_bytes = column_bytes + v.column4, body_bytes = body_bytes + v.column5, \
         ended_at = CASE WHEN ended_at IS NULL OR v.column6 > ended_at THEN v.column6 \
         ELSE ended_at END \
         FROM (VALUES {}) AS v WHERE requests.run_id = $1 AND requests.request_number = v.column1",
        values_from(rows, 6, 2)
    )
}

/// The columns of a multi-row step insert, in the order `backend::insert_steps_by_rows` binds them.
pub(crate) const INSERT_STEPS: &str = "INSERT INTO steps (run_id, request_number, seq, event_type, content_hash, \
     occurrence, packed) VALUES ";

/// Rows per multi-row `INSERT`: a few hundred keeps each statement well under both engines'
/// parameter limits (SQLite's 32,766, PostgreSQL's 65,535).
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// Parameters per row of [`INSERT_STEPS`].
pub(crate) const STEP_PARAMS: usize = 7;

/// `(${first}, ..., ${first + n - 1})`, `rows` times, comma separated: the VALUES of a multi-row
/// insert.
pub(crate) fn values(rows: usize, per_row: usize) -> String {
    values_from(rows, per_row, 1)
}

/// [`values`] with placeholders numbered from `first`.
pub(crate) fn values_from(rows: usize, per_row: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * per_row * 5);
    let mut n = first - 1;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..per_row {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_column_positions_follow_the_list() {
        let names: Vec<&str> = run_columns!().split(',').map(str::trim).collect();
        let at = |n: &str| names.iter().position(|c| *c == n).unwrap();
        assert_eq!(names.len(), 20);
        assert_eq!(at("id"), run::ID);
        assert_eq!(at("name"), run::NAME);
        assert_eq!(at("created_at"), run::CREATED_AT);
        assert_eq!(at("updated_at"), run::UPDATED_AT);
        assert_eq!(at("version"), run::VERSION);
        assert_eq!(at("request_count"), run::REQUEST_COUNT);
        assert_eq!(at("step_count"), run::STEP_COUNT);
        assert_eq!(at("profiler_config"), run::PROFILER_CONFIG);
        assert_eq!(at("metadata"), run::METADATA);
        assert_eq!(at("toolkit"), run::TOOLKIT);
        assert_eq!(at("nat_schema"), run::NAT_SCHEMA);
        assert_eq!(at("non_end_steps"), run::NON_END_STEPS);
        assert_eq!(at("aiq_rewrite"), run::AIQ_REWRITE);
        assert_eq!(at("nat_rewrite"), run::NAT_REWRITE);
        assert_eq!(at("first_event_at"), run::FIRST_EVENT_AT);
        assert_eq!(at("last_event_at"), run::LAST_EVENT_AT);
        assert_eq!(at("llm_calls"), run::LLM_CALLS);
        assert_eq!(at("llm_tokens"), run::LLM_TOKENS);
        assert_eq!(at("retention_seconds"), run::RETENTION_SECONDS);
        assert_eq!(at("prices"), run::PRICES);
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(values(2, 2), "($1, $2), ($3, $4)");
        let sql = in_list("SELECT x FROM t", "c", " GROUP BY c");
        assert!(sql.starts_with("SELECT x FROM t WHERE run_id = $1 AND c IN ($2, $3,"));
        assert!(sql.ends_with(&format!("${}) GROUP BY c", IN_LIST + 1)));
    }
}
