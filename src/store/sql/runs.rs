//! The run catalog's role in the SQL store: run rows (identity, settings, counters, version) and
//! Idempotency-Keys. Every function takes a connection, so that the ingest transaction and a
//! plain read use the same code.

use super::backend::{Backend, Bind, Rec};
use super::columns;
use super::queries::{self, run};
use crate::jsontext::ObjectJson;
use crate::profiler::Dialect;
use crate::store::{
    BatchPlan, IdempotencyKey, NewRun, PreparedBatch, RunChanges, RunCursor, RunRecord, RunStamp,
    StepSummary, StoreError, Written, outcome_text, replay,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// A `runs` row, read by position from [`queries::run_columns!`].
pub(super) fn from_row<B: Backend>(row: &B::Row) -> Result<RunRecord, StoreError> {
    let r = Rec::<B>(row);
    Ok(RunRecord {
        id: r.col(run::ID)?,
        name: columns::utf8(r.col(run::NAME)?)?,
        created_at: r.time(run::CREATED_AT)?,
        updated_at: r.time(run::UPDATED_AT)?,
        version: r.col(run::VERSION)?,
        request_count: i64::from(r.col::<i32>(run::REQUEST_COUNT)?),
        step_count: r.col(run::STEP_COUNT)?,
        profiler_config: columns::json_text(r.col(run::PROFILER_CONFIG)?, "profiler_config")?,
        metadata: ObjectJson::parse(&r.col::<String>(run::METADATA)?).map_err(|e| {
            StoreError::Corrupt(format!("stored metadata is not a JSON object: {e}"))
        })?,
        toolkit: columns::toolkit_column(r.col(run::TOOLKIT)?)?,
        nat_schema: r.col(run::NAT_SCHEMA)?,
        non_end_steps: r.col(run::NON_END_STEPS)?,
        aiq_rewrite: r.col(run::AIQ_REWRITE)?,
        nat_rewrite: r.col(run::NAT_REWRITE)?,
        summary: StepSummary {
            first_event_at: r.col(run::FIRST_EVENT_AT)?,
            last_event_at: r.col(run::LAST_EVENT_AT)?,
            llm_calls: r.col(run::LLM_CALLS)?,
            llm_tokens: r.col(run::LLM_TOKENS)?,
        },
        retention_seconds: r.col(run::RETENTION_SECONDS)?,
        prices: columns::prices(r.col(run::PRICES)?)?,
    })
}

/// Inserts a new run; with `if_absent`, an existing run of that id is left as it is. `true` when
/// a row was inserted.
pub(super) async fn insert<B: Backend>(
    conn: &mut B::Connection,
    id: Uuid,
    run: &NewRun,
    if_absent: bool,
) -> Result<bool, StoreError> {
    let config = run.profiler_config.to_string();
    let metadata = run.metadata.as_str();
    let prices = columns::prices_text(&run.prices);
    let done = sqlx::query(if if_absent {
        queries::INSERT_RUN_IF_ABSENT
    } else {
        queries::INSERT_RUN
    })
    .arg(id)
    .arg(run.name.as_bytes())
    .time(Some(OffsetDateTime::now_utc()))
    .arg(config.as_str())
    .arg(metadata)
    .arg(run.toolkit.map(Dialect::as_str))
    .arg(run.retention_seconds)
    .arg(prices.as_str())
    .execute(B::on(conn))
    .await?;
    Ok(B::rows_affected(&done) == 1)
}

pub(super) async fn fetch<B: Backend>(
    conn: &mut B::Connection,
    id: Uuid,
) -> Result<RunRecord, StoreError> {
    let row = sqlx::query(queries::SELECT_RUN)
        .arg(id)
        .fetch_optional(B::on(conn))
        .await?;
    from_row::<B>(&row.ok_or(StoreError::RunNotFound(id))?)
}

pub(super) async fn stamp<B: Backend>(
    conn: &mut B::Connection,
    id: Uuid,
) -> Result<RunStamp, StoreError> {
    let row = sqlx::query(queries::SELECT_STAMP)
        .arg(id)
        .fetch_optional(B::on(conn))
        .await?
        .ok_or(StoreError::RunNotFound(id))?;
    let r = Rec::<B>(&row);
    Ok(RunStamp {
        version: r.col(0)?,
        updated_at: r.time(1)?,
    })
}

/// The run's version, read in the transaction that reads its rows.
pub(super) async fn version<B: Backend>(
    conn: &mut B::Connection,
    id: Uuid,
) -> Result<i64, StoreError> {
    let row = sqlx::query(queries::SELECT_VERSION)
        .arg(id)
        .fetch_optional(B::on(conn))
        .await?
        .ok_or(StoreError::RunNotFound(id))?;
    Rec::<B>(&row).col(0)
}

/// A page of runs, newest first, `limit + 1` rows fetched (the extra one only says that another
/// page follows).
pub(super) async fn list<B: Backend>(
    conn: &mut B::Connection,
    limit: i64,
    after: Option<&RunCursor>,
    name: Option<&str>,
) -> Result<Vec<RunRecord>, StoreError> {
    let sql = queries::list_runs(after.is_some(), name.is_some().then_some(B::name_contains));
    let needle = name.map(str::to_ascii_lowercase);
    // Built from fixed fragments only; the needle is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).arg(limit + 1);
    if let Some(c) = after {
        query = query.time(Some(c.created_at)).arg(c.id);
    }
    if let Some(needle) = needle.as_deref() {
        query = query.arg(needle);
    }
    let rows = query.fetch_all(B::on(conn)).await?;
    rows.iter().map(from_row::<B>).collect()
}

/// Applies `changes` to run `id` (see [`Backend::UPDATE_RUN`]); [`StoreError::Stale`] when the
/// run moved past the read they were computed from.
pub(super) async fn update<B: Backend>(
    conn: &mut B::Connection,
    id: Uuid,
    changes: RunChanges,
) -> Result<RunRecord, StoreError> {
    let config = changes.profiler_config.map(|v| v.to_string());
    let metadata = changes.metadata.as_ref().map(ObjectJson::as_str);
    let prices = changes.prices.as_ref().map(columns::prices_text);
    let updated = sqlx::query(B::UPDATE_RUN)
        .arg(id)
        .arg(changes.name.as_deref().map(str::as_bytes))
        .arg(config.as_deref())
        .arg(metadata)
        .time(Some(OffsetDateTime::now_utc()))
        .time(changes.if_updated_at)
        .arg(changes.toolkit.is_some())
        .arg(changes.toolkit.flatten().map(Dialect::as_str))
        .arg(changes.retention_seconds.is_some())
        .arg(changes.retention_seconds.flatten())
        .arg(prices.as_deref())
        .fetch_optional(B::on(&mut *conn))
        .await?;
    match updated {
        Some(row) => from_row::<B>(&row),
        // No row matched: the run is gone (NotFound) or moved past the precondition.
        None => Err(match fetch::<B>(conn, id).await {
            Ok(_) => StoreError::Stale,
            Err(e) => e,
        }),
    }
}

pub(super) async fn delete<B: Backend>(
    conn: &mut B::Connection,
    id: Uuid,
) -> Result<(), StoreError> {
    let done = sqlx::query(queries::DELETE_RUN)
        .arg(id)
        .execute(B::on(conn))
        .await?;
    if B::rows_affected(&done) == 0 {
        return Err(StoreError::RunNotFound(id));
    }
    Ok(())
}

/// Locks the run for a batch (see [`Backend::LOCK_RUN`]); reads its version and whether its
/// rollups are kept yet (those of a run stored before them are built first).
pub(super) async fn lock<B: Backend>(
    conn: &mut B::Connection,
    id: Uuid,
    exclusive: bool,
) -> Result<(i64, bool), StoreError> {
    let row = sqlx::query(B::LOCK_RUN[usize::from(exclusive)])
        .arg(id)
        .fetch_optional(B::on(conn))
        .await?
        .ok_or(StoreError::RunNotFound(id))?;
    let r = Rec::<B>(&row);
    Ok((r.col(0)?, r.col(1)?))
}

/// Counts what a batch stored into the run (the steps of sequence numbers `stored`, which the
/// insert returned: a retry stores only those it did not store before), raises its version, and
/// notes what the stored steps now hold.
pub(super) async fn after_batch<B: Backend>(
    conn: &mut B::Connection,
    id: Uuid,
    batch: &PreparedBatch,
    plan: &BatchPlan<'_>,
    created: u64,
    stored: &[i64],
) -> Result<i64, StoreError> {
    let sum = plan.added_summary(stored);
    let row = sqlx::query(B::UPDATE_AFTER_BATCH)
        .arg(id)
        .arg(i32::try_from(created).unwrap_or(i32::MAX))
        .arg(i64::try_from(stored.len()).unwrap_or(i64::MAX))
        .time(Some(OffsetDateTime::now_utc()))
        .arg(batch.nat_schema)
        .arg(batch.non_end_steps)
        .arg(batch.aiq_rewrite)
        .arg(batch.nat_rewrite)
        .arg(sum.first_event_at)
        .arg(sum.last_event_at)
        .arg(sum.llm_calls)
        .arg(sum.llm_tokens)
        .fetch_optional(B::on(&mut *conn))
        .await?
        .ok_or(StoreError::RunNotFound(id))?;
    let version: i64 = Rec::<B>(&row).col(0)?;
    Ok(version)
}

/// Claims an Idempotency-Key for this transaction, or finds its first outcome. A concurrent
/// request with the same key waits at the primary key until the first one commits (then it
/// replays it) or rolls back (then it claims the key itself); SQLite's write lock serialises
/// them outright. A client's keys beyond `max_keys_per_client` are forgotten, oldest first.
pub(super) async fn claim_key<B: Backend>(
    conn: &mut B::Connection,
    key: &IdempotencyKey,
    run: Uuid,
    max_keys_per_client: i64,
) -> Result<Option<Written>, StoreError> {
    let claimed = sqlx::query(queries::CLAIM_IDEMPOTENCY_KEY)
        .arg(key.scope.as_str())
        .arg(key.key.as_str())
        .arg(&key.fingerprint[..])
        .arg(run)
        .time(Some(OffsetDateTime::now_utc()))
        .arg(key.client.as_str())
        .execute(B::on(&mut *conn))
        .await?;
    if B::rows_affected(&claimed) == 1 {
        sqlx::query(B::TRIM_CLIENT_KEYS)
            .arg(key.client.as_str())
            .arg(max_keys_per_client)
            .execute(B::on(conn))
            .await?;
        return Ok(None);
    }
    let row = sqlx::query(queries::SELECT_IDEMPOTENCY_KEY)
        .arg(key.scope.as_str())
        .arg(key.key.as_str())
        .fetch_one(B::on(&mut *conn))
        .await?;
    let r = Rec::<B>(&row);
    let fingerprint: Vec<u8> = r.col(0)?;
    let first_run: Uuid = r.col(1)?;
    let outcome: Option<String> = r.col(2)?;
    let record = fetch::<B>(conn, first_run).await?;
    replay(key, &fingerprint, outcome.as_deref(), record).map(Some)
}

/// Stores a keyed write's outcome with the write itself.
pub(super) async fn save_key<B: Backend>(
    conn: &mut B::Connection,
    key: &IdempotencyKey,
    written: &Written,
) -> Result<(), StoreError> {
    sqlx::query(queries::SAVE_IDEMPOTENCY_OUTCOME)
        .arg(key.scope.as_str())
        .arg(key.key.as_str())
        .arg(written.record.id)
        .arg(outcome_text(written).as_deref())
        .execute(B::on(conn))
        .await?;
    Ok(())
}

pub(super) async fn purge_keys<B: Backend>(
    conn: &mut B::Connection,
    cutoff: OffsetDateTime,
) -> Result<u64, StoreError> {
    let done = sqlx::query(queries::PURGE_IDEMPOTENCY_KEYS)
        .time(Some(cutoff))
        .execute(B::on(conn))
        .await?;
    Ok(B::rows_affected(&done))
}
