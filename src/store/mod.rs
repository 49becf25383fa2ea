//! Persistence behind one trait: runs, their requests and steps.
//!
//! A batch of steps is prepared (validated, rendered, its profiler columns derived) before any
//! transaction starts, so the database only ever sees complete batches, and a batch is stored
//! whole or not at all. Steps are deduplicated by (request, UUID, event type, timestamp): a retried
//! batch changes nothing, not even the run's version.

pub mod postgres;
pub mod sqlite;

use crate::profiler::{Frame, StepColumns, toolkit::traces::render_step};
use crate::trace::{Batch, EventType, Framework, InputForm};
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// What a run looks like from outside: identity, counts and settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub name: String,
    pub profiler_config: Value,
    pub metadata: Value,
}

/// Fields to replace; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunChanges {
    pub name: Option<String>,
    pub profiler_config: Option<Value>,
    pub metadata: Option<Value>,
    /// Apply only if the run's `updated_at` is still this (the read the changes were computed
    /// from), else fail with [`StoreError::Stale`]: a merge patch computed from an old read
    /// would silently undo a concurrent one.
    pub if_updated_at: Option<OffsetDateTime>,
}

/// How an incoming request is matched to a stored one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestKey {
    /// The profiler form's `request_number`, or the position of a bare step list.
    Number(i64),
    /// The eval form's `id`: an existing request with this id is appended to, otherwise a new
    /// request gets the next free number.
    External(String),
}

/// A step ready to insert: its profiler columns and its rendered JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedStep {
    pub columns: StepColumns,
    /// The step as the combined requests file shows it (see `profiler::toolkit::traces::render_step`).
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRequest {
    pub key: RequestKey,
    pub steps: Vec<PreparedStep>,
}

/// A validated batch, ready for one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBatch {
    pub form: InputForm,
    pub requests: Vec<PreparedRequest>,
}

impl PreparedBatch {
    /// Derives everything the store needs from a parsed document. CPU-bound: run it off the
    /// async executor for large batches.
    pub fn prepare(batch: Batch) -> PreparedBatch {
        let form = batch.form;
        let requests = batch
            .requests
            .into_iter()
            .map(|r| {
                let key = match (form, r.request_number, r.external_id) {
                    (_, Some(n), _) => RequestKey::Number(n),
                    (InputForm::Eval, None, Some(id)) => RequestKey::External(id),
                    _ => RequestKey::Number(r.position as i64),
                };
                let steps = r
                    .steps
                    .iter()
                    .map(|s| PreparedStep {
                        columns: StepColumns::from_step(s),
                        body: String::from_utf8(render_step(s))
                            .expect("render_step writes JSON text, which is UTF-8"),
                    })
                    .collect();
                PreparedRequest { key, steps }
            })
            .collect();
        PreparedBatch { form, requests }
    }

    pub fn step_count(&self) -> usize {
        self.requests.iter().map(|r| r.steps.len()).sum()
    }
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    /// The run's version after the batch (unchanged when nothing was stored).
    pub version: i64,
    pub requests_received: i64,
    pub requests_created: i64,
    pub steps_received: i64,
    pub steps_stored: i64,
    /// Steps already stored (same request, UUID, event type and timestamp), skipped.
    pub steps_skipped_duplicate: i64,
}

/// A run's stored steps, loaded for analysis.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    pub version: i64,
    pub frame: Frame,
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

/// A transaction lost a deadlock or serialization race and may simply be run again.
pub(crate) fn is_retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(db)) if db.code().is_some_and(|c| c == "40P01" || c == "40001"))
}

