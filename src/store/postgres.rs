//! PostgreSQL, the production backend: what it does its own way, and how a store opens it.
//!
//! Batches of one run proceed side by side: each reserves a block of the `step_batches`
//! sequence for its steps, and locks the run `FOR KEY SHARE` (compatible with its peers) unless
//! it must number new eval items, which takes `FOR UPDATE`. Steps go in with one
//! `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO NOTHING`, one array per column: a whole
//! batch in one statement, one round trip and one plan.

use super::sql::queries::{update_after_batch, update_run};
use super::sql::{Backend, SqlStore};
use super::{PlannedStep, SEQ_BLOCK_BITS, StoreError};
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{PgConnection, PgPool, Pool, Postgres, Row, Transaction};
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
pub type PgStore = SqlStore<Postgres>;

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

impl SqlStore<Postgres> {
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
        SqlStore::new(pool)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(self.pool()).await?;
        self.pack_legacy_steps().await?;
        self.mark_ready();
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
}

/// Column arrays for one `UNNEST` insert, borrowing from the planned steps.
#[derive(Default)]
struct StepArrays<'a> {
    request_number: Vec<i32>,
    seq: Vec<i64>,
    event_type: Vec<i16>,
    content_hash: Vec<&'a [u8]>,
    occurrence: Vec<i32>,
    packed: Vec<&'a [u8]>,
}

impl<'a> StepArrays<'a> {
    fn push(&mut self, planned: &PlannedStep<'a>) {
        let step = planned.step;
        self.request_number.push(planned.number);
        self.seq.push(planned.seq);
        self.event_type.push(step.columns.event_type.code());
        self.content_hash.push(&step.content_hash);
        self.occurrence.push(planned.occurrence);
        self.packed.push(&step.packed);
    }
}

const INSERT_STEPS_UNNEST: &str = "
    INSERT INTO steps (run_id, request_number, seq, event_type, content_hash, occurrence, packed)
    SELECT $1, * FROM UNNEST($2::int4[], $3::int8[], $4::int2[], $5::bytea[], $6::int4[], $7::bytea[])
    ON CONFLICT DO NOTHING RETURNING seq";

async fn insert_steps(
    tx: &mut Transaction<'static, Postgres>,
    run: Uuid,
    steps: &[PlannedStep<'_>],
) -> Result<Vec<i64>, StoreError> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let mut a = StepArrays::default();
    for step in steps {
        a.push(step);
    }
    let done = sqlx::query(INSERT_STEPS_UNNEST)
        .bind(run)
        .bind(&a.request_number)
        .bind(&a.seq)
        .bind(&a.event_type)
        .bind(&a.content_hash)
        .bind(&a.occurrence)
        .bind(&a.packed)
        .fetch_all(&mut **tx)
        .await?;
    done.iter()
        .map(|row| row.try_get::<i64, _>(0).map_err(StoreError::from))
        .collect()
}

impl Backend for Postgres {
    const LABEL: &'static str = "postgres";

    type Time = OffsetDateTime;

    fn to_time(t: OffsetDateTime) -> OffsetDateTime {
        t
    }

    fn from_time(t: OffsetDateTime) -> Result<OffsetDateTime, StoreError> {
        Ok(t)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn on(conn: &mut PgConnection) -> impl sqlx::Executor<'_, Database = Postgres> {
        conn
    }

    fn begin_write(
        pool: &Pool<Postgres>,
    ) -> BoxFuture<'_, Result<Transaction<'static, Postgres>, StoreError>> {
        async move { Ok(pool.begin().await?) }.boxed()
    }

    /// Sorts are planned out of a run read: its steps then come in the primary key's order
    /// from the first row on, decoded while the rest arrive, instead of after a sort of the
    /// whole run. The planner prefers the sort when one run holds most of the table, which is
    /// when it costs most (BENCHMARKS.md#fourth-session-2026-11-30, "key order").
    fn begin_read(
        conn: PoolConnection<Postgres>,
    ) -> BoxFuture<'static, Result<Transaction<'static, Postgres>, StoreError>> {
        async move {
            let mut tx = Transaction::begin(conn, None).await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            sqlx::query("SET LOCAL enable_sort = off")
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        }
        .boxed()
    }

    /// A block of the shared sequence: concurrent batches of one run number their steps without
    /// waiting for each other.
    fn reserve_seq<'a>(
        tx: &'a mut Transaction<'static, Postgres>,
        _run: Uuid,
        _steps: usize,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        async move {
            let block: i64 = sqlx::query_scalar("SELECT nextval('step_batches')")
                .fetch_one(&mut **tx)
                .await?;
            Ok(block << SEQ_BLOCK_BITS)
        }
        .boxed()
    }

    /// One `UNNEST` statement for the whole batch.
    fn insert_steps<'a>(
        tx: &'a mut Transaction<'static, Postgres>,
        run: Uuid,
        steps: &'a [PlannedStep<'a>],
    ) -> BoxFuture<'a, Result<Vec<i64>, StoreError>> {
        insert_steps(tx, run, steps).boxed()
    }

    const LOCK_RUN: [&'static str; 2] = [
        "SELECT version, rollups_ready FROM runs WHERE id = $1 FOR KEY SHARE",
        "SELECT version, rollups_ready FROM runs WHERE id = $1 FOR UPDATE",
    ];

    const FOR_UPDATE: &'static str = " FOR UPDATE";

    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    /// `LEAST` and `GREATEST` skip NULLs; the token sum goes through `numeric`, which cannot
    /// overflow, and is clamped to 64 bits.
    const UPDATE_AFTER_BATCH: &'static str = update_after_batch!(
        updated_at: "GREATEST($4, updated_at + interval '1 microsecond')",
        first: "LEAST(first_event_at, $9)",
        last: "GREATEST(last_event_at, $10)",
        tokens: "LEAST(GREATEST(llm_tokens::numeric + $12, -9223372036854775808), 9223372036854775807)::bigint"
    );

    const LATER_UPDATED_AT: &'static str = "GREATEST($6, updated_at + interval '1 microsecond')";

    /// `updated_at` only ever grows, even within one clock tick, so that it can serve as the
    /// precondition of the next update.
    const UPDATE_RUN: &'static str = update_run!(
        updated_at: "GREATEST($5, updated_at + interval '1 microsecond')",
        unconditional: "$6::timestamptz IS NULL"
    );

    /// PostgreSQL has no `LIMIT -1`: an OFFSET alone skips the newest.
    const TRIM_CLIENT_KEYS: &'static str = "DELETE FROM idempotency_keys WHERE client = $1 AND (scope, key) IN \
         (SELECT scope, key FROM idempotency_keys WHERE client = $1 ORDER BY created_at DESC, scope, key OFFSET $2)";

    /// Names are UTF-8 bytea (they may hold NUL). Lowering their escaped form lowers their ASCII
    /// letters only (every other byte is an octal escape), and decoding it gives the bytes back:
    /// the name with its ASCII letters lowered, searched bytewise for the needle.
    fn name_contains(placeholder: &str) -> String {
        format!(
            "position(convert_to(CAST({placeholder} AS text), 'UTF8') IN decode(lower(encode(name, 'escape')), 'escape')) > 0"
        )
    }

    fn is_missing_parent(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23503"))
    }
}
