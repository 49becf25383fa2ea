//! Persistence behind one trait: runs, their requests and steps.
//!
//! A batch of steps is prepared (validated, rendered, its profiler columns derived, packed for
//! storage: see [`packed`]) before any transaction starts, so the database only ever sees
//! complete batches, and a batch is stored whole or not at all. Steps are deduplicated by
//! content within their request (see [`content_hash`]): a retried batch changes nothing, not
//! even the run's version.

mod assemble;
mod batch;
pub mod packed;
pub mod postgres;
mod sql;
pub mod sqlite;

pub(crate) use assemble::{FrameAssembler, StepsAssembler, StreamSlots, TracesAssembler};
pub(crate) use batch::{BatchPlan, PlannedRequest, PlannedStep, RequestFigures, StoredOccurrences};
pub use batch::{
    ContentHash, PreparedBatch, PreparedRequest, PreparedStep, Preparer, RequestKey,
    SEQ_BLOCK_BITS, StepSummary, content_hash,
};
pub use sql::{ReadPolicy, SqlStore};

/// The statement that reads a window's step columns (`$1` run, `$2`/`$3` the bounds): for
/// `EXPLAIN`, in the tests and in the benchmark that shows its plan.
pub const WINDOW_STEPS_SQL: &str = sql::queries::SELECT_WINDOW_STEPS;
pub(crate) use sql::columns::step_from_body;

use crate::jsontext::ObjectJson;
use crate::profiler::statistics::cost::PriceTable;
use crate::profiler::warnings::StepFacts;
use crate::profiler::{Dialect, Frame};
use crate::trace::{NumberedRequest, StepSchema};
use crate::window::Window;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// What a run looks like from outside: identity, counts and settings.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub version: i64,
    pub request_count: i64,
    pub step_count: i64,
    /// The user's profiler config as stored (toolkit field names, merged over the defaults when
    /// used).
    pub profiler_config: Value,
    /// As its text: shared by every cached version of the run, parsed only where it is read.
    pub metadata: ObjectJson,
    /// The dialect the user chose; `None` lets the steps decide.
    pub toolkit: Option<Dialect>,
    /// Whether some stored step is in nvidia-nat 1.9's schema.
    pub nat_schema: bool,
    /// Whether some stored step is neither an LLM_END nor a TOOL_END.
    pub non_end_steps: bool,
    /// Whether some stored step's JSON changes when written in aiq 1.1's schema.
    pub aiq_rewrite: bool,
    /// Whether some stored step's JSON changes when written in nat 1.9's schema.
    pub nat_rewrite: bool,
    /// The run-list figures, kept current by ingest (absent from records saved before them).
    #[serde(default)]
    pub summary: batch::StepSummary,
    /// Requests whose last step is older than this many seconds are deleted by the retention
    /// sweep; `None` keeps everything.
    #[serde(default)]
    pub retention_seconds: Option<i64>,
    /// The prices the run is costed with: the server's table when the run was created, or its
    /// own (create or `PATCH`).
    #[serde(default)]
    pub prices: PriceTable,
}

/// A streaming standby as the last check saw it, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StandbyStatus {
    /// `host:port/database`.
    pub name: String,
    /// Whether reads go to it: it answers, is in recovery, and is within the lag bound.
    pub up: bool,
    /// WAL bytes it had still to replay at the last check; absent when unknown.
    pub lag_bytes: Option<i64>,
}

/// Where a run's dialect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DialectSource {
    /// Set on the run (`toolkit` in the create body or a `PATCH`).
    Given,
    /// Read off the steps: nat-1.9 once a step in its schema is stored, aiq-1.1 otherwise.
    Detected,
}

impl RunRecord {
    /// The dialect the run's outputs follow, and where it came from.
    pub fn dialect(&self) -> (Dialect, DialectSource) {
        match self.toolkit {
            Some(d) => (d, DialectSource::Given),
            None if self.nat_schema => (Dialect::Nat19, DialectSource::Detected),
            None => (Dialect::Aiq11, DialectSource::Detected),
        }
    }

    /// The schema the combined requests file must rewrite the stored steps into, when their
    /// stored JSON is not already what the run's toolkit writes.
    pub fn rewrite_steps(&self) -> Option<StepSchema> {
        let schema = self.dialect().0.step_schema();
        let rewrite = match schema {
            StepSchema::Aiq => self.aiq_rewrite,
            StepSchema::Nat => self.nat_rewrite,
            StepSchema::AsGiven => false,
        };
        rewrite.then_some(schema)
    }

