//! The database's trained step dictionaries (see `store::packed`): read into a store's
//! [`Dictionaries`] before anything unpacks steps, and trained when the [`Schedule`] says so.

use super::backend::{Backend, Bind, Rec};
use crate::store::StoreError;
use crate::store::packed::{self, Dictionaries, Schedule, Unpacked};
use sqlx::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

/// Runs a trainer samples from, the most recently updated first.
const SAMPLED_RUNS: i64 = 8;

/// Steps a trainer samples from each run, those of its newest requests (read backwards through
/// the primary key, no sort): a few thousand steps in all are plenty for a 64 KiB dictionary, and
/// take a second or two of one core to train on.
const SAMPLED_STEPS: i64 = 500;

/// The bytes of one step a trainer keeps (the start of its profiler columns and body): a step
/// with a long prompt or output adds no more than this to the trainer's memory.
const MAX_SAMPLE: usize = 16 * 1024;

/// The bytes a trainer samples in all: zstd's advice is about a hundred times the dictionary.
const MAX_SAMPLES: usize = 100 * packed::MAX_DICTIONARY;

/// Reads the dictionaries stored since the newest that `known` holds: one indexed query that
/// finds nothing but when a dictionary was trained (rare), so every read can afford it first.
pub(super) async fn refresh<B: Backend>(
    conn: &mut B::Connection,
    known: &Dictionaries,
) -> Result<(), StoreError> {
    let rows =
        sqlx::query("SELECT id, dictionary FROM step_dictionaries WHERE id > $1 ORDER BY id")
            .arg(i64::from(known.newest().id()))
            .fetch_all(B::on(conn))
            .await?;
    for row in rows {
        let r = Rec::<B>(&row);
        let id = u32::try_from(r.col::<i32>(0)?)
            .map_err(|_| StoreError::Corrupt("a step dictionary's id is out of range".into()))?;
        known.add(id, &r.col::<Vec<u8>>(1)?)?;
    }
    Ok(())
}

/// Trains and stores the next dictionary when `schedule` says one is due; returns its id, or
/// `None` when none was due (or another replica stored the same one first).
pub(super) async fn train_if_due<B: Backend>(
    pool: &Pool<B>,
    known: &Dictionaries,
    schedule: Schedule,
) -> Result<Option<u32>, StoreError> {
    let mut conn = pool.acquire().await?;
    refresh::<B>(&mut conn, known).await?;
    let row = sqlx::query(
        "SELECT (SELECT CAST(COALESCE(SUM(step_count), 0) AS BIGINT) FROM runs), \
         (SELECT MAX(trained_on) FROM step_dictionaries), \
         (SELECT COALESCE(MAX(id), 0) FROM step_dictionaries)",
    )
    .fetch_one(B::on(&mut conn))
    .await?;
    let r = Rec::<B>(&row);
    let steps = u64::try_from(r.col::<i64>(0)?).unwrap_or(0);
    let last = r
        .col::<Option<i64>>(1)?
        .map(|n| u64::try_from(n).unwrap_or(0));
    let stored = u32::try_from(r.col::<i32>(2)?).unwrap_or(0);
    let next = i64::from(stored) + 1;
    known.forget_above(stored);
    if !schedule.due(steps, last) || steps < known.retry_at() {
        return Ok(None);
    }
    let runs: Vec<Uuid> =
        sqlx::query("SELECT id FROM runs WHERE step_count > 0 ORDER BY updated_at DESC LIMIT $1")
            .arg(SAMPLED_RUNS)
            .fetch_all(B::on(&mut conn))
            .await?
            .iter()
            .map(|row| Rec::<B>(row).col::<Uuid>(0))
            .collect::<Result<_, _>>()?;
    let (mut samples, mut taken) = (Vec::new(), 0usize);
    'runs: for run in runs {
        let rows = sqlx::query(
            "SELECT packed FROM steps WHERE run_id = $1 ORDER BY request_number DESC LIMIT $2",
        )
        .arg(run)
        .arg(SAMPLED_STEPS)
        .fetch_all(B::on(&mut conn))
        .await?;
        for row in rows {
            let packed = Rec::<B>(&row).col::<Option<Vec<u8>>>(0)?;
            // A step packed with a dictionary stored since the refresh above, or not packed yet,
            // is left out rather than failing the training.
            let Some(step) = packed.and_then(|p| Unpacked::of(&p, known).ok()) else {
                continue;
            };
            let content = step.content();
            samples.push(content[..content.len().min(MAX_SAMPLE)].to_vec());
            taken += samples.last().map_or(0, Vec::len);
            if taken >= MAX_SAMPLES {
                break 'runs;
            }
        }
    }
    let trained = tokio::task::spawn_blocking(move || packed::train(&samples))
        .await
        .map_err(|e| StoreError::Corrupt(format!("the dictionary trainer stopped: {e}")))?;
    let dictionary = match trained {
        Ok(d) => d,
        Err(e) => {
            // Too few or too varied samples: try again once the steps have doubled.
            tracing::warn!(error = %e, steps, "could not train a step dictionary");
            known.retry_from(steps.saturating_mul(2));
            return Ok(None);
        }
    };
    let stored = sqlx::query(
        "INSERT INTO step_dictionaries (id, created_at, trained_on, dictionary) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    )
    .arg(i32::try_from(next).unwrap_or(i32::MAX))
    .time(Some(OffsetDateTime::now_utc()))
    .arg(i64::try_from(steps).unwrap_or(i64::MAX))
    .arg(&dictionary[..])
    .execute(B::on(&mut conn))
    .await?;
    refresh::<B>(&mut conn, known).await?;
    if B::rows_affected(&stored) == 0 {
        return Ok(None);
    }
    let id = u32::try_from(next).unwrap_or(u32::MAX);
    tracing::info!(
        id,
        steps,
        bytes = dictionary.len(),
        "trained a step dictionary"
    );
    Ok(Some(id))
}
