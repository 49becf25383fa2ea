//! The embedded SQLite store: a single file, no server, for `agentprof serve` out of the box.
//!
//! Writes take SQLite's write lock up front (`BEGIN IMMEDIATE`), which serialises all batches
//! (simpler than the PostgreSQL store's lock-free numbering, and a single file has one writer
//! anyway). WAL mode lets readers (metrics, streaming) proceed
//! while a batch is written. SQLite has no array parameters, so steps go in with multi-row
//! `INSERT ... VALUES` statements, a few hundred rows at a time.

use super::*;
use crate::profiler::Dialect;
use crate::trace::{Framework, StepSchema};
use futures::{StreamExt, TryStreamExt};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row INSERT: 20 parameters each stays well under SQLite's 32766 limit.
const ROWS_PER_INSERT: usize = 500;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    streams: StreamSlots,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and applies the migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        SqliteStore::with_options(opts, 8).await
    }

    /// Opens a `sqlite:` URL (`sqlite://PATH`, `sqlite::memory:`).
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .create_if_missing(true);
        let in_memory = url.contains(":memory:");
        // An in-memory database lives as long as a connection to it: keep exactly one.
        SqliteStore::with_options(opts, if in_memory { 1 } else { 8 }).await
    }

    async fn with_options(opts: SqliteConnectOptions, max: u32) -> Result<SqliteStore, StoreError> {
        let opts = opts
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(if max == 1 { 1 } else { 0 })
            .idle_timeout(if max == 1 {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if max == 1 {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        let store = SqliteStore {
            streams: StreamSlots::for_pool(max),
            pool,
        };
        MIGRATOR.run(&store.pool).await?;
        store.backfill_content_hashes().await?;
        Ok(store)
    }

    /// Fills in the content hash of steps stored before steps were identified by content (SQLite
    /// has no SHA-256 for the migration to use), a few thousand rows per transaction.
    async fn backfill_content_hashes(&self) -> Result<(), StoreError> {
        loop {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT rowid, body FROM steps WHERE content_hash IS NULL LIMIT 5000",
            )
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for (rowid, body) in &rows {
                sqlx::query("UPDATE steps SET content_hash = ?1 WHERE rowid = ?2")
                    .bind(content_hash(body).to_vec())
                    .bind(rowid)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            tracing::info!(rows = rows.len(), "identified stored steps by content");
        }
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(m: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1000)
        .map_err(|e| StoreError::Corrupt(format!("stored timestamp out of range: {e}")))
}

fn run_from_row(r: &SqliteRow) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: from_micros(r.try_get("created_at")?)?,
        updated_at: from_micros(r.try_get("updated_at")?)?,
        version: r.try_get("version")?,
        request_count: r.try_get("request_count")?,
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
    conn: &mut sqlx::SqliteConnection,
    id: Uuid,
    run: &NewRun,
    if_absent: bool,
) -> Result<bool, StoreError> {
    let sql = if if_absent {
        "INSERT INTO runs (id, name, created_at, updated_at, profiler_config, metadata, toolkit) VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING"
    } else {
        "INSERT INTO runs (id, name, created_at, updated_at, profiler_config, metadata, toolkit) VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)"
    };
    let done = sqlx::query(sql)
        .bind(id)
        .bind(&run.name)
        .bind(micros(OffsetDateTime::now_utc()))
        .bind(run.profiler_config.to_string())
        .bind(run.metadata.to_string())
        .bind(run.toolkit.map(Dialect::as_str))
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

async fn fetch_run(conn: &mut sqlx::SqliteConnection, id: Uuid) -> Result<RunRecord, StoreError> {
    let row = sqlx::query(sql::SELECT_RUN)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    run_from_row(&row.ok_or(StoreError::RunNotFound(id))?)
}

/// Appends a prepared batch inside `tx`, which holds SQLite's write lock (`BEGIN IMMEDIATE`):
/// batches are serialised, so numbering and occurrence counts need no further locking.
async fn append_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    batch: &PreparedBatch,
    keyed: bool,
) -> Result<IngestOutcome, StoreError> {
    let run = sqlx::query("SELECT version, next_seq FROM runs WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::RunNotFound(id))?;
    let version: i64 = run.try_get("version")?;
    let next_seq: i64 = run.try_get("next_seq")?;
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
    let plan = batch.plan(&by_external, max_number, next_seq, &stored_before)?;
    let next_seq_after = next_seq + plan.steps.len() as i64;
    let created = insert_requests(tx, id, &plan).await?;
    let stored = insert_steps(tx, id, &plan).await?;
    let version = if stored > 0 || created > 0 {
        bump_version(tx, id, batch, &plan, next_seq_after, created, stored).await?
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

/// The stored request numbers of the batch's eval ids, and the run's highest request number.
async fn known_requests(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    batch: &PreparedBatch,
) -> Result<(HashMap<String, i64>, i64), StoreError> {
    let mut by_external: HashMap<String, i64> = HashMap::new();
    for chunk in batch.external_ids().chunks(ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT external_id, request_number FROM requests WHERE run_id = ",
        );
        q.push_bind(id).push(" AND external_id IN (");
        let mut sep = q.separated(", ");
        for e in chunk {
            sep.push_bind((*e).to_owned());
        }
        q.push(")");
        for r in q.build().fetch_all(&mut **tx).await? {
            by_external.insert(r.try_get("external_id")?, r.try_get("request_number")?);
        }
    }
    let max_number: Option<i64> =
        sqlx::query_scalar("SELECT max(request_number) FROM requests WHERE run_id = ?1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
    Ok((by_external, max_number.unwrap_or(-1)))
}

/// How often each of the batch's step contents is already stored, per request.
async fn stored_occurrences(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    batch: &PreparedBatch,
) -> Result<StoredOccurrences, StoreError> {
    let mut rows: Vec<(i64, Vec<u8>, i64)> = Vec::new();
    for chunk in batch.content_hashes().chunks(ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT request_number, content_hash, max(occurrence) FROM steps WHERE run_id = ",
        );
        q.push_bind(id).push(" AND content_hash IN (");
        let mut sep = q.separated(", ");
        for h in chunk {
            sep.push_bind(h.to_vec());
        }
        q.push(") GROUP BY request_number, content_hash");
        rows.extend(
            q.build_query_as::<(i64, Vec<u8>, i64)>()
                .fetch_all(&mut **tx)
                .await?,
        );
    }
    occurrences_from_rows(rows)
}

async fn insert_requests(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    plan: &BatchPlan<'_>,
) -> Result<i64, StoreError> {
    let mut created = 0i64;
    for chunk in plan.requests.chunks(ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO requests (run_id, request_number, external_id, eval_item) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(id)
                .push_bind(r.number)
                .push_bind(r.external_id)
                .push_bind(r.eval);
        });
        q.push(" ON CONFLICT DO NOTHING");
        created += q.build().execute(&mut **tx).await?.rows_affected() as i64;
    }
    Ok(created)
}

/// Inserts the planned steps with multi-row `INSERT`s; a step already stored (same request,
/// content and occurrence) is skipped at the unique index.
async fn insert_steps(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    plan: &BatchPlan<'_>,
) -> Result<i64, StoreError> {
    let mut stored = 0i64;
    for chunk in plan.steps.chunks(ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO steps (run_id, request_number, seq, event_type, event_timestamp, uuid, name, framework,
                                function_name, function_id, parent_name, parent_id, prompt_tokens, completion_tokens,
                                total_tokens, seconds_between_calls, text_value, span_event_timestamp,
                                step_parent_id, content_hash, occurrence, body) ",
        );
        q.push_values(chunk, |mut b, planned| {
            // SQLite arguments own their values.
            let step = planned.step;
            let c = step.columns.clone();
            let bytes = |s: Option<String>| s.map(String::into_bytes);
            let (fname, fid, pname, pid) = match c.ancestry {
                Some(a) => (
                    Some(a.function_name),
                    Some(a.function_id),
                    a.parent_name,
                    a.parent_id,
                ),
                None => (None, None, None, None),
            };
            b.push_bind(id)
                .push_bind(planned.number)
                .push_bind(planned.seq)
                .push_bind(c.event_type.code())
                .push_bind(c.event_timestamp)
                .push_bind(c.uuid.into_bytes())
                .push_bind(bytes(c.name))
                .push_bind(c.framework.map(Framework::code))
                .push_bind(bytes(fname))
                .push_bind(bytes(fid))
                .push_bind(bytes(pname))
                .push_bind(bytes(pid))
                .push_bind(c.prompt_tokens)
                .push_bind(c.completion_tokens)
                .push_bind(c.total_tokens)
                .push_bind(c.seconds_between_calls)
                .push_bind(bytes(c.text))
                .push_bind(c.span_event_timestamp)
                .push_bind(bytes(c.parent_id))
                .push_bind(step.content_hash.to_vec())
                .push_bind(planned.occurrence)
                .push_bind(step.body.clone());
        });
        q.push(" ON CONFLICT DO NOTHING");
        stored += q.build().execute(&mut **tx).await?.rows_affected() as i64;
    }
    Ok(stored)
}

/// Counts what the batch stored into the run, raises its version, and notes what the stored
/// steps now hold.
async fn bump_version(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    batch: &PreparedBatch,
    plan: &BatchPlan<'_>,
    next_seq: i64,
    created: i64,
    stored: i64,
) -> Result<i64, StoreError> {
    let added = plan.added_summary(stored);
    let sum = added.unwrap_or_default();
    // SQLite's two-argument MIN/MAX are NULL when either is: COALESCE keeps the known one.
    let version = sqlx::query_scalar(
        "UPDATE runs SET version = version + 1, next_seq = ?2, request_count = request_count + ?3,
                         step_count = step_count + ?4, updated_at = MAX(?5, updated_at + 1),
                         nat_schema = nat_schema OR ?6, non_end_steps = non_end_steps OR ?7,
                         aiq_rewrite = aiq_rewrite OR ?8, nat_rewrite = nat_rewrite OR ?9,
                         first_event_at = COALESCE(MIN(first_event_at, ?10), first_event_at, ?10),
                         last_event_at = COALESCE(MAX(last_event_at, ?11), last_event_at, ?11),
                         llm_calls = llm_calls + ?12,
                         llm_tokens = CAST(MAX(MIN(llm_tokens + CAST(?13 AS REAL), 9223372036854775807), -9223372036854775808) AS INTEGER)
         WHERE id = ?1 RETURNING version",
    )
    .bind(id)
    .bind(next_seq)
    .bind(created)
    .bind(stored)
    .bind(micros(OffsetDateTime::now_utc()))
    .bind(batch.nat_schema)
    .bind(batch.non_end_steps)
    .bind(batch.aiq_rewrite)
    .bind(batch.nat_rewrite)
    .bind(sum.first_event_at)
    .bind(sum.last_event_at)
    .bind(sum.llm_calls)
    .bind(sum.llm_tokens)
    .fetch_one(&mut **tx)
    .await?;
    if added.is_none() {
        sqlx::query(sql::RECOUNT_SUMMARY_SQLITE)
            .bind(id)
            .bind(crate::trace::EventType::LlmEnd.code())
            .execute(&mut **tx)
            .await?;
    }
    Ok(version)
}

/// Claims an Idempotency-Key for this transaction, or finds its first outcome (the write lock
/// serialises requests with the same key).
async fn claim_key(
    tx: &mut Transaction<'static, Sqlite>,
    key: &IdempotencyKey,
    run: Uuid,
) -> Result<Option<Written>, StoreError> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, run_id, record, created_at)
         VALUES (?1, ?2, ?3, ?4, '', ?5) ON CONFLICT DO NOTHING",
    )
    .bind(&key.scope)
    .bind(&key.key)
    .bind(&key.fingerprint[..])
    .bind(run)
    .bind(micros(OffsetDateTime::now_utc()))
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