    /// What the warnings need to know about the stored steps.
    pub fn step_facts(&self) -> StepFacts {
        StepFacts {
            requests: u64::try_from(self.request_count).unwrap_or(0),
            steps: u64::try_from(self.step_count).unwrap_or(0),
            only_llm_tool_ends: !self.non_end_steps,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub name: String,
    pub profiler_config: Value,
    pub metadata: ObjectJson,
    pub toolkit: Option<Dialect>,
    pub retention_seconds: Option<i64>,
    pub prices: PriceTable,
}

/// Fields to replace; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunChanges {
    pub name: Option<String>,
    pub profiler_config: Option<Value>,
    pub metadata: Option<ObjectJson>,
    /// `Some(None)` returns the run to detection.
    pub toolkit: Option<Option<Dialect>>,
    /// `Some(None)` keeps everything again.
    pub retention_seconds: Option<Option<i64>>,
    /// Re-prices the run.
    pub prices: Option<PriceTable>,
    /// Apply only if the run's `updated_at` is still this (the read the changes were computed
    /// from), else fail with [`StoreError::Stale`]: a merge patch computed from an old read
    /// would silently undo a concurrent one.
    pub if_updated_at: Option<OffsetDateTime>,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct IngestOutcome {
    /// The run's version after the batch (unchanged when nothing was stored).
    pub version: i64,
    pub requests_received: i64,
    pub requests_created: i64,
    pub steps_received: i64,
    pub steps_stored: i64,
    /// Steps already stored (an identical step, as often as the batch holds it), skipped.
    pub steps_skipped_duplicate: i64,
}

/// An `Idempotency-Key` and the request it was first sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The operation, the run it writes to (for appends) and the client: keys are unique only
    /// within one scope.
    pub scope: String,
    /// Who sent it (the API key's digest): the keys one client may keep are bounded.
    pub client: String,
    pub key: String,
    /// SHA-256 of the request body: the same key with another body is a client error.
    pub fingerprint: [u8; 32],
}

/// What a write left: the run as it was right after, the batch's outcome when there was one, and
/// whether this is the first outcome of an Idempotency-Key replayed rather than a new write.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub record: RunRecord,
    pub outcome: Option<IngestOutcome>,
    pub replayed: bool,
}

/// Changes with every write to a run: what a read checks its cached copy against, so that a
/// write through any replica is seen by the next read through any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunStamp {
    pub version: i64,
    pub updated_at: OffsetDateTime,
}

impl RunRecord {
    pub fn stamp(&self) -> RunStamp {
        RunStamp {
            version: self.version,
            updated_at: self.updated_at,
        }
    }
}

/// A run's stored steps, loaded for analysis.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    pub version: i64,
    pub frame: Frame,
}

/// What a run, or a window of it, holds: read from the per-request figures ingest keeps, so
/// that what loading it would take is known before any step is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowSize {
    pub requests: u64,
    pub steps: u64,
    /// The bytes of the step columns a frame keeps (UUIDs, names, texts, parent ids).
    pub column_bytes: u64,
    /// The bytes of the steps' stored bodies.
    pub body_bytes: u64,
}

/// What one retention chunk deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub requests: u64,
    pub steps: u64,
}

/// A run's stored steps as steps, with each request's eval fields: what the ATIF export reads.
#[derive(Debug, Clone)]
pub struct LoadedSteps {
    pub version: i64,
    pub requests: Vec<NumberedRequest>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run {0} not found")]
    RunNotFound(Uuid),
    /// The database could not be reached, is shutting down, or is not migrated yet; worth
    /// retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The batch is well-formed but this run cannot take it; the message is for the client.
    #[error("{0}")]
    Rejected(String),
    /// The run changed between the read an update was based on and the update itself.
    #[error("the run changed concurrently")]
    Stale,
    /// Every slot for this kind of work is taken; worth retrying shortly.
    #[error("{0}")]
    Busy(String),
    /// An Idempotency-Key already used with a different request body.
    #[error("this Idempotency-Key was first used with a different request body")]
    KeyReused,
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    /// A statement that failed while migrating is classified like any other query error, so an
    /// unreachable database reads as `Unavailable` (worth retrying) rather than as a bad migration.
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Migrate(other),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Database(e)
        }
    }
}

