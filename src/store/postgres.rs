//! The PostgreSQL store (sqlx, `PgPool`).
//!
//! A batch runs in one transaction. Batches of the same run do not serialise: each numbers its
//! steps from its own block of the `step_batches` sequence, and two batches carrying the same
//! step meet at the unique index, where the later one waits and then skips it. The one thing
//! that needs the run to itself is handing out new request numbers to eval ids, so such a batch
//! locks the run row `FOR UPDATE`, while every other batch holds `FOR KEY SHARE` (compatible with
//! its peers, not with that lock). Steps go in with one
//! `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO NOTHING`, one array per column.

use super::*;
use crate::profiler::Dialect;
use crate::trace::{Framework, StepSchema};
use futures::{StreamExt, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    streams: StreamSlots,
    /// Set once the migrations have run; until then data operations answer "unavailable".
    schema_ready: Arc<AtomicBool>,
}

/// Connections per process.
const MAX_CONNECTIONS: u32 = 16;

/// Connection settings for the pool; short acquire timeouts so that an unreachable database
/// turns into a prompt 503 rather than a hung request.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
}

impl PgStore {
    /// Connects and applies the migrations; fails if the database is unreachable.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::connect_lazy(url)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store whose connections open on first use, so the server can start while the database
    /// is down; call [`PgStore::migrate_with_retry`] next.
    pub fn connect_lazy(url: &str) -> Result<PgStore, StoreError> {
        let opts = PgConnectOptions::from_str(url).map_err(StoreError::Database)?;
        Ok(PgStore::from_pool(pool_options().connect_lazy_with(opts)))
    }

    /// Wraps a pool whose database is already migrated (or will be, through `migrate`).
    pub fn from_pool(pool: PgPool) -> PgStore {
        PgStore {
            streams: StreamSlots::for_pool(pool.options().get_max_connections()),
            pool,
            schema_ready: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        self.schema_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Tries the migrations for up to `wait`; if the database is still unreachable, keeps
    /// trying in the background (every two seconds) and returns, so that the server can answer
    /// 503 meanwhile. A migration that fails for any other reason (a dirty or unknown migration,
    /// missing privileges) cannot fix itself by waiting: that error is returned, so the server
    /// exits instead of answering 503 forever.
    pub async fn migrate_with_retry(&self, wait: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.migrate().await {
                Ok(()) => return Ok(()),
                Err(StoreError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "database not ready; migrations will be retried");
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                match store.migrate().await {
                    Ok(()) => {
                        tracing::info!("database reachable; migrations applied");
                        return;
                    }
                    Err(StoreError::Unavailable(e)) => {
                        tracing::warn!(error = %e, "database still not ready")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "migrations failed; the server stays unready until it is restarted");
                        return;
                    }
                }
            }
        });
        Ok(())
    }

    /// A read-only transaction on one snapshot, for reading a run's steps in file order.
    ///
    /// Sorts are planned out of it: the steps then come in the primary key's order from the
    /// first row on, instead of after a sort of the whole run. The planner prefers the sort when
    /// one run holds most of the table, which is when it costs most: on a 199,066-step run alone
    /// in its database, PostgreSQL sent the first row after 185 ms of sorting (spilled to disk)
    /// and the last at 270 ms, against 0.04 ms and 180–250 ms by the index (BENCHMARKS.md
    /// section 8); and what arrives early is decoded while the rest is read.
    async fn begin_run_read(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    fn ready(&self) -> Result<(), StoreError> {
        if self.schema_ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "migrations have not run yet".to_owned(),
            ))
        }
    }
}

fn run_from_row(r: &PgRow) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        id: r.try_get("id")?,
        name: utf8(r.try_get("name")?)?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
        request_count: i64::from(r.try_get::<i32, _>("request_count")?),
        step_count: r.try_get("step_count")?,
        profiler_config: json_column(r, "profiler_config")?,
        metadata: json_column(r, "metadata")?,
        toolkit: toolkit_column(r.try_get("toolkit")?)?,
        nat_schema: r.try_get("nat_schema")?,
        non_end_steps: r.try_get("non_end_steps")?,
        aiq_rewrite: r.try_get("aiq_rewrite")?,
        nat_rewrite: r.try_get("nat_rewrite")?,
        summary: step_summary(r)?,
    })
}

