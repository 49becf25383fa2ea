//! The step log's role in the SQL store: requests and their steps, written a planned batch at a
//! time and read back in `(request_number, seq)` order as a frame, as parsed steps or as the
//! combined requests file.

use super::backend::{Backend, Bind, Rec};
use super::columns::{self, utf8};
use super::queries;
use crate::store::packed::{Dictionaries, Unpacked};
use crate::store::{
    ByteStream, ContentHash, FrameAssembler, LoadedRun, LoadedSteps, PlannedRequest, PreparedBatch,
    RequestFigures, StepsAssembler, StoreError, StoredOccurrences, TracesAssembler, WindowSize,
};
use crate::trace::StepSchema;
use crate::window::Window;
use futures::{StreamExt, TryStreamExt};
use sqlx::Transaction;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Runs `sql` (an [`queries::in_list`] statement) over `values` a chunk at a time, the last
/// chunk filled up with its last value (a value twice in an `IN` list matches as once), and
/// collects the rows `read` makes of them.
async fn in_chunks<B: Backend, T>(
    conn: &mut B::Connection,
    sql: &str,
    run: Uuid,
    values: &[&[u8]],
    read: impl Fn(Rec<'_, B>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for chunk in values.chunks(queries::IN_LIST) {
        let Some(&last) = chunk.last() else { continue };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).arg(run);
        for i in 0..queries::IN_LIST {
            q = q.arg(chunk.get(i).copied().unwrap_or(last));
        }
        for row in q.fetch_all(B::on(&mut *conn)).await? {
            out.push(read(Rec::<B>(&row))?);
        }
    }
    Ok(out)
}

/// `sql` (an [`queries::in_list`] statement over request numbers) for one chunk of at most
/// [`queries::IN_LIST`] of them: run `$1`, then the chunk, its last number repeated to fill the
/// list (a value twice in an `IN` list matches as once).
pub(super) fn numbers_query<'q, B: Backend>(
    sql: &'q str,
    run: Uuid,
    chunk: &[i32],
) -> sqlx::query::Query<'q, B, <B as sqlx::Database>::Arguments> {
    let last = chunk.last().copied().unwrap_or(-1);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).arg(run);
    for i in 0..queries::IN_LIST {
        q = q.arg(chunk.get(i).copied().unwrap_or(last));
    }
    q
}

/// The stored request numbers of the batch's eval ids, and the run's highest request number.
pub(super) async fn known_requests<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    batch: &PreparedBatch,
) -> Result<(HashMap<String, i64>, i64), StoreError> {
    let wanted: Vec<&[u8]> = batch.external_ids().iter().map(|e| e.as_bytes()).collect();
    let sql = queries::in_list(
        "SELECT external_id, request_number FROM requests",
        "external_id",
        "",
    );
    let rows = in_chunks::<B, _>(&mut *conn, &sql, run, &wanted, |r| {
        Ok((utf8(r.col(0)?)?, i64::from(r.col::<i32>(1)?)))
    })
    .await?;
    let row = sqlx::query(queries::MAX_REQUEST_NUMBER)
        .arg(run)
        .fetch_one(B::on(conn))
        .await?;
    let max_number: Option<i32> = Rec::<B>(&row).col(0)?;
    Ok((rows.into_iter().collect(), max_number.map_or(-1, i64::from)))
}

/// How often each of the batch's step contents is already stored, per request.
pub(super) async fn stored_occurrences<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    batch: &PreparedBatch,
) -> Result<StoredOccurrences, StoreError> {
    let hashes = batch.content_hashes();
    let wanted: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
    let sql = queries::in_list(
        "SELECT request_number, content_hash, max(occurrence) FROM steps",
        "content_hash",
        " GROUP BY request_number, content_hash",
    );
    let rows = in_chunks::<B, _>(conn, &sql, run, &wanted, |r| {
        let hash: ContentHash = r
            .col::<Vec<u8>>(1)?
            .try_into()
            .map_err(|_| StoreError::Corrupt("a stored content hash is not 16 bytes".into()))?;
        Ok(((r.col::<i32>(0)?, hash), r.col::<i32>(2)?))
    })
    .await?;
    Ok(rows.into_iter().collect())
}

