//! The rollups' role in the SQL store: per-minute rows changed in the transaction that changes
//! the steps they count (a batch adds, the retention sweep subtracts), built from the steps for
//! runs stored before rollups existed, and read back as a series.
//!
//! A row is read, combined in Rust (the latency sketches are not SQL values) and written back,
//! under a row lock where the engine has them; keys are visited in order, so two transactions
//! touching the same rows lock them in the same order.

use super::backend::{Backend, Bind, Rec};
use super::queries;
use crate::rollup::{
    Bucket, Cell, Delta, Key, Kind, MAX_NAMES_PER_MINUTE, OTHER, SeriesBuilder, Sketch, SketchError,
};
use crate::store::StoreError;
use crate::store::packed::{Dictionaries, Unpacked};
use crate::trace::EventType;
use futures::TryStreamExt;
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

const INSERT_EMPTY: &str = "INSERT INTO rollups (run_id, minute, kind, name, count, prompt_tokens, \
     completion_tokens, cached_tokens, latency) VALUES ($1, $2, $3, $4, 0, 0, 0, 0, $5) \
     ON CONFLICT DO NOTHING";

const SELECT_ROW: &str = "SELECT count, prompt_tokens, completion_tokens, cached_tokens, latency \
     FROM rollups WHERE run_id = $1 AND minute = $2 AND kind = $3 AND name = $4";

const UPDATE_ROW: &str = "UPDATE rollups SET count = $5, prompt_tokens = $6, completion_tokens = $7, \
     cached_tokens = $8, latency = $9 WHERE run_id = $1 AND minute = $2 AND kind = $3 AND name = $4";

/// The named rows of run `$1`'s minute `$2` and kind `$3`, the catch-all `$4` ("(other)")
/// aside.
const COUNT_NAMES: &str = "SELECT COUNT(*) FROM rollups WHERE run_id = $1 AND minute = $2 \
     AND kind = $3 AND name <> $4";

const DELETE_ROW: &str =
    "DELETE FROM rollups WHERE run_id = $1 AND minute = $2 AND kind = $3 AND name = $4";

/// The rows of run `$1` in minutes `[$2, $3]`, in key order (the order rows are locked in).
const SELECT_MINUTES: &str = "SELECT minute, kind, name, count, prompt_tokens, completion_tokens, \
     cached_tokens, latency FROM rollups WHERE run_id = $1 AND minute >= $2 AND minute <= $3 \
     ORDER BY minute, kind, name";

/// The rows of run `$1` in minutes `[$2, $3)`.
const SELECT_RANGE: &str = "SELECT minute, kind, name, count, prompt_tokens, completion_tokens, \
     cached_tokens, latency FROM rollups WHERE run_id = $1 AND minute >= $2 AND minute < $3 \
     ORDER BY minute";

/// What a rollup reads of a step.
macro_rules! end_step_columns {
    () => {
        "SELECT packed FROM steps"
    };
}

/// The END steps a rollup counts (LLM_END, TOOL_END, WORKFLOW_END: codes 1, 4, 6).
macro_rules! end_types {
    () => {
        " AND event_type IN (1, 4, 6)"
    };
}

/// What reading a run's END steps found: their rollup delta, and the LLM calls and tokens the
/// run summary counts.
#[derive(Debug, Default)]
pub(super) struct EndSteps {
    pub delta: Delta,
    pub llm_calls: i64,
    pub llm_tokens: i64,
}

impl EndSteps {
    fn add<B: Backend>(&mut self, row: &B::Row, dicts: &Dictionaries) -> Result<(), StoreError> {
        let c = Unpacked::of(&Rec::<B>(row).col::<Vec<u8>>(0)?, dicts)?.columns()?;
        if c.event_type == EventType::LlmEnd {
            self.llm_calls += 1;
            self.llm_tokens = self.llm_tokens.saturating_add(c.total_tokens);
        }
        self.delta.step(&crate::rollup::StepFacts {
            event_type: c.event_type,
            event_timestamp: c.event_timestamp,
            span_event_timestamp: c.span_event_timestamp,
            name: c.name.as_deref(),
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            cached_tokens: c.cached_tokens,
        });
        Ok(())
    }
}

fn sketch_error(e: SketchError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// `sql` with run `$1` and a row's key (`$2` minute, `$3` kind, `$4` name) bound.
fn at_key<'q, B: Backend>(
    sql: &'q str,
    run: Uuid,
    key: &'q Key,
) -> sqlx::query::Query<'q, B, <B as sqlx::Database>::Arguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .arg(run)
        .arg(key.minute)
        .arg(key.kind.code())
        .arg(key.name.as_bytes())
}