/// Errors that mean "the database is not there right now" rather than "this query is wrong".
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite reports extended result codes; the primary code is the low byte
                // (SQLITE_BUSY = 5 with its RECOVERY/SNAPSHOT/TIMEOUT variants, SQLITE_LOCKED = 6).
                code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            } else {
                // 08: connection exception; 57P0x: shutdown / cannot connect now; 53300: too
                // many connections.
                code.starts_with("08") || code.starts_with("57P") || code == "53300"
            }
        }
        _ => false,
    }
}

/// The most Idempotency-Keys one client keeps: beyond it, its oldest are forgotten first. A key
/// holds only its request's fingerprint and first outcome, a few hundred bytes.
pub const MAX_KEYS_PER_CLIENT: i64 = 10_000;

/// The first outcome of an Idempotency-Key, for a retry that sent `key` again: the same body
/// gets it back (with the run as it is now), another body is refused.
pub(crate) fn replay(
    key: &IdempotencyKey,
    fingerprint: &[u8],
    outcome: Option<&str>,
    record: RunRecord,
) -> Result<Written, StoreError> {
    if fingerprint != key.fingerprint {
        return Err(StoreError::KeyReused);
    }
    let corrupt = |e: serde_json::Error| {
        StoreError::Corrupt(format!("a stored Idempotency-Key outcome is not JSON: {e}"))
    };
    Ok(Written {
        record,
        outcome: outcome
            .map(serde_json::from_str)
            .transpose()
            .map_err(corrupt)?,
        replayed: true,
    })
}

/// A keyed write's outcome as the key's row keeps it: the batch's counts, not the run (a replay
/// shows the run as it is then; a copy of the run per key, metadata and all, was what a client
/// could grow the database with).
pub(crate) fn outcome_text(written: &Written) -> Option<String> {
    // A struct of integers: serialising it cannot fail.
    written
        .outcome
        .map(|o| serde_json::to_string(&o).unwrap_or_default())
}

/// A cursor position in the newest-first run list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

impl RunCursor {
    /// `<created_at in unix microseconds>-<id as 32 hex digits>`: opaque to clients, but every
    /// string of that shape is a valid position, so a cursor can never be "corrupt".
    pub fn encode(&self) -> String {
        format!(
            "{}-{}",
            self.created_at.unix_timestamp_nanos() / 1000,
            self.id.simple()
        )
    }

    pub fn decode(s: &str) -> Option<RunCursor> {
        let (micros, id) = s.split_once('-')?;
        if micros.is_empty()
            || micros.len() > 19
            || !micros.bytes().all(|b| b.is_ascii_digit())
            || id.len() != 32
        {
            return None;
        }
        let micros: i128 = micros.parse().ok()?;
        Some(RunCursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).ok()?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// A page of the run list.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    pub items: Vec<RunRecord>,
    pub next: Option<RunCursor>,
}

impl RunPage {
    /// A page from `limit + 1` rows fetched newest first: the extra row, when there is one, only
    /// says that another page follows.
    pub(crate) fn from_overfetched(mut items: Vec<RunRecord>, limit: i64) -> RunPage {
        let limit = usize::try_from(limit).unwrap_or(0);
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| RunCursor {
                created_at: r.created_at,
                id: r.id,
            })
        } else {
            None
        };
        RunPage { items, next }
    }
}

