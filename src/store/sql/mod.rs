//! The SQL store, written once for both engines.
//!
//! [`SqlStore`] holds the algorithm: the ingest transaction (idempotency, locking, numbering,
//! deduplication, counters), its retries, and every read. Inside it, two roles keep to their own
//! tables: the run catalog ([`runs`]: run rows and Idempotency-Keys) and the step log
//! ([`steps`]: requests and steps). A [`Backend`] supplies what PostgreSQL and SQLite really do
//! differently ([`backend`]); [`crate::store::postgres`] and [`crate::store::sqlite`] are those
//! two backends with their own ways to open a database.
//!
//! A batch runs in one transaction. Batches of the same run need not serialise: each numbers its
//! steps from a reserved block of sequence numbers, and two batches carrying the same step meet at
//! the unique index, where the later one waits and then skips it. The one thing that needs the
//! run to itself is handing out new request numbers to eval ids (and counting identical steps on
//! from the stored ones, for a keyed batch), so such a batch locks the run exclusively, while
//! every other batch takes a lock shared with its peers. SQLite, with one writer, serialises all
//! of them anyway.

pub(crate) mod backend;
pub(crate) mod columns;
mod dictionaries;
mod legacy;
pub(crate) mod queries;
mod retention;
mod rollups;
mod runs;
mod standby;
mod steps;

pub use standby::ReadPolicy;
use standby::Standbys;

pub(crate) use backend::Backend;

use super::packed::{Dictionaries, Dictionary, Schedule};
use super::{
    ByteStream, IdempotencyKey, IngestOutcome, LoadedRun, LoadedSteps, NewRun, PreparedBatch,
    RunChanges, RunCursor, RunPage, RunRecord, RunStamp, SEQ_BLOCK_BITS, StandbyStatus, Store,
    StoreError, StoredOccurrences, StreamSlots, Swept, WindowSize, Written,
};
use crate::trace::StepSchema;
use crate::window::Window;
use sqlx::{Pool, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;
use uuid::Uuid;

/// A store on one SQL engine: a connection pool, the bound on streams holding connections, and
/// whether the schema is migrated yet.
pub struct SqlStore<B: Backend> {
    pool: Pool<B>,
    streams: StreamSlots,
    /// Set once the migrations have run; until then data operations answer "unavailable".
    ready: Arc<AtomicBool>,
    /// Idempotency-Keys one client keeps (its oldest forgotten first).
    max_keys_per_client: i64,
    /// Streaming standbys that take the reads, when configured (PostgreSQL only).
    standbys: Option<Arc<Standbys<B>>>,
    /// The step dictionaries read from the database (see `store::packed`).
    dictionaries: Arc<Dictionaries>,
}

impl<B: Backend> Clone for SqlStore<B> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            streams: self.streams.clone(),
            ready: self.ready.clone(),
            max_keys_per_client: self.max_keys_per_client,
            standbys: self.standbys.clone(),
            dictionaries: self.dictionaries.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for SqlStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &B::LABEL)
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What one write transaction does besides its idempotency bookkeeping.
enum Write<'a> {
    Create {
        run: &'a NewRun,
        batch: Option<&'a PreparedBatch>,
    },
    Append(&'a PreparedBatch),
}

/// Attempts at a write transaction that loses a deadlock or serialization race (concurrent
/// batches sharing steps can wait on each other at the unique index; PostgreSQL aborts one).
const WRITE_ATTEMPTS: u32 = 6;

impl<B: Backend> SqlStore<B> {
    /// Wraps a pool whose schema is not known to be migrated yet (see [`SqlStore::mark_ready`]).
    pub(crate) fn new(pool: Pool<B>) -> SqlStore<B> {
        SqlStore {
            streams: StreamSlots::for_pool(pool.options().get_max_connections()),
            pool,
            ready: Arc::new(AtomicBool::new(false)),
            max_keys_per_client: super::MAX_KEYS_PER_CLIENT,
            standbys: None,
            dictionaries: Arc::default(),
        }
    }

    /// Keeps at most `n` Idempotency-Keys per client (default [`super::MAX_KEYS_PER_CLIENT`]).
    pub fn with_max_keys_per_client(mut self, n: i64) -> SqlStore<B> {
        self.max_keys_per_client = n.max(1);
        self
    }

    pub fn pool(&self) -> &Pool<B> {
        &self.pool
    }