/// Inserts a new run; with `if_absent`, an existing run of that id is left as it is. `true` when
/// a row was inserted.
async fn insert_run(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    run: &NewRun,
    if_absent: bool,
) -> Result<bool, StoreError> {
    let sql = if if_absent {
        "INSERT INTO runs (id, name, profiler_config, metadata, toolkit) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING"
    } else {
        "INSERT INTO runs (id, name, profiler_config, metadata, toolkit) VALUES ($1, $2, $3, $4, $5)"
    };
    let done = sqlx::query(sql)
        .bind(id)
        .bind(run.name.as_bytes())
        .bind(run.profiler_config.to_string())
        .bind(run.metadata.to_string())
        .bind(run.toolkit.map(Dialect::as_str))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

async fn fetch_run(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<RunRecord, StoreError> {
    let row = sqlx::query(sql::SELECT_RUN)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    run_from_row(&row.ok_or(StoreError::RunNotFound(id))?)
}

/// Column arrays for one `UNNEST` insert, borrowing from the prepared batch.
#[derive(Default)]
struct StepArrays<'a> {
    request_number: Vec<i32>,
    seq: Vec<i64>,
    event_type: Vec<i16>,
    event_timestamp: Vec<f64>,
    uuid: Vec<&'a [u8]>,
    name: Vec<Option<&'a [u8]>>,
    framework: Vec<Option<i16>>,
    function_name: Vec<Option<&'a [u8]>>,
    function_id: Vec<Option<&'a [u8]>>,
    parent_name: Vec<Option<&'a [u8]>>,
    parent_id: Vec<Option<&'a [u8]>>,
    prompt_tokens: Vec<i64>,
    completion_tokens: Vec<i64>,
    total_tokens: Vec<i64>,
    seconds_between_calls: Vec<i64>,
    text_value: Vec<Option<&'a [u8]>>,
    span_event_timestamp: Vec<Option<f64>>,
    step_parent_id: Vec<Option<&'a [u8]>>,
    content_hash: Vec<&'a [u8]>,
    occurrence: Vec<i32>,
    body: Vec<&'a str>,
}

impl<'a> StepArrays<'a> {
    fn push(&mut self, planned: &PlannedStep<'a>) {
        let (request_number, seq, step) = (planned.number, planned.seq, planned.step);
        let c = &step.columns;
        let bytes = |s: &'a Option<String>| s.as_deref().map(str::as_bytes);
        self.request_number.push(request_number);
        self.seq.push(seq);
        self.event_type.push(c.event_type.code());
        self.event_timestamp.push(c.event_timestamp);
        self.uuid.push(c.uuid.as_bytes());
        self.name.push(bytes(&c.name));
        self.framework.push(c.framework.map(Framework::code));
        match &c.ancestry {
            Some(a) => {
                self.function_name.push(Some(a.function_name.as_bytes()));
                self.function_id.push(Some(a.function_id.as_bytes()));
                self.parent_name.push(bytes(&a.parent_name));
                self.parent_id.push(bytes(&a.parent_id));
            }
            None => {
                self.function_name.push(None);
                self.function_id.push(None);
                self.parent_name.push(None);
                self.parent_id.push(None);
            }
        }
        self.prompt_tokens.push(c.prompt_tokens);
        self.completion_tokens.push(c.completion_tokens);
        self.total_tokens.push(c.total_tokens);
        self.seconds_between_calls.push(c.seconds_between_calls);
        self.text_value.push(bytes(&c.text));
        self.span_event_timestamp.push(c.span_event_timestamp);
        self.step_parent_id.push(bytes(&c.parent_id));
        self.content_hash.push(&step.content_hash);
        self.occurrence.push(planned.occurrence);
        self.body.push(&step.body);
    }
}

const INSERT_STEPS: &str = "
    INSERT INTO steps (run_id, request_number, seq, event_type, event_timestamp, uuid, name, framework,
                       function_name, function_id, parent_name, parent_id, prompt_tokens, completion_tokens,
                       total_tokens, seconds_between_calls, text_value, span_event_timestamp, step_parent_id,
                       content_hash, occurrence, body)
    SELECT $1, * FROM UNNEST($2::int4[], $3::int8[], $4::int2[], $5::float8[], $6::bytea[], $7::bytea[], $8::int2[],
                             $9::bytea[], $10::bytea[], $11::bytea[], $12::bytea[], $13::int8[], $14::int8[],
                             $15::int8[], $16::int8[], $17::bytea[], $18::float8[], $19::bytea[], $20::bytea[],
                             $21::int4[], $22::text[])
    ON CONFLICT DO NOTHING";

/// Appends a prepared batch inside `tx`.
///
/// No lock is held while the steps go in: sequence numbers come from a block of the
/// `step_batches` sequence, and concurrent batches that carry the same step meet at the unique
/// index, where the later one waits and then skips it. A batch that may number new eval requests,
/// or that carries an Idempotency-Key (its identical steps count on from the stored ones), locks
/// the run row exclusively from the start; every other batch takes the shared `FOR KEY SHARE`,
/// which waits for such a batch but not for its peers.
async fn append_in(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    batch: &PreparedBatch,
    keyed: bool,
) -> Result<IngestOutcome, StoreError> {
    let version = lock_run(tx, id, batch.has_external_ids() || keyed).await?;
    let (by_external, max_number) = if batch.has_external_ids() {
        known_requests(tx, id, batch).await?
    } else {
        (HashMap::new(), -1)
    };
    let stored_before = if keyed {
        stored_occurrences(tx, id, batch).await?
    } else {
        StoredOccurrences::new()
    };
    if batch.step_count() >= 1 << SEQ_BLOCK_BITS {
        return Err(StoreError::Rejected(format!(
            "a batch holds at most {} steps",
            (1u64 << SEQ_BLOCK_BITS) - 1
        )));
    }
    let block: i64 = sqlx::query_scalar("SELECT nextval('step_batches')")
        .fetch_one(&mut **tx)
        .await?;
    let plan = batch.plan(
        &by_external,
        max_number,
        block << SEQ_BLOCK_BITS,
        &stored_before,
    )?;
    let created = insert_requests(tx, id, &plan).await?;
    let stored = insert_steps(tx, id, &plan).await?;
    let version = if stored > 0 || created > 0 {
        bump_version(tx, id, batch, &plan, created, stored).await?
    } else {
        version
    };
    Ok(IngestOutcome {
        version,
        requests_received: plan.requests_received,
        requests_created: created,
        steps_received: plan.steps_received,
        steps_stored: stored,
        steps_skipped_duplicate: plan.steps_received - stored,
    })
}

/// Locks the run row (exclusively, or shared with other plain batches) and reads its version.
async fn lock_run(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    exclusive: bool,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(if exclusive {
        "SELECT version FROM runs WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT version FROM runs WHERE id = $1 FOR KEY SHARE"
    })
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::RunNotFound(id))
}