/// The `runs` columns a [`RunRecord`] is read from, in both backends.
pub(crate) const RUN_COLUMNS: &str = "id, name, created_at, updated_at, version, request_count, step_count, profiler_config, metadata";

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
    /// Creates a run, with an optional first batch, in one transaction.
    async fn create_run(
        &self,
        run: NewRun,
        batch: Option<PreparedBatch>,
    ) -> Result<(RunRecord, Option<IngestOutcome>), StoreError>;
    async fn get_run(&self, id: Uuid) -> Result<RunRecord, StoreError>;
    async fn list_runs(&self, limit: i64, after: Option<RunCursor>) -> Result<RunPage, StoreError>;
    async fn update_run(&self, id: Uuid, changes: RunChanges) -> Result<RunRecord, StoreError>;
    async fn delete_run(&self, id: Uuid) -> Result<(), StoreError>;
    /// Appends a batch atomically.
    async fn append(&self, id: Uuid, batch: PreparedBatch) -> Result<IngestOutcome, StoreError>;
    /// Every request and step of a run, with the version they belong to.
    async fn load(&self, id: Uuid) -> Result<LoadedRun, StoreError>;
    /// The combined requests file, streamed from the database in bounded memory.
    async fn stream_requests(&self, id: Uuid) -> Result<ByteStream, StoreError>;
}

/// Where a batch's requests and steps land in a run, decided before any row is written.
pub(crate) struct BatchPlan<'a> {
    /// Each distinct request of the batch, sorted by number (so concurrent batches take row
    /// locks in the same order): its number, and its eval id when the request is new.
    pub requests: Vec<(i32, Option<&'a str>)>,
    /// Every step with its request number and sequence number, in batch order.
    pub steps: Vec<(i32, i64, &'a PreparedStep)>,
    pub requests_received: i64,
    pub steps_received: i64,
}

impl PreparedBatch {
    /// The eval ids the batch refers to, to look up in the run.
    pub(crate) fn external_ids(&self) -> Vec<&str> {
        self.requests
            .iter()
            .filter_map(|r| match &r.key {
                RequestKey::External(e) => Some(e.as_str()),
                RequestKey::Number(_) => None,
            })
            .collect()
    }

    /// Numbers the batch's requests: explicit numbers as given, known eval ids as stored, new
    /// eval ids after the highest number in the run or the batch; step sequence numbers count
    /// up from `first_seq`.
    pub(crate) fn plan<'a>(
        &'a self,
        known_external: &std::collections::HashMap<String, i64>,
        max_number: i64,
        first_seq: i64,
    ) -> Result<BatchPlan<'a>, StoreError> {
        let explicit_max = self
            .requests
            .iter()
            .filter_map(|r| match r.key {
                RequestKey::Number(n) => Some(n),
                RequestKey::External(_) => None,
            })
            .max()
            .unwrap_or(-1);
        let mut next_number = max_number.max(explicit_max) + 1;
        let mut assigned: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        let mut requests: std::collections::BTreeMap<i32, Option<&str>> =
            std::collections::BTreeMap::new();
        let mut steps = Vec::with_capacity(self.step_count());
        let mut seq = first_seq;
        for r in &self.requests {
            let (number, external) = match &r.key {
                RequestKey::Number(n) => (*n, None),
                RequestKey::External(e) => match known_external
                    .get(e)
                    .copied()
                    .or_else(|| assigned.get(e.as_str()).copied())
                {
                    Some(n) => (n, None),
                    None => {
                        let n = next_number;
                        next_number += 1;
                        assigned.insert(e, n);
                        (n, Some(e.as_str()))
                    }
                },
            };
            let number = i32::try_from(number).map_err(|_| {
                StoreError::Rejected(format!(
                    "no request number is left for a new eval item: the run already holds \
                     request number {}",
                    i32::MAX
                ))
            })?;
            requests.entry(number).or_insert(external);
            for step in &r.steps {
                steps.push((number, seq, step));
                seq += 1;
            }
        }
        Ok(BatchPlan {
            requests: requests.into_iter().collect(),
            steps,
            requests_received: self.requests.len() as i64,
            steps_received: self.step_count() as i64,
        })
    }

    /// Whether the batch names eval ids, which may need new request numbers (and so the run's
    /// exclusive lock, to hand them out once).
    pub(crate) fn has_external_ids(&self) -> bool {
        self.requests
            .iter()
            .any(|r| matches!(r.key, RequestKey::External(_)))
    }
}