/// Chunks of `all_requests_profiler_traces.json`, produced as the rows arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and health output ("postgres", "sqlite").
    fn backend(&self) -> &'static str;
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The standbys that take reads, if any, as last checked.
    fn standbys(&self) -> Vec<StandbyStatus> {
        Vec::new()
    }
    /// The dictionary new steps are packed with: the newest this store has read (see
    /// [`packed`]).
    fn step_dictionary(&self) -> &'static packed::Dictionary {
        packed::Dictionary::builtin()
    }
    /// Trains and stores the database's next step dictionary when `schedule` says one is due;
    /// returns its id, or `None` when none was due or another replica stored it first.
    async fn train_step_dictionary(
        &self,
        _schedule: packed::Schedule,
    ) -> Result<Option<u32>, StoreError> {
        Ok(None)
    }
    /// Creates a run, with an optional first batch, in one transaction; with a key, a retry
    /// gets the first outcome back instead of a second run.
    async fn create_run(
        &self,
        run: NewRun,
        batch: Option<PreparedBatch>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError>;
    /// Creates run `id` unless it exists: the runs OTLP exports create on first sight, whose
    /// ids are derived from names so that every replica picks the same one. `true` when this
    /// call created it.
    async fn ensure_run(&self, id: Uuid, run: NewRun) -> Result<bool, StoreError>;
    async fn get_run(&self, id: Uuid) -> Result<RunRecord, StoreError>;
    /// The run's version and last change, in one cheap lookup.
    async fn run_stamp(&self, id: Uuid) -> Result<RunStamp, StoreError>;
    /// A page of runs, newest first; with `name`, only those whose name contains it, ASCII
    /// letters matching either case (other characters only themselves).
    async fn list_runs(
        &self,
        limit: i64,
        after: Option<RunCursor>,
        name: Option<&str>,
    ) -> Result<RunPage, StoreError>;
    async fn update_run(&self, id: Uuid, changes: RunChanges) -> Result<RunRecord, StoreError>;
    async fn delete_run(&self, id: Uuid) -> Result<(), StoreError>;
    /// Appends a batch atomically; with a key, a retry gets the first outcome back.
    async fn append(
        &self,
        id: Uuid,
        batch: PreparedBatch,
        key: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError>;
    /// Forgets Idempotency-Keys first used before `cutoff`.
    async fn purge_idempotency_keys(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError>;
    /// Every request and step of a run (or of a window: its requests that started in it), with
    /// the version they belong to.
    async fn load(&self, id: Uuid, window: &Window) -> Result<LoadedRun, StoreError>;
    /// Every request of a run (or window) with its eval fields and its steps parsed back from
    /// their bodies.
    async fn load_steps(&self, id: Uuid, window: &Window) -> Result<LoadedSteps, StoreError>;
    /// The combined requests file of a run (or window), streamed from the database in bounded
    /// memory; each step rewritten into `schema` when one is given (see
    /// [`RunRecord::rewrite_steps`]).
    async fn stream_requests(
        &self,
        id: Uuid,
        schema: Option<StepSchema>,
        window: &Window,
    ) -> Result<ByteStream, StoreError>;
    /// What a run (or window) holds, from the per-request figures alone.
    async fn size(&self, id: Uuid, window: &Window) -> Result<WindowSize, StoreError>;
    /// The earliest start from which the newest requests of `window` cost at most `budget`,
    /// each costing `cost[0]` per step, `cost[1]` per column byte and `cost[2]`; `None` when
    /// even the newest alone costs more.
    async fn fitting_start(
        &self,
        id: Uuid,
        window: &Window,
        cost: [f64; 3],
        budget: f64,
    ) -> Result<Option<f64>, StoreError>;
    /// The run's series over minutes `[from, to)` in buckets of `step` minutes, from its
    /// rollups (see [`crate::rollup`]); `None` while they are still being built.
    async fn series(
        &self,
        id: Uuid,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Option<Vec<crate::rollup::Bucket>>, StoreError>;
    /// Runs whose rollups are yet to be built from their steps.
    async fn rollups_pending(&self) -> Result<Vec<Uuid>, StoreError>;
    /// Builds a run's rollups from its steps (in one transaction that holds batches off).
    async fn rebuild_rollups(&self, id: Uuid) -> Result<(), StoreError>;
    /// The runs with a retention, and theirs in seconds.
    async fn retained_runs(&self) -> Result<Vec<(Uuid, i64)>, StoreError>;
    /// Deletes up to `limit` of a run's requests whose last step is before `cutoff` (Unix
    /// seconds), in one transaction.
    async fn sweep(&self, id: Uuid, cutoff: f64, limit: i64) -> Result<Swept, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let c = RunCursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_000)
                .unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(RunCursor::decode(&c.encode()), Some(c));
        assert_eq!(RunCursor::decode("garbage"), None);
        assert_eq!(
            RunCursor::decode("12-0123456789abcdef0123456789ABCDEF")
                .map(|c| c.created_at.unix_timestamp_nanos()),
            Some(12_000)
        );
    }
}