/// Takes `delta` back out of run `run`'s rows (the retention sweep's path), a row at a time. A
/// removal that finds a row without what it removes means the rows no longer match the steps:
/// the run's rollups are marked for a rebuild instead (`false`).
pub(super) async fn remove<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    delta: &Delta,
) -> Result<bool, StoreError> {
    let select = format!("{SELECT_ROW}{}", B::FOR_UPDATE);
    for (key, change) in &delta.cells {
        let mut row_key = key.clone();
        let mut row = at_key::<B>(&select, run, key)
            .fetch_optional(B::on(&mut *conn))
            .await?;
        if row.is_none() && key.kind != Kind::Requests && key.name != OTHER {
            // The calls of a name its minute had no room for were counted under "(other)".
            row_key.name = OTHER.to_owned();
            row = at_key::<B>(&select, run, &row_key)
                .fetch_optional(B::on(&mut *conn))
                .await?;
        }
        let mut cell = row.map_or(Ok(Cell::default()), |r| cell_of::<B>(&r, 0))?;
        if cell.apply(change, true).is_err() || cell.count < 0 {
            set_ready::<B>(conn, run, false).await?;
            return Ok(false);
        }
        if cell.is_empty() {
            at_key::<B>(DELETE_ROW, run, &row_key)
                .execute(B::on(&mut *conn))
                .await?;
        } else {
            let latency = cell.latency.encode();
            at_key::<B>(UPDATE_ROW, run, &row_key)
                .arg(cell.count)
                .arg(cell.prompt_tokens)
                .arg(cell.completion_tokens)
                .arg(cell.cached_tokens)
                .arg(&latency[..])
                .execute(B::on(&mut *conn))
                .await?;
        }
    }
    Ok(true)
}

/// Adds `delta` in a few statements whatever its size (ingest's path): creates the rows that
/// are new in one insert (in key order, so concurrent batches meet at the first row they
/// share), reads and locks the rows of its minutes in key order in one select, and writes the
/// sums back in one update. `false` when the rows no longer match the steps, as for
/// [`remove`].
pub(super) async fn add<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    delta: &Delta,
) -> Result<bool, StoreError> {
    let (Some(first), Some(last)) = (delta.cells.keys().next(), delta.cells.keys().next_back())
    else {
        return Ok(true);
    };
    let (lo, hi) = (first.minute, last.minute);
    let created = insert_empties::<B>(conn, run, delta.cells.keys()).await?;
    // Where each change goes: its own row, or "(other)" for a new name past the cap.
    let mut changes: BTreeMap<Key, Cell> = BTreeMap::new();
    for (key, change) in &delta.cells {
        let row = if created.contains(key) {
            placed_new::<B>(conn, run, key).await?
        } else {
            key.clone()
        };
        match changes.get_mut(&row) {
            Some(c) => c.apply(change, false).map_err(sketch_error)?,
            None => {
                changes.insert(row, change.clone());
            }
        }
    }
    let select = format!("{SELECT_MINUTES}{}", B::FOR_UPDATE);
    let mut rows: Vec<(Key, Cell)> = Vec::with_capacity(changes.len());
    {
        let mut found = sqlx::query(sqlx::AssertSqlSafe(select))
            .arg(run)
            .arg(lo)
            .arg(hi)
            .fetch(B::on(&mut *conn));
        while let Some(row) = found.try_next().await? {
            let key = key_of::<B>(&row)?;
            if let Some(change) = changes.get(&key) {
                let mut cell = cell_of::<B>(&row, 3)?;
                if cell.apply(change, false).is_err() || cell.count < 0 {
                    drop(found);
                    set_ready::<B>(conn, run, false).await?;
                    return Ok(false);
                }
                rows.push((key, cell));
            }
        }
    }
    if rows.len() != changes.len() {
        return Err(StoreError::Corrupt("a rollup row vanished".into()));
    }
    let (empty, kept): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(_, c)| c.is_empty());
    for (key, _) in &empty {
        at_key::<B>(DELETE_ROW, run, key)
            .execute(B::on(&mut *conn))
            .await?;
    }
    for chunk in kept.chunks(queries::ROWS_PER_INSERT) {
        let sql = format!(
            "UPDATE rollups SET count = v.column4, prompt_tokens = v.column5, \
             completion_tokens = v.column6, cached_tokens = v.column7, latency = v.column8 \
             FROM (VALUES {}) AS v WHERE rollups.run_id = $1 AND rollups.minute = v.column1 \
             AND rollups.kind = v.column2 AND rollups.name = v.column3",
            queries::values_from(chunk.len(), 8, 2)
        );
        let sketches: Vec<Vec<u8>> = chunk.iter().map(|(_, c)| c.latency.encode()).collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).arg(run);
        for ((key, cell), sketch) in chunk.iter().zip(&sketches) {
            q = q
                .arg(key.minute)
                .arg(key.kind.code())
                .arg(key.name.as_bytes())
                .arg(cell.count)
                .arg(cell.prompt_tokens)
                .arg(cell.completion_tokens)
                .arg(cell.cached_tokens)
                .arg(&sketch[..]);
        }
        q.execute(B::on(&mut *conn)).await?;
    }
    Ok(true)
}