    /// Packs the steps stored before compact steps (see [`legacy`]); part of migrating, so
    /// called before [`SqlStore::mark_ready`].
    pub(crate) async fn pack_legacy_steps(&self) -> Result<u64, StoreError> {
        legacy::pack_all(&self.pool).await
    }

    /// The schema is migrated: data operations may run.
    pub(crate) fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn ready(&self) -> Result<(), StoreError> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "migrations have not run yet".to_owned(),
            ))
        }
    }

    async fn connection(&self) -> Result<sqlx::pool::PoolConnection<B>, StoreError> {
        self.ready()?;
        Ok(self.pool.acquire().await?)
    }

    /// A connection for a read that must see every write acknowledged before it: a caught-up
    /// standby's when there are standbys, else the primary's.
    async fn read_connection(&self) -> Result<sqlx::pool::PoolConnection<B>, StoreError> {
        self.ready()?;
        match &self.standbys {
            Some(standbys) => standbys.connection(&self.pool).await,
            None => Ok(self.pool.acquire().await?),
        }
    }

    /// A read-only transaction on one snapshot, where [`Self::read_connection`] puts it.
    async fn read_tx(&self) -> Result<Transaction<'static, B>, StoreError> {
        B::begin_read(self.read_connection().await?).await
    }

    /// Sends reads of outputs, lists and series to these standbys of the primary (each a pool
    /// with its display name), and starts the task that watches their lag.
    pub fn with_standbys(
        mut self,
        nodes: Vec<(String, Pool<B>)>,
        policy: ReadPolicy,
    ) -> SqlStore<B> {
        if nodes.is_empty() {
            return self;
        }
        let standbys = Arc::new(Standbys::new(nodes, policy));
        standbys.spawn_monitor(self.pool.clone());
        self.standbys = Some(standbys);
        self
    }

    /// Runs a write in its own transaction, again when it loses a race, and with a key claims
    /// it first (a retry of a keyed request gets the first outcome back and writes nothing).
    async fn write(
        &self,
        id: Uuid,
        key: Option<&IdempotencyKey>,
        write: Write<'_>,
    ) -> Result<Written, StoreError> {
        self.ready()?;
        let mut tries = 0;
        loop {
            let mut tx = B::begin_write(&self.pool).await?;
            let result = attempt(&mut tx, id, key, &write, self.max_keys_per_client).await;
            let result = match result {
                Ok(written) => tx.commit().await.map(|_| written).map_err(StoreError::from),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if is_retryable(&e) && tries + 1 < WRITE_ATTEMPTS => {
                    tries += 1;
                    tracing::info!(error = %e, tries, "retrying a batch transaction");
                }
                // A run deleted while its batch was in flight: the foreign key says so.
                Err(StoreError::Database(e)) if B::is_missing_parent(&e) => {
                    return Err(StoreError::RunNotFound(id));
                }
                other => return other,
            }
        }
    }
}

/// One attempt at a write, inside `tx`.
async fn attempt<B: Backend>(
    tx: &mut Transaction<'static, B>,
    id: Uuid,
    key: Option<&IdempotencyKey>,
    write: &Write<'_>,
    max_keys_per_client: i64,
) -> Result<Written, StoreError> {
    if let Some(key) = key
        && let Some(first) = runs::claim_key::<B>(&mut **tx, key, id, max_keys_per_client).await?
    {
        return Ok(first);
    }
    let outcome = match write {
        Write::Create { run, batch } => {
            runs::insert::<B>(&mut **tx, id, run, false).await?;
            match batch {
                Some(b) => Some(append_in(tx, id, b, false).await?),
                None => None,
            }
        }
        Write::Append(batch) => Some(append_in(tx, id, batch, key.is_some()).await?),
    };
    let written = Written {
        record: runs::fetch::<B>(&mut **tx, id).await?,
        outcome,
        replayed: false,
    };
    if let Some(key) = key {
        runs::save_key::<B>(&mut **tx, key, &written).await?;
    }
    Ok(written)
}

