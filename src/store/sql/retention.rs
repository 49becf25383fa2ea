//! Retention in the SQL store: a run's oldest requests deleted a bounded chunk at a time, each
//! chunk in its own short transaction that also takes its steps back out of the rollups and the
//! run's counters, so ingest into the run waits at most for one chunk.
//!
//! The chunk's requests are locked as they are chosen; in PostgreSQL another sweep (another
//! replica's) skips locked rows rather than waiting for them, so two sweeps never delete the
//! same request, and each moves on to rows nobody holds.

use super::backend::{Backend, Bind, Rec};
use super::{queries, rollups, runs, steps};
use crate::store::packed::Dictionaries;
use crate::store::{StoreError, Swept};
use time::OffsetDateTime;
use uuid::Uuid;

/// Deletes up to `limit` of run `run`'s requests whose last step is before `cutoff` (Unix
/// seconds), oldest first, with their steps.
pub(super) async fn sweep_chunk<B: Backend>(
    conn: &mut B::Connection,
    run: Uuid,
    cutoff: f64,
    limit: i64,
    dicts: &Dictionaries,
) -> Result<Swept, StoreError> {
    let (_, rollups_ready) = runs::lock::<B>(&mut *conn, run, false).await?;
    let choose = format!(
        "SELECT request_number, started_at FROM requests WHERE run_id = $1 AND ended_at < $2 \
         ORDER BY ended_at LIMIT $3{}",
        B::SKIP_LOCKED
    );
    let chosen = sqlx::query(sqlx::AssertSqlSafe(choose))
        .arg(run)
        .arg(cutoff)
        .arg(limit)
        .fetch_all(B::on(&mut *conn))
        .await?
        .iter()
        .map(|row| {
            let r = Rec::<B>(row);
            Ok((r.col::<i32>(0)?, r.col::<Option<f64>>(1)?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    if chosen.is_empty() {
        return Ok(Swept::default());
    }
    let numbers: Vec<i32> = chosen.iter().map(|(n, _)| *n).collect();
    let mut found = rollups::end_steps_of::<B>(&mut *conn, run, &numbers, dicts).await?;
    if rollups_ready {
        for (_, start) in &chosen {
            found.delta.request_counted(*start);
        }
        rollups::remove::<B>(&mut *conn, run, &found.delta).await?;
    }
    let mut steps = 0;
    for (table, column) in [("steps", "request_number"), ("requests", "request_number")] {
        let sql = queries::in_list(&format!("DELETE FROM {table}"), column, "");
        for chunk in numbers.chunks(queries::IN_LIST) {
            let done = steps::numbers_query::<B>(&sql, run, chunk)
                .execute(B::on(&mut *conn))
                .await?;
            if table == "steps" {
                steps += B::rows_affected(&done);
            }
        }
    }
    let requests = numbers.len() as u64;
    let update = format!(
        "UPDATE runs SET version = version + 1, updated_at = {}, \
         request_count = request_count - $2, step_count = step_count - $3, \
         llm_calls = llm_calls - $4, llm_tokens = llm_tokens - $5, \
         first_event_at = (SELECT MIN(started_at) FROM requests WHERE run_id = $1), \
         last_event_at = (SELECT MAX(ended_at) FROM requests WHERE run_id = $1) WHERE id = $1",
        B::LATER_UPDATED_AT
    );
    sqlx::query(sqlx::AssertSqlSafe(update))
        .arg(run)
        .arg(i32::try_from(requests).unwrap_or(i32::MAX))
        .arg(i64::try_from(steps).unwrap_or(i64::MAX))
        .arg(found.llm_calls)
        .arg(found.llm_tokens)
        .time(Some(OffsetDateTime::now_utc()))
        .execute(B::on(conn))
        .await?;
    Ok(Swept { requests, steps })
}

/// The runs that keep their traffic for a while: `(run, retention in seconds)`.
pub(super) async fn retained_runs<B: Backend>(
    conn: &mut B::Connection,
) -> Result<Vec<(Uuid, i64)>, StoreError> {
    sqlx::query("SELECT id, retention_seconds FROM runs WHERE retention_seconds IS NOT NULL")
        .fetch_all(B::on(conn))
        .await?
        .iter()
        .map(|row| {
            let r = Rec::<B>(row);
            Ok((r.col(0)?, r.col::<Option<i64>>(1)?.unwrap_or(i64::MAX)))
        })
        .collect()
}
