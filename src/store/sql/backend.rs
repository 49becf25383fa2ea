//! What the two SQL engines do differently, and nothing else.
//!
//! The store's algorithm (the ingest transaction, idempotency, retries, every read) is written
//! once, generically, in the other modules of [`super`]. An engine supplies the primitives that
//! really differ: how a write transaction takes its lock, how a batch reserves sequence numbers,
//! how rows go in by the thousand, how a timestamp is kept, and the few statements whose SQL
//! cannot be shared. Everything an engine stores or reads back is listed once, as the
//! [`Encodes`] and [`Decodes`] supertraits of [`Backend`], so generic code needs no bounds of
//! its own.

use super::queries;
use crate::store::{PlannedStep, StoreError};
use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, Pool, Row, Transaction, Type};
use time::OffsetDateTime;
use uuid::Uuid;

/// The engine can bind a `T` as a query parameter (`'t`: what sqlx's `Encode` borrows, which
/// for an optional reference must be the reference's own lifetime).
pub trait Encodes<'t, T>: Database {
    fn bind(q: Query<'_, Self, Self::Arguments>, value: T) -> Query<'_, Self, Self::Arguments>;
}

impl<'t, DB, T> Encodes<'t, T> for DB
where
    DB: Database,
    T: Encode<'t, DB> + Type<DB>,
{
    fn bind(q: Query<'_, DB, DB::Arguments>, value: T) -> Query<'_, DB, DB::Arguments> {
        q.bind(value)
    }
}

/// The engine can read a `T` out of a result column.
pub trait Decodes<T>: Database {
    fn get(row: &Self::Row, column: usize) -> Result<T, sqlx::Error>;
}

impl<DB, T> Decodes<T> for DB
where
    DB: Database,
    T: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn get(row: &DB::Row, column: usize) -> Result<T, sqlx::Error> {
        row.try_get(column)
    }
}

/// Binding through the backend, spelled like sqlx's own `bind` (which needs bounds generic code
/// cannot state once).
pub trait Bind<'q, B: Backend> {
    /// A point in time, as the backend stores it (`None`: SQL NULL).
    fn time(self, value: Option<OffsetDateTime>) -> Self;

    fn arg<'t, T>(self, value: T) -> Self
    where
        B: Encodes<'t, T>;
}

impl<'q, B: Backend> Bind<'q, B> for Query<'q, B, B::Arguments> {
    fn time(self, value: Option<OffsetDateTime>) -> Self {
        <B::Time as TimeCodec<B>>::bind(self, value.map(B::to_time))
    }

    fn arg<'t, T>(self, value: T) -> Self
    where
        B: Encodes<'t, T>,
    {
        B::bind(self, value)
    }
}

/// How a backend's [`Backend::Time`] is bound and read: a bound on the associated type, which
/// generic code sees (as it does not see bounds on other types).
pub trait TimeCodec<B: Database>: Sized {
    fn bind(q: Query<'_, B, B::Arguments>, value: Option<Self>) -> Query<'_, B, B::Arguments>;
    fn get(row: &B::Row, column: usize) -> Result<Self, sqlx::Error>;
}

impl<B, T> TimeCodec<B> for T
where
    B: Database,
    T: for<'r> Decode<'r, B> + Type<B> + 'static,
    Option<T>: for<'t> Encode<'t, B>,
    usize: ColumnIndex<B::Row>,
{
    fn bind(q: Query<'_, B, B::Arguments>, value: Option<T>) -> Query<'_, B, B::Arguments> {
        q.bind(value)
    }

    fn get(row: &B::Row, column: usize) -> Result<T, sqlx::Error> {
        row.try_get(column)
    }
}

/// A result row read through its backend: `rec.col::<T>(i)` needs only `B: Decodes<T>`, which
/// [`Backend`] provides (sqlx's own `try_get` needs bounds generic code cannot state once).
pub(crate) struct Rec<'r, B: Backend>(pub &'r B::Row);

impl<B: Backend> Rec<'_, B> {
    /// A point in time, as the backend stores it.
    pub(crate) fn time(&self, column: usize) -> Result<OffsetDateTime, StoreError> {
        B::from_time(<B::Time as TimeCodec<B>>::get(self.0, column)?)
    }