/// Creates the rows of `keys` that do not exist yet, empty, in key order; returns those it
/// created.
async fn insert_empties<'k, B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    keys: impl Iterator<Item = &'k Key>,
) -> Result<HashSet<Key>, StoreError> {
    let empty = Sketch::default().encode();
    let keys: Vec<&Key> = keys.collect();
    let mut created = HashSet::new();
    for chunk in keys.chunks(queries::ROWS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let n = 3 + 3 * i;
                format!("($1, ${n}, ${}, ${}, 0, 0, 0, 0, $2)", n + 1, n + 2)
            })
            .collect();
        let sql = format!(
            "INSERT INTO rollups (run_id, minute, kind, name, count, prompt_tokens, \
             completion_tokens, cached_tokens, latency) VALUES {} ON CONFLICT DO NOTHING \
             RETURNING minute, kind, name",
            rows.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(run)
            .arg(&empty[..]);
        for key in chunk {
            q = q
                .arg(key.minute)
                .arg(key.kind.code())
                .arg(key.name.as_bytes());
        }
        for row in q.fetch_all(B::on(&mut *conn)).await? {
            created.insert(key_of::<B>(&row)?);
        }
    }
    Ok(created)
}

/// The key of a row read from its first three columns (minute, kind, name).
fn key_of<B: Backend>(row: &B::Row) -> Result<Key, StoreError> {
    let r = Rec::<B>(row);
    let kind = Kind::from_code(r.col(1)?)
        .ok_or_else(|| StoreError::Corrupt("unknown rollup kind".into()))?;
    let name: Vec<u8> = r.col(2)?;
    Ok(Key {
        minute: r.col(0)?,
        kind,
        name: String::from_utf8_lossy(&name).into_owned(),
    })
}

/// The row a change of `key`, whose row was just created, goes to: its own, or past
/// [`MAX_NAMES_PER_MINUTE`] names of its kind in its minute, "(other)" (its new row removed).
async fn placed_new<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    key: &Key,
) -> Result<Key, StoreError> {
    if key.kind == Kind::Requests || key.name == OTHER {
        return Ok(key.clone());
    }
    let other = Key {
        name: OTHER.to_owned(),
        ..key.clone()
    };
    let names: i64 = Rec::<B>(
        &at_key::<B>(COUNT_NAMES, run, &other)
            .fetch_one(B::on(&mut *conn))
            .await?,
    )
    .col(0)?;
    if names <= MAX_NAMES_PER_MINUTE {
        return Ok(key.clone());
    }
    at_key::<B>(DELETE_ROW, run, key)
        .execute(B::on(&mut *conn))
        .await?;
    insert_empty::<B>(conn, run, &other).await?;
    Ok(other)
}

/// Creates `key`'s row, empty, unless it exists; whether it created it.
async fn insert_empty<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    key: &Key,
) -> Result<bool, StoreError> {
    let empty = Sketch::default().encode();
    let done = at_key::<B>(INSERT_EMPTY, run, key)
        .arg(&empty[..])
        .execute(B::on(conn))
        .await?;
    Ok(B::rows_affected(&done) == 1)
}

/// The figures of a row read from column `first` on (count, tokens, latency).
fn cell_of<B: Backend>(row: &B::Row, first: usize) -> Result<Cell, StoreError> {
    let r = Rec::<B>(row);
    let latency: Vec<u8> = r.col(first + 4)?;
    Ok(Cell {
        count: r.col(first)?,
        prompt_tokens: r.col(first + 1)?,
        completion_tokens: r.col(first + 2)?,
        cached_tokens: r.col(first + 3)?,
        latency: Sketch::decode(&latency).map_err(sketch_error)?,
    })
}