/// Appends a prepared batch inside `tx`.
///
/// A batch that may number new eval requests, or that carries an Idempotency-Key (its identical
/// steps count on from the stored ones), locks the run exclusively from the start; every other
/// batch takes the shared lock, which waits for such a batch but not for its peers.
async fn append_in<B: Backend>(
    tx: &mut Transaction<'static, B>,
    id: Uuid,
    batch: &PreparedBatch,
    keyed: bool,
) -> Result<IngestOutcome, StoreError> {
    let numbers_eval_items = batch.has_external_ids();
    let (version, rollups_ready) =
        runs::lock::<B>(&mut **tx, id, numbers_eval_items || keyed).await?;
    let (by_external, max_number) = if numbers_eval_items {
        steps::known_requests::<B>(&mut **tx, id, batch).await?
    } else {
        (HashMap::new(), -1)
    };
    let stored_before = if keyed {
        steps::stored_occurrences::<B>(&mut **tx, id, batch).await?
    } else {
        StoredOccurrences::new()
    };
    if batch.step_count() >= 1 << SEQ_BLOCK_BITS {
        return Err(StoreError::Rejected(format!(
            "a batch holds at most {} steps",
            (1u64 << SEQ_BLOCK_BITS) - 1
        )));
    }
    let first_seq = B::reserve_seq(tx, id, batch.step_count()).await?;
    let plan = batch.plan(&by_external, max_number, first_seq, &stored_before)?;
    let created = steps::insert_requests::<B>(&mut **tx, id, &plan.requests).await?;
    let stored_seqs = B::insert_steps(tx, id, &plan.steps).await?;
    let stored = stored_seqs.len() as u64;
    if stored > 0 {
        let touched = plan.touched_requests();
        let before = if rollups_ready {
            steps::request_starts::<B>(&mut **tx, id, &touched).await?
        } else {
            HashMap::new()
        };
        let figures = plan.request_figures(&stored_seqs);
        steps::add_request_figures::<B>(&mut **tx, id, &figures).await?;
        if rollups_ready {
            // Each request's start now: the earlier of its stored one and its stored steps'
            // (a request whose steps were all stored already keeps its start).
            let added: HashMap<i32, f64> =
                figures.iter().map(|f| (f.number, f.started_at)).collect();
            let mut delta = plan.rollup_delta(&stored_seqs);
            for n in &touched {
                let before = before.get(n).copied().flatten();
                let after = match (before, added.get(n)) {
                    (Some(b), Some(&a)) => Some(b.min(a)),
                    (b, a) => b.or(a.copied()),
                };
                delta.request_moved(before, after);
            }
            rollups::add::<B>(&mut **tx, id, &delta).await?;
        }
    }
    let version = if stored > 0 || created > 0 {
        runs::after_batch::<B>(&mut **tx, id, batch, &plan, created, &stored_seqs).await?
    } else {
        version
    };
    let stored = i64::try_from(stored).unwrap_or(i64::MAX);
    Ok(IngestOutcome {
        version,
        requests_received: plan.requests_received,
        requests_created: i64::try_from(created).unwrap_or(i64::MAX),
        steps_received: plan.steps_received,
        steps_stored: stored,
        steps_skipped_duplicate: plan.steps_received - stored,
    })
}

/// A transaction lost a deadlock or serialization race and may simply be run again.
fn is_retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(db)) if db.code().is_some_and(|c| c == "40P01" || c == "40001"))
}