/// Inserts the requests a batch creates; one that exists is skipped. Returns how many it created.
pub(super) async fn insert_requests<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    requests: &[PlannedRequest<'_>],
) -> Result<u64, StoreError> {
    let mut created = 0;
    for chunk in requests.chunks(queries::ROWS_PER_INSERT) {
        let sql = format!(
            "{}{} ON CONFLICT DO NOTHING",
            queries::INSERT_REQUESTS,
            queries::values(chunk.len(), 4)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .arg(run)
                .arg(r.number)
                .arg(r.external_id.map(str::as_bytes))
                .arg(r.eval);
        }
        created += B::rows_affected(&q.execute(B::on(&mut *conn)).await?);
    }
    Ok(created)
}

/// The start (earliest step time) of each of requests `numbers`, `None` for one without steps
/// yet: read before and after a batch changes them, so the rollups count each request in the
/// minute it now starts in.
pub(super) async fn request_starts<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    numbers: &[i32],
) -> Result<HashMap<i32, Option<f64>>, StoreError> {
    let sql = queries::in_list(
        "SELECT request_number, started_at FROM requests",
        "request_number",
        "",
    );
    let mut out = HashMap::with_capacity(numbers.len());
    for chunk in numbers.chunks(queries::IN_LIST) {
        let rows = numbers_query::<B>(&sql, run, chunk)
            .fetch_all(B::on(&mut *conn))
            .await?;
        for row in rows {
            let r = Rec::<B>(&row);
            out.insert(r.col::<i32>(0)?, r.col::<Option<f64>>(1)?);
        }
    }
    Ok(out)
}

/// Adds what a batch stored to its requests' figures (see [`RequestFigures`]).
pub(super) async fn add_request_figures<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    figures: &[RequestFigures],
) -> Result<(), StoreError> {
    for chunk in figures.chunks(queries::ROWS_PER_INSERT) {
        let sql = queries::add_request_figures(chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).arg(run);
        for f in chunk {
            q = q
                .arg(f.number)
                .arg(f.started_at)
                .arg(f.steps)
                .arg(f.column_bytes)
                .arg(f.body_bytes)
                .arg(f.ended_at);
        }
        q.execute(B::on(&mut *conn)).await?;
    }
    Ok(())
}

/// A statement over a run or over a window of it: `all` binds the run alone, `windowed` the
/// run and the window's bounds (see `queries::in_window!`).
fn over<'q, B: Backend>(
    run: Uuid,
    window: &Window,
    all: &'q str,
    windowed: &'q str,
) -> sqlx::query::Query<'q, B, <B as sqlx::Database>::Arguments> {
    if window.is_all() {
        sqlx::query(sqlx::AssertSqlSafe(all)).arg(run)
    } else {
        let (from, to) = window.sql_bounds();
        sqlx::query(sqlx::AssertSqlSafe(windowed))
            .arg(run)
            .arg(from)
            .arg(to)
    }
}

/// How many requests and steps a run or window holds, and their bytes.
pub(super) async fn size<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    window: &Window,
) -> Result<WindowSize, StoreError> {
    let row = over::<B>(run, window, queries::RUN_SIZE, queries::WINDOW_SIZE)
        .fetch_one(B::on(conn))
        .await?;
    let r = Rec::<B>(&row);
    let n = |i: usize| r.col::<i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(WindowSize {
        requests: n(0)?,
        steps: n(1)?,
        column_bytes: n(2)?,
        body_bytes: n(3)?,
    })
}

/// The earliest start from which the newest requests of `window` cost at most `budget`, each
/// costing `per_step` a step, `per_column_byte` a column byte and `per_request`; `None` when
/// even the newest alone costs more, or the window is empty.
pub(super) async fn fitting_start<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    window: &Window,
    cost: [f64; 3],
    budget: f64,
) -> Result<Option<f64>, StoreError> {
    let (from, to) = window.sql_bounds();
    let row = sqlx::query(queries::FITTING_START)
        .arg(run)
        .arg(from)
        .arg(to)
        .arg(cost[0])
        .arg(cost[1])
        .arg(cost[2])
        .arg(budget)
        .fetch_optional(B::on(conn))
        .await?;
    row.map(|row| Rec::<B>(&row).col::<f64>(0)).transpose()
}