    pub(crate) fn col<T>(&self, column: usize) -> Result<T, StoreError>
    where
        B: Decodes<T>,
    {
        B::get(self.0, column).map_err(StoreError::from)
    }
}

/// A SQL engine the store runs on: PostgreSQL (production) or SQLite (the embedded default).
///
/// Statements that both engines accept are written once in [`super::queries`]; the constants
/// here are the ones they cannot share, each taking the same parameters in the same order in
/// both engines (said on each).
pub trait Backend:
    Database<Arguments: sqlx::IntoArguments<Self>>
    + for<'t> Encodes<'t, i16>
    + for<'t> Encodes<'t, i32>
    + for<'t> Encodes<'t, i64>
    + for<'t> Encodes<'t, f64>
    + for<'t> Encodes<'t, bool>
    + for<'t> Encodes<'t, Uuid>
    + for<'t> Encodes<'t, Option<i16>>
    + for<'t> Encodes<'t, Option<i64>>
    + for<'t> Encodes<'t, Option<f64>>
    + for<'t> Encodes<'t, &'t str>
    + for<'t> Encodes<'t, &'t [u8]>
    + for<'t> Encodes<'t, Option<&'t str>>
    + for<'t> Encodes<'t, Option<&'t [u8]>>
    + Decodes<i16>
    + Decodes<i32>
    + Decodes<i64>
    + Decodes<f64>
    + Decodes<bool>
    + Decodes<Uuid>
    + Decodes<String>
    + Decodes<Vec<u8>>
    + Decodes<Option<i16>>
    + Decodes<Option<i32>>
    + Decodes<Option<i64>>
    + Decodes<Option<f64>>
    + Decodes<Option<String>>
    + Decodes<Option<Vec<u8>>>
    + Sync
{
    /// For logs and readiness: "postgres", "sqlite".
    const LABEL: &'static str;

    /// How a point in time is stored (`timestamptz`, or unix microseconds in SQLite).
    type Time: TimeCodec<Self> + Send + Sync;
    fn to_time(t: OffsetDateTime) -> Self::Time;
    fn from_time(t: Self::Time) -> Result<OffsetDateTime, StoreError>;

    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// A connection as sqlx's executor (what sqlx's own generic code needs a higher-ranked
    /// bound for).
    fn on(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self>;

    /// A transaction that writes: SQLite takes its write lock at the start (`BEGIN IMMEDIATE`)
    /// so that it never has to upgrade a read lock mid-batch; PostgreSQL locks rows as it goes.
    fn begin_write(
        pool: &Pool<Self>,
    ) -> BoxFuture<'_, Result<Transaction<'static, Self>, StoreError>>;

    /// A read-only transaction on one snapshot, in which a run's rows stream in key order.
    /// Begun on a given connection: a standby's, when reads are routed there.
    fn begin_read(
        conn: PoolConnection<Self>,
    ) -> BoxFuture<'static, Result<Transaction<'static, Self>, StoreError>>;

    /// Reserves `steps` consecutive step sequence numbers in run `run` and returns the first.
    fn reserve_seq<'a>(
        tx: &'a mut Transaction<'static, Self>,
        run: Uuid,
        steps: usize,
    ) -> BoxFuture<'a, Result<i64, StoreError>>;

    /// Inserts planned steps, skipping any already stored (same request, content and
    /// occurrence); returns the sequence numbers of those it stored (what the rollups count).
    /// The statement that carries a whole batch, so an engine may have a faster way than the
    /// default, multi-row `INSERT ... VALUES`.
    fn insert_steps<'a>(
        tx: &'a mut Transaction<'static, Self>,
        run: Uuid,
        steps: &'a [PlannedStep<'a>],
    ) -> BoxFuture<'a, Result<Vec<i64>, StoreError>> {
        Box::pin(insert_steps_by_rows(tx, run, steps))
    }

    /// Locks run `$1` for a batch and reads its version and `rollups_ready`: shared with other plain batches
    /// (`LOCK_RUN[0]`), or exclusive for one that numbers new eval items or carries an
    /// Idempotency-Key (`LOCK_RUN[1]`). By default a plain read, for an engine whose write
    /// transaction already holds the database to itself.
    const LOCK_RUN: [&'static str; 2] =
        ["SELECT version, rollups_ready FROM runs WHERE id = $1"; 2];

    /// What a read of rows that are about to change ends with: `FOR UPDATE` where rows are
    /// locked one by one; nothing in an engine whose write transaction holds the database.
    const FOR_UPDATE: &'static str = "";

    /// [`Backend::FOR_UPDATE`] for a sweep: rows another sweep holds are skipped, not waited for.
    const SKIP_LOCKED: &'static str = "";

    /// After a batch: `$1` run, `$2` requests created, `$3` steps stored, `$4` now, `$5..$8` the
    /// batch's schema flags (nat_schema, non_end_steps, aiq_rewrite, nat_rewrite), `$9`/`$10`
    /// its first and last step time, `$11` its LLM calls, `$12` their tokens (added saturating
    /// at 64 bits); bumps the version and returns it.
    const UPDATE_AFTER_BATCH: &'static str;

    /// The `updated_at` a change made at `$6` (now) leaves: later than the stored one even
    /// when the clock is not.
    const LATER_UPDATED_AT: &'static str;

    /// Changes run `$1`: `$2` name, `$3` profiler config, `$4` metadata (each NULL to keep),
    /// `$5` now, `$6` the `updated_at` the change was computed from (NULL: any), `$7` whether
    /// the toolkit changes and `$8` to what, `$9` whether the retention changes and `$10` to
    /// what; returns the run's columns.
    const UPDATE_RUN: &'static str;

    /// [`super::queries::TRIM_CLIENT_KEYS`] in the engine's own words (`LIMIT ALL` or `-1`).
    const TRIM_CLIENT_KEYS: &'static str = super::queries::TRIM_CLIENT_KEYS;

    /// An expression that is true when the parameter `placeholder` occurs in a run's name,
    /// ASCII letters matching either case (the needle comes lowered).
    fn name_contains(placeholder: &str) -> String;

    /// Whether an error is a write meeting a foreign key whose row is gone (a run deleted
    /// while its batch was in flight).
    fn is_missing_parent(e: &sqlx::Error) -> bool;
}

/// Inserts planned steps with multi-row `INSERT`s; a step already stored (same request, content
/// and occurrence) is skipped at the unique index. Returns the stored steps' sequence numbers.
async fn insert_steps_by_rows<B: Backend>(
    tx: &mut Transaction<'static, B>,
    run: Uuid,
    steps: &[PlannedStep<'_>],
) -> Result<Vec<i64>, StoreError> {
    let mut stored = Vec::with_capacity(steps.len());
    for chunk in steps.chunks(queries::ROWS_PER_INSERT) {
        let sql = format!(
            "{}{} ON CONFLICT DO NOTHING RETURNING seq",
            queries::INSERT_STEPS,
            queries::values(chunk.len(), queries::STEP_PARAMS)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for planned in chunk {
            q = q
                .arg(run)
                .arg(planned.number)
                .arg(planned.seq)
                .arg(planned.step.columns.event_type.code())
                .arg(&planned.step.content_hash[..])
                .arg(planned.occurrence)
                .arg(&planned.step.packed[..]);
        }
        for row in q.fetch_all(B::on(&mut **tx)).await? {
            stored.push(Rec::<B>(&row).col::<i64>(0)?);
        }
    }
    Ok(stored)
}