async fn save_key(
    tx: &mut Transaction<'static, Sqlite>,
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

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_run(
        &self,
        run: NewRun,
        batch: Option<PreparedBatch>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id = Uuid::new_v4();
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
        tx.commit().await?;
        Ok(written)
    }

    async fn ensure_run(&self, id: Uuid, run: NewRun) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_run(&mut conn, id, &run, true).await
    }

    async fn get_run(&self, id: Uuid) -> Result<RunRecord, StoreError> {
        let mut conn = self.pool.acquire().await?;
        fetch_run(&mut conn, id).await
    }

    async fn run_stamp(&self, id: Uuid) -> Result<RunStamp, StoreError> {
        let (version, updated_at): (i64, i64) = sqlx::query_as(sql::SELECT_STAMP)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        Ok(RunStamp {
            version,
            updated_at: from_micros(updated_at)?,
        })
    }

    async fn list_runs(
        &self,
        limit: i64,
        after: Option<RunCursor>,
        name: Option<&str>,
    ) -> Result<RunPage, StoreError> {
        // SQLite's lower() changes ASCII letters only, as the needle was lowered.
        let name_match: fn(&str) -> String = |p| format!("instr(lower(name), {p}) > 0");
        let sql = sql::list_runs(after.is_some(), name.is_some().then_some(name_match));
        // Built from fixed fragments only; the needle is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit + 1);
        if let Some(c) = &after {
            query = query.bind(micros(c.created_at)).bind(c.id);
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // updated_at only ever grows, even within one clock tick, so it can serve as the
        // precondition of the next update.
        let update = concat!(
            "UPDATE runs SET name = COALESCE(?2, name), profiler_config = COALESCE(?3, profiler_config),
                             metadata = COALESCE(?4, metadata), updated_at = MAX(?5, updated_at + 1),
                             toolkit = CASE WHEN ?7 THEN ?8 ELSE toolkit END
             WHERE id = ?1 AND (?6 IS NULL OR updated_at = ?6)
             RETURNING ",
            sql::run_columns!()
        );
        let updated = sqlx::query(update)
            .bind(id)
            .bind(changes.name)
            .bind(changes.profiler_config.map(|v| v.to_string()))
            .bind(changes.metadata.map(|v| v.to_string()))
            .bind(micros(OffsetDateTime::now_utc()))
            .bind(changes.if_updated_at.map(micros))
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        tx.commit().await?;
        Ok(written)
    }

    async fn purge_idempotency_keys(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
            .bind(micros(cutoff))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn load(&self, id: Uuid) -> Result<LoadedRun, StoreError> {
        // A read transaction sees one snapshot (WAL), so the version matches the rows.
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query_scalar(sql::SELECT_VERSION)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        let requests: Vec<(i64, Option<String>)> = sqlx::query_as(sql::SELECT_REQUESTS)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let mut frame = FrameAssembler::new(requests);
        {
            let mut rows = sqlx::query(sql::SELECT_STEP_COLUMNS)
                .bind(id)
                .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let n: i64 = row.try_get(columns::REQUEST_NUMBER)?;
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
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query_scalar(sql::SELECT_VERSION)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::RunNotFound(id))?;
        let requests: Vec<(i64, Option<String>, Option<String>)> =
            sqlx::query_as(sql::SELECT_REQUEST_ITEMS)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        let mut steps = StepsAssembler::new(requests)?;
        {
            let mut rows = sqlx::query(sql::SELECT_STEP_BODIES)
                .bind(id)
                .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let n: i64 = row.try_get("request_number")?;
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
        let slot = self.streams.acquire().await?;
        let mut tx = self.pool.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar(sql::RUN_EXISTS)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::RunNotFound(id));
        }
        let numbers: Vec<i64> = sqlx::query_scalar(sql::SELECT_REQUEST_NUMBERS)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let stream = async_stream::try_stream! {
            let _slot = slot;
            let mut out = TracesAssembler::new(numbers, schema);
            {
                let mut rows = sqlx::query(sql::SELECT_STEP_BODIES)
                    .bind(id)
                    .fetch(&mut *tx);
                while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
                    let n: i64 = row.try_get("request_number").map_err(StoreError::from)?;
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