/// A run's frame (or a window's), built from its stored step columns within one snapshot.
pub(super) async fn load<B: Backend>(
    tx: &mut Transaction<'static, B>,
    run: Uuid,
    window: &Window,
    dicts: &Dictionaries,
) -> Result<LoadedRun, StoreError> {
    let version = super::runs::version::<B>(&mut **tx, run).await?;
    super::dictionaries::refresh::<B>(&mut **tx, dicts).await?;
    let requests = over::<B>(
        run,
        window,
        queries::SELECT_REQUESTS,
        queries::SELECT_WINDOW_REQUESTS,
    )
    .fetch_all(B::on(&mut **tx))
    .await?
    .iter()
    .map(|row| {
        let r = Rec::<B>(row);
        let external: Option<Vec<u8>> = r.col(1)?;
        let steps = usize::try_from(r.col::<i32>(2)?).unwrap_or(0);
        Ok((
            (i64::from(r.col::<i32>(0)?), external.map(utf8).transpose()?),
            steps,
        ))
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let steps = requests.iter().map(|(_, n)| n).sum();
    let mut frame = FrameAssembler::new(requests.into_iter().map(|(r, _)| r).collect(), steps);
    let mut rows = over::<B>(
        run,
        window,
        queries::SELECT_STEPS,
        queries::SELECT_WINDOW_STEPS,
    )
    .fetch(B::on(&mut **tx));
    let mut order = SeqOrder::default();
    while let Some(row) = rows.try_next().await? {
        let (n, seq, packed) = columns::step_row::<B>(&row)?;
        let step = Unpacked::of(&packed, dicts)?.columns()?;
        if let Some((n, steps)) = order.push(n, seq, step) {
            steps.into_iter().for_each(|s| frame.step(n, s));
        }
    }
    if let Some((n, steps)) = order.finish() {
        steps.into_iter().for_each(|s| frame.step(n, s));
    }
    Ok(LoadedRun {
        version,
        frame: frame.finish(),
    })
}

/// A run's (or a window's) requests with their eval fields and their steps parsed back from
/// their bodies.
pub(super) async fn load_steps<B: Backend>(
    tx: &mut Transaction<'static, B>,
    run: Uuid,
    window: &Window,
    dicts: &Dictionaries,
) -> Result<LoadedSteps, StoreError> {
    let version = super::runs::version::<B>(&mut **tx, run).await?;
    super::dictionaries::refresh::<B>(&mut **tx, dicts).await?;
    let requests = over::<B>(
        run,
        window,
        queries::SELECT_REQUEST_ITEMS,
        queries::SELECT_WINDOW_REQUEST_ITEMS,
    )
    .fetch_all(B::on(&mut **tx))
    .await?
    .iter()
    .map(|row| {
        let r = Rec::<B>(row);
        let external: Option<Vec<u8>> = r.col(1)?;
        Ok((
            i64::from(r.col::<i32>(0)?),
            external.map(utf8).transpose()?,
            r.col::<Option<String>>(2)?,
        ))
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let mut steps = StepsAssembler::new(requests)?;
    let mut rows = over::<B>(
        run,
        window,
        queries::SELECT_STEPS,
        queries::SELECT_WINDOW_STEPS,
    )
    .fetch(B::on(&mut **tx));
    let mut order = SeqOrder::default();
    let mut add = |n: i64, packed: Vec<Vec<u8>>| -> Result<(), StoreError> {
        for p in packed {
            steps.step(n, Unpacked::of(&p, dicts)?.body()?)?;
        }
        Ok(())
    };
    while let Some(row) = rows.try_next().await? {
        let (n, seq, packed) = columns::step_row::<B>(&row)?;
        if let Some((n, packed)) = order.push(n, seq, packed) {
            add(n, packed)?;
        }
    }
    if let Some((n, packed)) = order.finish() {
        add(n, packed)?;
    }
    Ok(LoadedSteps {
        version,
        requests: steps.finish(),
    })
}

/// The combined requests file of a run (or a window), streamed from `tx` (which the stream
/// keeps, with its snapshot, until the last chunk), each step rewritten into `schema` when one
/// is given.
pub(super) async fn stream_requests<B: Backend>(
    mut tx: Transaction<'static, B>,
    slot: tokio::sync::OwnedSemaphorePermit,
    run: Uuid,
    schema: Option<StepSchema>,
    window: Window,
    dicts: Arc<Dictionaries>,
) -> Result<ByteStream, StoreError> {
    let exists = sqlx::query(queries::RUN_EXISTS)
        .arg(run)
        .fetch_optional(B::on(&mut *tx))
        .await?;
    if exists.is_none() {
        return Err(StoreError::RunNotFound(run));
    }
    super::dictionaries::refresh::<B>(&mut *tx, &dicts).await?;
    let numbers = over::<B>(
        run,
        &window,
        queries::SELECT_REQUEST_NUMBERS,
        queries::SELECT_WINDOW_REQUEST_NUMBERS,
    )
    .fetch_all(B::on(&mut *tx))
    .await?
    .iter()
    .map(|row| Rec::<B>(row).col::<i32>(0).map(i64::from))
    .collect::<Result<Vec<_>, StoreError>>()?;
    let stream = async_stream::try_stream! {
        let _slot = slot;
        let mut out = TracesAssembler::new(numbers, schema);
        {
            let mut rows = over::<B>(
                run,
                &window,
                queries::SELECT_STEPS,
                queries::SELECT_WINDOW_STEPS,
            )
            .fetch(B::on(&mut *tx));
            let mut order = SeqOrder::default();
            loop {
                let row = rows.try_next().await.map_err(StoreError::from)?;
                let request = match &row {
                    Some(row) => {
                        let (n, seq, packed) = columns::step_row::<B>(row)?;
                        order.push(n, seq, packed)
                    }
                    None => order.take(),
                };
                if let Some((n, packed)) = request {
                    for p in packed {
                        if let Some(chunk) = out.step(n, Unpacked::of(&p, &dicts)?.body()?)? {
                            yield chunk;
                        }
                    }
                }
                if row.is_none() {
                    break;
                }
            }
        }
        let rest = out.finish()?;
        tx.commit().await.map_err(StoreError::from)?;
        yield rest;
    };
    Ok(stream.boxed())
}

/// Puts each request's steps back in the order they were sent. Rows come by request through the
/// steps' primary key, whose order within a request is their content's, not their `seq`: each
/// request's rows are held until the next request begins, then given back sorted. One request is
/// held at a time (its packed steps, or the columns the frame keeps anyway).
pub(super) struct SeqOrder<T> {
    request: Option<i64>,
    rows: Vec<(i64, T)>,
}

impl<T> Default for SeqOrder<T> {
    fn default() -> Self {
        SeqOrder {
            request: None,
            rows: Vec::new(),
        }
    }
}

impl<T> SeqOrder<T> {
    /// Takes a row; when it begins a new request, gives back the previous request's rows.
    pub(super) fn push(&mut self, request: i64, seq: i64, row: T) -> Option<(i64, Vec<T>)> {
        let done = match self.request {
            Some(r) if r != request => self.take(),
            _ => None,
        };
        self.request = Some(request);
        self.rows.push((seq, row));
        done
    }

    /// The held request's rows, in `seq` order.
    pub(super) fn take(&mut self) -> Option<(i64, Vec<T>)> {
        let request = self.request.take()?;
        let mut rows = std::mem::take(&mut self.rows);
        rows.sort_by_key(|(seq, _)| *seq);
        Some((request, rows.into_iter().map(|(_, row)| row).collect()))
    }

    /// The last request's rows, in `seq` order.
    pub(super) fn finish(mut self) -> Option<(i64, Vec<T>)> {
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::SeqOrder;

    #[test]
    fn each_request_comes_back_in_seq_order() {
        let mut order = SeqOrder::default();
        let mut out = Vec::new();
        for (request, seq, row) in [
            (1, 30, "c"),
            (1, 10, "a"),
            (1, 20, "b"),
            (4, 7, "y"),
            (4, 2, "x"),
        ] {
            out.extend(order.push(request, seq, row));
        }
        out.extend(order.finish());
        assert_eq!(out, vec![(1, vec!["a", "b", "c"]), (4, vec!["x", "y"])]);
        assert_eq!(SeqOrder::<()>::default().finish(), None);
    }
}