/// Marks whether the run's rollups match its steps. Not ready: they do not (a run stored before
/// them, or found stale), the server rebuilds them and serves no series until it has.
async fn set_ready<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    ready: bool,
) -> Result<(), StoreError> {
    if !ready {
        tracing::warn!(%run, "rollups no longer match the steps; rebuilding them");
    }
    sqlx::query("UPDATE runs SET rollups_ready = $2 WHERE id = $1")
        .arg(run)
        .arg(ready)
        .execute(B::on(conn))
        .await?;
    Ok(())
}

/// Run `run`'s series over minutes `[from, to)` in buckets of `step` minutes, built as the
/// rows stream in minute order, or `None` while the run's rollups are still being built.
pub(super) async fn series<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Option<Vec<Bucket>>, StoreError> {
    let ready = sqlx::query("SELECT rollups_ready FROM runs WHERE id = $1")
        .arg(run)
        .fetch_optional(B::on(&mut *conn))
        .await?
        .ok_or(StoreError::RunNotFound(run))?;
    if !Rec::<B>(&ready).col::<bool>(0)? {
        return Ok(None);
    }
    let mut series = SeriesBuilder::new(from, to, step);
    let mut rows = sqlx::query(SELECT_RANGE)
        .arg(run)
        .arg(from)
        .arg(to)
        .fetch(B::on(conn));
    while let Some(row) = rows.try_next().await? {
        let key = key_of::<B>(&row)?;
        series
            .add(key, &cell_of::<B>(&row, 3)?)
            .map_err(sketch_error)?;
    }
    Ok(Some(series.finish()))
}

/// Runs whose rollups are not built yet (stored before rollups existed, or found stale).
pub(super) async fn pending<B: Backend>(conn: &mut B::Connection) -> Result<Vec<Uuid>, StoreError> {
    sqlx::query("SELECT id FROM runs WHERE rollups_ready = $1")
        .arg(false)
        .fetch_all(B::on(conn))
        .await?
        .iter()
        .map(|row| Rec::<B>(row).col(0))
        .collect()
}

/// Builds run `run`'s rollups from its stored steps, holding the run against batches while it
/// does (they would otherwise count steps the build counts again or misses).
pub(super) async fn rebuild<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    dicts: &Dictionaries,
) -> Result<(), StoreError> {
    let (_, ready) = super::runs::lock::<B>(&mut *conn, run, true).await?;
    if ready {
        return Ok(());
    }
    super::dictionaries::refresh::<B>(&mut *conn, dicts).await?;
    sqlx::query("DELETE FROM rollups WHERE run_id = $1")
        .arg(run)
        .execute(B::on(&mut *conn))
        .await?;
    let mut found = EndSteps::default();
    {
        let mut starts = sqlx::query(
            "SELECT started_at FROM requests WHERE run_id = $1 AND started_at IS NOT NULL",
        )
        .arg(run)
        .fetch(B::on(&mut *conn));
        while let Some(row) = starts.try_next().await? {
            found
                .delta
                .request_counted(Some(Rec::<B>(&row).col::<f64>(0)?));
        }
    }
    {
        let mut steps = sqlx::query(concat!(
            end_step_columns!(),
            " WHERE run_id = $1",
            end_types!()
        ))
        .arg(run)
        .fetch(B::on(&mut *conn));
        while let Some(row) = steps.try_next().await? {
            found.add::<B>(&row, dicts)?;
        }
    }
    if add::<B>(&mut *conn, run, &found.delta).await? {
        set_ready::<B>(conn, run, true).await?;
    }
    Ok(())
}

/// The END steps of requests `numbers` of run `run` (all of them at once: a sweep's chunk is
/// bounded).
pub(super) async fn end_steps_of<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    numbers: &[i32],
    dicts: &Dictionaries,
) -> Result<EndSteps, StoreError> {
    super::dictionaries::refresh::<B>(&mut *conn, dicts).await?;
    let sql = queries::in_list(end_step_columns!(), "request_number", end_types!());
    let mut found = EndSteps::default();
    for chunk in numbers.chunks(queries::IN_LIST) {
        let rows = super::steps::numbers_query::<B>(&sql, run, chunk)
            .fetch_all(B::on(&mut *conn))
            .await?;
        for row in rows {
            found.add::<B>(&row, dicts)?;
        }
    }
    Ok(found)
}