/// Bounds the combined-requests streams that may hold a pooled connection at once. A stream
/// keeps its connection (and snapshot) until the client has read the last byte, so without a
/// bound a few slow readers could take every connection and starve all other requests.
#[derive(Debug, Clone)]
pub(crate) struct StreamSlots(std::sync::Arc<tokio::sync::Semaphore>);

/// How long a new stream waits for a slot before the client is told to retry.
const STREAM_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl StreamSlots {
    /// Half the pool, at least one.
    pub(crate) fn for_pool(max_connections: u32) -> StreamSlots {
        let slots = (max_connections as usize / 2).max(1);
        StreamSlots(std::sync::Arc::new(tokio::sync::Semaphore::new(slots)))
    }

    /// A slot, held for as long as the returned permit lives (move it into the stream).
    pub(crate) async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        let busy = || {
            StoreError::Busy(
                "every slot for streaming combined requests is in use; retry shortly".to_owned(),
            )
        };
        tokio::time::timeout(STREAM_SLOT_WAIT, self.0.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())
    }
}

/// Steps per batch that a sequence-number block can hold (see `postgres::append_in`).
pub(crate) const SEQ_BLOCK_BITS: u32 = 24;

/// Walks a run's request numbers alongside its steps (both ascending), so that requests without
/// steps still appear, in order, in frames and in the combined requests file.
struct RequestWalker {
    numbers: std::iter::Peekable<std::vec::IntoIter<i64>>,
    current: Option<i64>,
}

impl RequestWalker {
    pub(crate) fn new(numbers: Vec<i64>) -> RequestWalker {
        RequestWalker {
            numbers: numbers.into_iter().peekable(),
            current: None,
        }
    }

    /// The requests to open before a step of request `n`: the empty ones that sort before it,
    /// then `n` itself; nothing when `n` is already open.
    pub(crate) fn open(&mut self, n: i64) -> Vec<i64> {
        if self.current == Some(n) {
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(&m) = self.numbers.peek() {
            if m > n {
                break;
            }
            self.numbers.next();
            if m != n {
                out.push(m);
            }
        }
        out.push(n);
        self.current = Some(n);
        out
    }

    /// Requests after the last step (all without steps).
    pub(crate) fn remaining(self) -> impl Iterator<Item = i64> {
        self.numbers
    }
}

/// Builds a run's frame from its requests and its steps, both read in `(request_number, seq)`
/// order, so both backends load a run the same way.
pub(crate) struct FrameAssembler {
    walker: RequestWalker,
    external: std::collections::HashMap<i64, String>,
    builder: crate::profiler::FrameBuilder,
}

impl FrameAssembler {
    /// `requests`: every request number of the run, ascending, with its eval id if any.
    pub(crate) fn new(requests: Vec<(i64, Option<String>)>) -> FrameAssembler {
        let numbers = requests.iter().map(|(n, _)| *n).collect();
        let external = requests
            .into_iter()
            .filter_map(|(n, e)| e.map(|e| (n, e)))
            .collect();
        FrameAssembler {
            walker: RequestWalker::new(numbers),
            external,
            builder: crate::profiler::FrameBuilder::default(),
        }
    }

    pub(crate) fn step(&mut self, request_number: i64, step: StepColumns) {
        for m in self.walker.open(request_number) {
            self.builder.begin_request(m, self.external.remove(&m));
        }
        self.builder.push_row(step.into_row(request_number));
    }

