//! SQLite, the embedded default: a single file, no server, for `agentprof serve` out of the box.
//!
//! Writes take SQLite's write lock up front (`BEGIN IMMEDIATE`), which serialises all batches: a
//! run's step numbers come from a counter on its row, and no other lock is needed. WAL mode lets
//! readers (outputs, streams) proceed while a batch is written. SQLite has no array parameters,
//! so steps go in with multi-row `INSERT ... VALUES` statements.

use super::sql::queries::{update_after_batch, update_run};
use super::sql::{Backend, SqlStore};
use super::{StoreError, content_hash};
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Pool, Sqlite, SqliteConnection, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The embedded store.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
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
        let single = max == 1;
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(u32::from(single))
            .idle_timeout((!single).then_some(Duration::from_secs(600)))
            .max_lifetime((!single).then_some(Duration::from_secs(3600)))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        backfill_content_hashes(&pool).await?;
        let store = SqlStore::new(pool);
        store.pack_legacy_steps().await?;
        store.mark_ready();
        Ok(store)
    }
}

/// Fills in the content hash of steps stored before steps were identified by content (SQLite has
/// no SHA-256 for the migration to use), a few thousand rows per transaction.
async fn backfill_content_hashes(pool: &Pool<Sqlite>) -> Result<(), StoreError> {
    loop {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT rowid, body FROM steps WHERE content_hash IS NULL LIMIT 5000")
                .fetch_all(&mut *tx)
                .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for (rowid, body) in &rows {
            sqlx::query("UPDATE steps SET content_hash = ?1 WHERE rowid = ?2")
                .bind(&content_hash(body)[..])
                .bind(rowid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(rows = rows.len(), "identified stored steps by content");
    }
}

impl Backend for Sqlite {
    const LABEL: &'static str = "sqlite";

    /// Unix microseconds.
    type Time = i64;

    fn to_time(t: OffsetDateTime) -> i64 {
        i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
    }

    fn from_time(micros: i64) -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .map_err(|e| StoreError::Corrupt(format!("stored timestamp out of range: {e}")))
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn on(conn: &mut SqliteConnection) -> impl sqlx::Executor<'_, Database = Sqlite> {
        conn
    }

    fn begin_write(
        pool: &Pool<Sqlite>,
    ) -> BoxFuture<'_, Result<Transaction<'static, Sqlite>, StoreError>> {
        async move { Ok(pool.begin_with("BEGIN IMMEDIATE").await?) }.boxed()
    }

    /// A read transaction sees one snapshot (WAL), so a run's version matches its rows.
    fn begin_read(
        conn: PoolConnection<Sqlite>,
    ) -> BoxFuture<'static, Result<Transaction<'static, Sqlite>, StoreError>> {
        async move { Ok(Transaction::begin(conn, None).await?) }.boxed()
    }

    /// The run's own counter: the write lock already serialises every batch.
    fn reserve_seq<'a>(
        tx: &'a mut Transaction<'static, Sqlite>,
        run: Uuid,
        steps: usize,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        async move {
            let steps = i64::try_from(steps).unwrap_or(i64::MAX);
            let first: Option<i64> = sqlx::query_scalar(
                "UPDATE runs SET next_seq = next_seq + $2 WHERE id = $1 RETURNING next_seq - $2",
            )
            .bind(run)
            .bind(steps)
            .fetch_optional(&mut **tx)
            .await?;
            first.ok_or(StoreError::RunNotFound(run))
        }
        .boxed()
    }

    /// SQLite's two-argument MIN/MAX are NULL when either argument is: COALESCE keeps the known
    /// one. Token sums are added as floats, which cannot overflow, and clamped back to 64 bits.
    const UPDATE_AFTER_BATCH: &'static str = update_after_batch!(
        updated_at: "MAX($4, updated_at + 1)",
        first: "COALESCE(MIN(first_event_at, $9), first_event_at, $9)",
        last: "COALESCE(MAX(last_event_at, $10), last_event_at, $10)",
        tokens: "CAST(MAX(MIN(llm_tokens + CAST($12 AS REAL), 9223372036854775807), -9223372036854775808) AS INTEGER)"
    );

    const LATER_UPDATED_AT: &'static str = "MAX($6, updated_at + 1)";

    const UPDATE_RUN: &'static str = update_run!(
        updated_at: "MAX($5, updated_at + 1)",
        unconditional: "$6 IS NULL"
    );

    /// SQLite's `lower()` changes ASCII letters only, as the needle was lowered; names are UTF-8
    /// blobs, compared as text.
    fn name_contains(placeholder: &str) -> String {
        format!("instr(lower(CAST(name AS TEXT)), {placeholder}) > 0")
    }

    /// SQLITE_CONSTRAINT_FOREIGNKEY.
    fn is_missing_parent(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("787"))
    }
}