/// The stored request numbers of the batch's eval ids, and the run's highest request number.
async fn known_requests(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    batch: &PreparedBatch,
) -> Result<(HashMap<String, i64>, i64), StoreError> {
    let wanted: Vec<&[u8]> = batch.external_ids().iter().map(|e| e.as_bytes()).collect();
    let rows = sqlx::query(
        "SELECT external_id, request_number FROM requests WHERE run_id = $1 AND external_id = ANY($2)",
    )
    .bind(id)
    .bind(&wanted)
    .fetch_all(&mut **tx)
    .await?;
    let mut by_external = HashMap::with_capacity(rows.len());
    for r in rows {
        by_external.insert(
            utf8(r.try_get("external_id")?)?,
            i64::from(r.try_get::<i32, _>("request_number")?),
        );
    }
    let max_number: Option<i32> =
        sqlx::query_scalar("SELECT max(request_number) FROM requests WHERE run_id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
    Ok((by_external, max_number.map_or(-1, i64::from)))
}

/// How often each of the batch's step contents is already stored, per request.
async fn stored_occurrences(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    batch: &PreparedBatch,
) -> Result<StoredOccurrences, StoreError> {
    let hashes: Vec<Vec<u8>> = batch.content_hashes().iter().map(|h| h.to_vec()).collect();
    let rows: Vec<(i32, Vec<u8>, i32)> = sqlx::query_as(
        "SELECT request_number, content_hash, max(occurrence) FROM steps
         WHERE run_id = $1 AND content_hash = ANY($2) GROUP BY request_number, content_hash",
    )
    .bind(id)
    .bind(&hashes)
    .fetch_all(&mut **tx)
    .await?;
    occurrences_from_rows(
        rows.into_iter()
            .map(|(n, h, k)| (i64::from(n), h, i64::from(k))),
    )
}

async fn insert_requests(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    plan: &BatchPlan<'_>,
) -> Result<i64, StoreError> {
    let numbers: Vec<i32> = plan.requests.iter().map(|r| r.number).collect();
    let external: Vec<Option<&[u8]>> = plan
        .requests
        .iter()
        .map(|r| r.external_id.map(str::as_bytes))
        .collect();
    let eval: Vec<Option<&str>> = plan.requests.iter().map(|r| r.eval).collect();
    let created = sqlx::query(
        "INSERT INTO requests (run_id, request_number, external_id, eval_item)
         SELECT $1, * FROM UNNEST($2::int4[], $3::bytea[], $4::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&numbers)
    .bind(&external)
    .bind(&eval)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(created as i64)
}

/// Inserts the planned steps with one `INSERT ... SELECT FROM UNNEST`; a step already stored
/// (same request, content and occurrence) is skipped at the unique index.
async fn insert_steps(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    plan: &BatchPlan<'_>,
) -> Result<i64, StoreError> {
    if plan.steps.is_empty() {
        return Ok(0);
    }
    let mut a = StepArrays::default();
    for step in &plan.steps {
        a.push(step);
    }
    let stored = sqlx::query(INSERT_STEPS)
        .bind(id)
        .bind(&a.request_number)
        .bind(&a.seq)
        .bind(&a.event_type)
        .bind(&a.event_timestamp)
        .bind(&a.uuid)
        .bind(&a.name)
        .bind(&a.framework)
        .bind(&a.function_name)
        .bind(&a.function_id)
        .bind(&a.parent_name)
        .bind(&a.parent_id)
        .bind(&a.prompt_tokens)
        .bind(&a.completion_tokens)
        .bind(&a.total_tokens)
        .bind(&a.seconds_between_calls)
        .bind(&a.text_value)
        .bind(&a.span_event_timestamp)
        .bind(&a.step_parent_id)
        .bind(&a.content_hash)
        .bind(&a.occurrence)
        .bind(&a.body)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(stored as i64)
}

/// Counts what the batch stored into the run, raises its version, and notes what the stored
/// steps now hold.
async fn bump_version(
    tx: &mut Transaction<'static, Postgres>,
    id: Uuid,
    batch: &PreparedBatch,
    plan: &BatchPlan<'_>,
    created: i64,
    stored: i64,
) -> Result<i64, StoreError> {
    let added = plan.added_summary(stored);
    let sum = added.unwrap_or_default();
    let version = sqlx::query_scalar(
        "UPDATE runs SET version = version + 1, request_count = request_count + $2,
                         step_count = step_count + $3,
                         nat_schema = nat_schema OR $4, non_end_steps = non_end_steps OR $5,
                         aiq_rewrite = aiq_rewrite OR $6, nat_rewrite = nat_rewrite OR $7,
                         first_event_at = LEAST(first_event_at, $8), last_event_at = GREATEST(last_event_at, $9),
                         llm_calls = llm_calls + $10,
                         llm_tokens = LEAST(GREATEST(llm_tokens::numeric + $11, -9223372036854775808), 9223372036854775807)::bigint,
                         updated_at = GREATEST(clock_timestamp(), updated_at + interval '1 microsecond')
         WHERE id = $1 RETURNING version",
    )
    .bind(id)
    .bind(created as i32)
    .bind(stored)
    .bind(batch.nat_schema)
    .bind(batch.non_end_steps)
    .bind(batch.aiq_rewrite)
    .bind(batch.nat_rewrite)
    .bind(sum.first_event_at)
    .bind(sum.last_event_at)
    .bind(sum.llm_calls)
    .bind(sum.llm_tokens)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::RunNotFound(id))?;
    if added.is_none() {
        sqlx::query(sql::RECOUNT_SUMMARY_PG)
            .bind(id)
            .bind(crate::trace::EventType::LlmEnd.code())
            .execute(&mut **tx)
            .await?;
    }
    Ok(version)
}

/// Claims an Idempotency-Key for this transaction, or finds its first outcome. A concurrent
/// request with the same key waits at the primary key until the first one commits (then it
/// replays it) or rolls back (then it claims the key itself).
async fn claim_key(
    tx: &mut Transaction<'static, Postgres>,
    key: &IdempotencyKey,
    run: Uuid,
) -> Result<Option<Written>, StoreError> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, run_id, record)
         VALUES ($1, $2, $3, $4, '') ON CONFLICT DO NOTHING",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(&key.fingerprint[..])
    .bind(run)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if claimed == 1 {
        return Ok(None);
    }
    let (fingerprint, record, outcome): (Vec<u8>, String, Option<String>) =
        sqlx::query_as(sql::SELECT_IDEMPOTENCY_KEY)
            .bind(&key.scope)
            .bind(&key.key)
            .fetch_one(&mut **tx)
            .await?;
    replay(key, &fingerprint, &record, outcome.as_deref()).map(Some)
}