    pub(crate) fn finish(mut self) -> Frame {
        for m in self.walker.remaining() {
            self.builder.begin_request(m, self.external.remove(&m));
        }
        self.builder.finish()
    }
}

/// Bytes per streamed chunk of the combined requests file.
const CHUNK: usize = 64 * 1024;

/// Writes the combined requests file from stored step bodies in `(request_number, seq)` order,
/// handing out a chunk whenever [`CHUNK`] bytes are buffered so memory stays flat.
pub(crate) struct TracesAssembler {
    walker: RequestWalker,
    out: crate::profiler::toolkit::traces::TracesWriter<Vec<u8>>,
}

impl TracesAssembler {
    /// `numbers`: every request number of the run, ascending.
    pub(crate) fn new(numbers: Vec<i64>) -> TracesAssembler {
        TracesAssembler {
            walker: RequestWalker::new(numbers),
            out: crate::profiler::toolkit::traces::TracesWriter::new(Vec::with_capacity(CHUNK * 2)),
        }
    }

    /// Adds one stored step body; returns a chunk to send when enough is buffered.
    pub(crate) fn step(
        &mut self,
        request_number: i64,
        body: &str,
    ) -> Result<Option<Bytes>, StoreError> {
        for m in self.walker.open(request_number) {
            self.out.begin_request(m).map_err(io_err)?;
        }
        self.out.rendered_step(body.as_bytes()).map_err(io_err)?;
        Ok((self.out.buffered() >= CHUNK).then(|| Bytes::from(self.out.take())))
    }

    /// The rest of the file, closing the requests without steps after the last step.
    pub(crate) fn finish(mut self) -> Result<Bytes, StoreError> {
        for m in self.walker.remaining() {
            self.out.begin_request(m).map_err(io_err)?;
        }
        self.out.finish().map(Bytes::from).map_err(io_err)
    }
}

fn io_err(e: std::io::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn event_type_from_code(code: i16) -> Result<EventType, StoreError> {
    EventType::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown event type code {code}")))
}

pub(crate) fn framework_from_code(code: i16) -> Result<Framework, StoreError> {
    Framework::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown framework code {code}")))
}

/// A stored step's profiler columns, read from a `steps` row of either backend.
/// A JSON document kept in a text column (metadata, profiler configs). Text rather than
/// PostgreSQL's jsonb, which cannot hold an escaped NUL.
pub(crate) fn json_column<R>(r: &R, name: &str) -> Result<Value, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text: String = r.try_get(name)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("stored {name} is not JSON: {e}")))
}

pub(crate) fn step_columns<R>(r: &R) -> Result<StepColumns, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let opt = |name: &str| -> Result<Option<String>, StoreError> {
        r.try_get::<Option<Vec<u8>>, _>(name)?.map(utf8).transpose()
    };
    let ancestry = match opt("function_name")? {
        Some(function_name) => Some(crate::trace::InvocationNode {
            function_name,
            function_id: opt("function_id")?.unwrap_or_default(),
            parent_name: opt("parent_name")?,
            parent_id: opt("parent_id")?,
        }),
        None => None,
    };
    Ok(StepColumns {
        event_type: event_type_from_code(r.try_get("event_type")?)?,
        event_timestamp: r.try_get("event_timestamp")?,
        uuid: utf8(r.try_get("uuid")?)?,
        name: opt("name")?,
        framework: r
            .try_get::<Option<i16>, _>("framework")?
            .map(framework_from_code)
            .transpose()?,
        ancestry,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        total_tokens: r.try_get("total_tokens")?,
        seconds_between_calls: r.try_get("seconds_between_calls")?,
        text: opt("text_value")?,
    })
}

pub(crate) fn utf8(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes)
        .map_err(|e| StoreError::Corrupt(format!("stored text is not UTF-8: {e}")))
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

    #[test]
    fn walker_interleaves_empty_requests() {
        let mut w = RequestWalker::new(vec![0, 1, 3, 4, 6]);
        assert_eq!(w.open(1), [0, 1]);
        assert_eq!(w.open(1), Vec::<i64>::new());
        assert_eq!(w.open(4), [3, 4]);
        assert_eq!(w.remaining().collect::<Vec<_>>(), [6]);
    }

    #[test]
    fn unknown_codes_are_corrupt_data() {
        assert!(matches!(
            event_type_from_code(99),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            framework_from_code(-1),
            Err(StoreError::Corrupt(_))
        ));
    }
}