#[async_trait::async_trait]
impl<B: Backend> Store for SqlStore<B> {
    fn backend(&self) -> &'static str {
        B::LABEL
    }

    fn step_dictionary(&self) -> &'static Dictionary {
        self.dictionaries.newest()
    }

    async fn train_step_dictionary(&self, schedule: Schedule) -> Result<Option<u32>, StoreError> {
        self.ready()?;
        dictionaries::train_if_due(&self.pool, &self.dictionaries, schedule).await
    }

    fn standbys(&self) -> Vec<StandbyStatus> {
        self.standbys.as_ref().map_or_else(Vec::new, |s| s.status())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        sqlx::query("SELECT 1").execute(B::on(&mut *conn)).await?;
        Ok(())
    }

    async fn create_run(
        &self,
        run: NewRun,
        batch: Option<PreparedBatch>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError> {
        let write = Write::Create {
            run: &run,
            batch: batch.as_ref(),
        };
        // Time-ordered ids: a new run's keys come after every older run's, so its steps are
        // appended at the right edge of the steps' primary key, whose pages then split full
        // instead of in half (docs/storage.md, "The index").
        self.write(Uuid::now_v7(), key, write).await
    }

    async fn ensure_run(&self, id: Uuid, run: NewRun) -> Result<bool, StoreError> {
        let mut conn = self.connection().await?;
        runs::insert::<B>(&mut conn, id, &run, true).await
    }

    async fn get_run(&self, id: Uuid) -> Result<RunRecord, StoreError> {
        let mut conn = self.connection().await?;
        runs::fetch::<B>(&mut conn, id).await
    }

    async fn run_stamp(&self, id: Uuid) -> Result<RunStamp, StoreError> {
        let mut conn = self.connection().await?;
        runs::stamp::<B>(&mut conn, id).await
    }

    async fn list_runs(
        &self,
        limit: i64,
        after: Option<RunCursor>,
        name: Option<&str>,
    ) -> Result<RunPage, StoreError> {
        let mut conn = self.read_connection().await?;
        let items = runs::list::<B>(&mut conn, limit, after.as_ref(), name).await?;
        Ok(RunPage::from_overfetched(items, limit))
    }

    async fn update_run(&self, id: Uuid, changes: RunChanges) -> Result<RunRecord, StoreError> {
        self.ready()?;
        let mut tx = B::begin_write(&self.pool).await?;
        let record = runs::update::<B>(&mut tx, id, changes).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_run(&self, id: Uuid) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        runs::delete::<B>(&mut conn, id).await
    }

    async fn append(
        &self,
        id: Uuid,
        batch: PreparedBatch,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError> {
        self.write(id, key, Write::Append(&batch)).await
    }

    async fn purge_idempotency_keys(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        runs::purge_keys::<B>(&mut conn, cutoff).await
    }

    async fn load(&self, id: Uuid, window: &Window) -> Result<LoadedRun, StoreError> {
        let mut tx = self.read_tx().await?;
        let loaded = steps::load(&mut tx, id, window, &self.dictionaries).await?;
        tx.commit().await?;
        Ok(loaded)
    }

    async fn load_steps(&self, id: Uuid, window: &Window) -> Result<LoadedSteps, StoreError> {
        let mut tx = self.read_tx().await?;
        let loaded = steps::load_steps(&mut tx, id, window, &self.dictionaries).await?;
        tx.commit().await?;
        Ok(loaded)
    }

    async fn stream_requests(
        &self,
        id: Uuid,
        schema: Option<StepSchema>,
        window: &Window,
    ) -> Result<ByteStream, StoreError> {
        self.ready()?;
        let slot = self.streams.acquire().await?;
        let tx = self.read_tx().await?;
        steps::stream_requests(tx, slot, id, schema, *window, self.dictionaries.clone()).await
    }

    async fn size(&self, id: Uuid, window: &Window) -> Result<WindowSize, StoreError> {
        let mut conn = self.read_connection().await?;
        steps::size::<B>(&mut conn, id, window).await
    }

    async fn fitting_start(
        &self,
        id: Uuid,
        window: &Window,
        cost: [f64; 3],
        budget: f64,
    ) -> Result<Option<f64>, StoreError> {
        let mut conn = self.read_connection().await?;
        steps::fitting_start::<B>(&mut conn, id, window, cost, budget).await
    }

    async fn series(
        &self,
        id: Uuid,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Option<Vec<crate::rollup::Bucket>>, StoreError> {
        let mut conn = self.read_connection().await?;
        rollups::series::<B>(&mut conn, id, from, to, step).await
    }

    async fn rollups_pending(&self) -> Result<Vec<Uuid>, StoreError> {
        let mut conn = self.connection().await?;
        rollups::pending::<B>(&mut conn).await
    }

    async fn rebuild_rollups(&self, id: Uuid) -> Result<(), StoreError> {
        self.ready()?;
        let mut tx = B::begin_write(&self.pool).await?;
        rollups::rebuild::<B>(&mut tx, id, &self.dictionaries).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retained_runs(&self) -> Result<Vec<(Uuid, i64)>, StoreError> {
        let mut conn = self.connection().await?;
        retention::retained_runs::<B>(&mut conn).await
    }

    async fn sweep(&self, id: Uuid, cutoff: f64, limit: i64) -> Result<Swept, StoreError> {
        self.ready()?;
        let mut tx = B::begin_write(&self.pool).await?;
        let swept =
            retention::sweep_chunk::<B>(&mut tx, id, cutoff, limit, &self.dictionaries).await?;
        tx.commit().await?;
        Ok(swept)
    }
}