/// Stores a keyed write's outcome with the write itself.
async fn save_key(
    tx: &mut Transaction<'static, Postgres>,
    key: &IdempotencyKey,
    written: &Written,
) -> Result<(), StoreError> {
    let (record, outcome) = outcome_texts(written);
    sqlx::query(sql::SAVE_IDEMPOTENCY_OUTCOME)
        .bind(&key.scope)
        .bind(&key.key)
        .bind(written.record.id)
        .bind(record)
        .bind(outcome)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Ends one attempt at a batch transaction: commits on success; `None` asks for another
/// attempt when the transaction lost a deadlock race (concurrent batches sharing steps can wait
/// on each other at the unique index, and PostgreSQL aborts one of them).
async fn settle<T>(
    id: Uuid,
    tx: Transaction<'static, Postgres>,
    result: Result<T, StoreError>,
    tries: &mut u32,
) -> Option<Result<T, StoreError>> {
    match result {
        Ok(v) => Some(tx.commit().await.map(|_| v).map_err(StoreError::from)),
        Err(e) if is_retryable(&e) && *tries < 5 => {
            *tries += 1;
            tracing::info!(error = %e, tries = *tries, "retrying a batch transaction");
            None
        }
        // A run deleted while its batch was in flight: the foreign key says so.
        Err(StoreError::Database(sqlx::Error::Database(db)))
            if db.code().as_deref() == Some("23503") =>
        {
            Some(Err(StoreError::RunNotFound(id)))
        }
        Err(e) => Some(Err(e)),
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ready()?;
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn ensure_run(&self, id: Uuid, run: NewRun) -> Result<bool, StoreError> {
        self.ready()?;
        let mut conn = self.pool.acquire().await?;
        insert_run(&mut conn, id, &run, true).await
    }

    async fn create_run(
        &self,
        run: NewRun,
        batch: Option<PreparedBatch>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError> {
        self.ready()?;
        let id = Uuid::new_v4();
        let mut tries = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let result = async {
                if let Some(key) = key
                    && let Some(first) = claim_key(&mut tx, key, id).await?
                {
                    return Ok(first);
                }
                insert_run(&mut tx, id, &run, false).await?;
                let outcome = match &batch {
                    Some(b) => Some(append_in(&mut tx, id, b, false).await?),
                    None => None,
                };
                let written = Written {
                    record: fetch_run(&mut tx, id).await?,
                    outcome,
                    replayed: false,
                };
                if let Some(key) = key {
                    save_key(&mut tx, key, &written).await?;
                }
                Ok(written)
            }
            .await;
            if let Some(done) = settle(id, tx, result, &mut tries).await {
                return done;
            }
        }
    }

    async fn get_run(&self, id: Uuid) -> Result<RunRecord, StoreError> {
        self.ready()?;
        let mut conn = self.pool.acquire().await?;
        fetch_run(&mut conn, id).await
    }

    async fn run_stamp(&self, id: Uuid) -> Result<RunStamp, StoreError> {
        self.ready()?;
        let (version, updated_at) = sqlx::query_as(sql::SELECT_STAMP)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        Ok(RunStamp {
            version,
            updated_at,
        })
    }

    async fn list_runs(
        &self,
        limit: i64,
        after: Option<RunCursor>,
        name: Option<&str>,
    ) -> Result<RunPage, StoreError> {
        self.ready()?;
        // Names are UTF-8 bytea (they may hold NUL). Lowering their escaped form lowers their
        // ASCII letters only (every other byte is an octal escape), and decoding it gives the
        // bytes back: the name with its ASCII letters lowered, searched bytewise for the needle
        // (lowered the same way).
        let name_match: fn(&str) -> String = |p| {
            format!(
                "position(convert_to(CAST({p} AS text), 'UTF8') IN decode(lower(encode(name, 'escape')), 'escape')) > 0"
            )
        };
        let sql = sql::list_runs(after.is_some(), name.is_some().then_some(name_match));
        // Built from fixed fragments only; the needle is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit + 1);
        if let Some(c) = &after {
            query = query.bind(c.created_at).bind(c.id);
        }
        if let Some(name) = name {
            query = query.bind(name.to_ascii_lowercase());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RunPage::from_overfetched(items, limit))
    }

    async fn update_run(&self, id: Uuid, changes: RunChanges) -> Result<RunRecord, StoreError> {
        self.ready()?;
        let mut tx = self.pool.begin().await?;
        // updated_at only ever grows, even within one clock tick, so it can serve as the
        // precondition of the next update.
        let update = concat!(
            "UPDATE runs SET name = COALESCE($2, name), profiler_config = COALESCE($3, profiler_config),
                             metadata = COALESCE($4, metadata),
                             toolkit = CASE WHEN $6 THEN $7 ELSE toolkit END,
                             updated_at = GREATEST(clock_timestamp(), updated_at + interval '1 microsecond')
             WHERE id = $1 AND ($5::timestamptz IS NULL OR updated_at = $5)
             RETURNING ",
            sql::run_columns!()
        );
        let updated = sqlx::query(update)
            .bind(id)
            .bind(changes.name.map(String::into_bytes))
            .bind(changes.profiler_config.map(|v| v.to_string()))
            .bind(changes.metadata.map(|v| v.to_string()))
            .bind(changes.if_updated_at)
            .bind(changes.toolkit.is_some())
            .bind(changes.toolkit.flatten().map(Dialect::as_str))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = updated else {
            // No row matched: the run is gone (NotFound) or moved past the precondition.
            return Err(match fetch_run(&mut tx, id).await {
                Ok(_) => StoreError::Stale,
                Err(e) => e,
            });
        };
        let record = run_from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_run(&self, id: Uuid) -> Result<(), StoreError> {
        self.ready()?;
        let done = sqlx::query(sql::DELETE_RUN)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::RunNotFound(id));
        }
        Ok(())
    }

    async fn append(
        &self,
        id: Uuid,
        batch: PreparedBatch,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError> {
        self.ready()?;
        let mut tries = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let result = async {
                if let Some(key) = key
                    && let Some(first) = claim_key(&mut tx, key, id).await?
                {
                    return Ok(first);
                }
                let outcome = append_in(&mut tx, id, &batch, key.is_some()).await?;
                let written = Written {
                    record: fetch_run(&mut tx, id).await?,
                    outcome: Some(outcome),
                    replayed: false,
                };
                if let Some(key) = key {
                    save_key(&mut tx, key, &written).await?;
                }
                Ok(written)
            }
            .await;
            if let Some(done) = settle(id, tx, result, &mut tries).await {
                return done;
            }
        }
    }

    async fn purge_idempotency_keys(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        self.ready()?;
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn load(&self, id: Uuid) -> Result<LoadedRun, StoreError> {
        self.ready()?;
        // One snapshot for the version and the rows it covers.
        let mut tx = self.begin_run_read().await?;
        let version: i64 = sqlx::query_scalar(sql::SELECT_VERSION)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        let requests: Vec<(i32, Option<Vec<u8>>)> = sqlx::query_as(sql::SELECT_REQUESTS)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let requests = requests
            .into_iter()
            .map(|(n, e)| Ok((i64::from(n), e.map(utf8).transpose()?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut frame = FrameAssembler::new(requests);
        {
            let mut rows = sqlx::query(sql::SELECT_STEP_COLUMNS)
                .bind(id)
                .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let n = i64::from(row.try_get::<i32, _>(columns::REQUEST_NUMBER)?);
                frame.step(n, step_columns(&row)?);
            }
        }
        tx.commit().await?;
        Ok(LoadedRun {
            version,
            frame: frame.finish(),
        })
    }

    async fn load_steps(&self, id: Uuid) -> Result<LoadedSteps, StoreError> {
        self.ready()?;
        let mut tx = self.begin_run_read().await?;
        let version: i64 = sqlx::query_scalar(sql::SELECT_VERSION)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        let requests: Vec<(i32, Option<Vec<u8>>, Option<String>)> =
            sqlx::query_as(sql::SELECT_REQUEST_ITEMS)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        let requests = requests
            .into_iter()
            .map(|(n, e, item)| Ok((i64::from(n), e.map(utf8).transpose()?, item)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut steps = StepsAssembler::new(requests)?;
        {
            let mut rows = sqlx::query(sql::SELECT_STEP_BODIES)
                .bind(id)
                .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let n = i64::from(row.try_get::<i32, _>("request_number")?);
                steps.step(n, row.try_get("body")?)?;
            }
        }
        tx.commit().await?;
        Ok(LoadedSteps {
            version,
            requests: steps.finish(),
        })
    }

    async fn stream_requests(
        &self,
        id: Uuid,
        schema: Option<StepSchema>,
    ) -> Result<ByteStream, StoreError> {
        self.ready()?;
        let slot = self.streams.acquire().await?;
        let mut tx = self.begin_run_read().await?;
        let exists: Option<i32> = sqlx::query_scalar(sql::RUN_EXISTS)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::RunNotFound(id));
        }
        let numbers: Vec<i32> = sqlx::query_scalar(sql::SELECT_REQUEST_NUMBERS)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let stream = async_stream::try_stream! {
            let _slot = slot;
            let mut out = TracesAssembler::new(numbers.into_iter().map(i64::from).collect(), schema);
            {
                let mut rows = sqlx::query(sql::SELECT_STEP_BODIES)
                    .bind(id)
                    .fetch(&mut *tx);
                while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                    let n = i64::from(row.try_get::<i32, _>("request_number").map_err(StoreError::from)?);
                    if let Some(chunk) = out.step(n, row.try_get("body").map_err(StoreError::from)?)? {
                        yield chunk;
                    }
                }
            }
            let rest = out.finish()?;
            tx.commit().await.map_err(StoreError::from)?;
            yield rest;
        };
        Ok(stream.boxed())
    }
}
