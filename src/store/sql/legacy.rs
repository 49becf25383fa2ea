//! Steps stored before compact steps (the migration `compact_steps`): packed when a server
//! starts, because neither engine can compress with zstd in SQL.
//!
//! The store reads only packed steps. A server packs the old rows a chunk per transaction, in
//! key order, before it reports ready; several replicas starting at once share the work
//! (PostgreSQL skips the rows another one holds), and a server stopped midway carries on where
//! it stopped at the next start.

use super::backend::{Backend, Bind, Rec};
use super::columns::{event_type_from_code, framework_from_code, utf8};
use crate::profiler::StepColumns;
use crate::store::StoreError;
use crate::store::packed;
use crate::trace::InvocationNode;
use sqlx::Pool;
use uuid::Uuid;

/// Steps packed per transaction.
const CHUNK: i64 = 1000;

/// The old columns of the next unpacked steps after identity `($1, $2, $3, $4)`, in the order
/// of the partial index `steps_unpacked`; with `skip_locked`, passing over rows another server
/// is packing.
fn select_unpacked<B: Backend>(skip_locked: bool) -> String {
    format!(
        "SELECT run_id, request_number, seq, event_type, event_timestamp, uuid, name, framework, \
         function_name, function_id, parent_name, parent_id, prompt_tokens, completion_tokens, \
         total_tokens, seconds_between_calls, text_value, span_event_timestamp, step_parent_id, \
         cached_tokens, body, content_hash, occurrence FROM steps WHERE packed IS NULL AND \
         (run_id, request_number, content_hash, occurrence) > ($1, $2, $3, $4) \
         ORDER BY run_id, request_number, content_hash, occurrence LIMIT {CHUNK}{}",
        if skip_locked {
            B::SKIP_LOCKED
        } else {
            B::FOR_UPDATE
        }
    )
}

/// Packs the step of identity `($1, $2, $3, $5)` as `$4`, emptying its old columns.
const PACK: &str = "UPDATE steps SET packed = $4, event_timestamp = NULL, uuid = NULL, name = NULL, \
     framework = NULL, function_name = NULL, function_id = NULL, parent_name = NULL, \
     parent_id = NULL, prompt_tokens = NULL, completion_tokens = NULL, total_tokens = NULL, \
     seconds_between_calls = NULL, text_value = NULL, span_event_timestamp = NULL, \
     step_parent_id = NULL, cached_tokens = NULL, body = NULL \
     WHERE run_id = $1 AND request_number = $2 AND content_hash = $3 AND occurrence = $5";

/// Where the identity columns sit in a row of [`select_unpacked`].
const CONTENT_HASH: usize = 21;
const OCCURRENCE: usize = 22;

/// Packs every step stored in the old columns; returns how many it packed. A first pass skips
/// the rows other servers are packing; a second waits for them, so that none is left when this
/// server reports ready, even if the other server stopped midway.
pub(super) async fn pack_all<B: Backend>(pool: &Pool<B>) -> Result<u64, StoreError> {
    Ok(pass::<B>(pool, true).await? + pass::<B>(pool, false).await?)
}

async fn pass<B: Backend>(pool: &Pool<B>, skip_locked: bool) -> Result<u64, StoreError> {
    let select = select_unpacked::<B>(skip_locked);
    // Before every identity: run ids and content hashes are compared bytewise by both engines.
    let mut after = (Uuid::nil(), i32::MIN, Vec::<u8>::new(), i32::MIN);
    let mut packed = 0u64;
    loop {
        let mut tx = B::begin_write(pool).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
            .arg(after.0)
            .arg(after.1)
            .arg(&after.2[..])
            .arg(after.3)
            .fetch_all(B::on(&mut *tx))
            .await?;
        let Some(last) = rows.last() else {
            return Ok(packed);
        };
        let r = Rec::<B>(last);
        after = (
            r.col(0)?,
            r.col(1)?,
            r.col(CONTENT_HASH)?,
            r.col(OCCURRENCE)?,
        );
        for row in &rows {
            let r = Rec::<B>(row);
            let (columns, body) = match old_columns::<B>(row) {
                Ok(old) => old,
                Err(e) => {
                    // One unreadable old row makes its run unreadable, as it did before; it
                    // must not keep every other run from being served.
                    tracing::error!(error = %e, run = %r.col::<Uuid>(0)?, "cannot pack a stored step; left as it is");
                    continue;
                }
            };
            // A database packed here is one just upgraded: it has no trained dictionary yet.
            let value = packed::pack(&columns, &body, packed::Dictionary::builtin());
            sqlx::query(PACK)
                .arg(r.col::<Uuid>(0)?)
                .arg(r.col::<i32>(1)?)
                .arg(&r.col::<Vec<u8>>(CONTENT_HASH)?[..])
                .arg(&value[..])
                .arg(r.col::<i32>(OCCURRENCE)?)
                .execute(B::on(&mut *tx))
                .await?;
            packed += 1;
        }
        tx.commit().await?;
        tracing::info!(steps = packed, "packed steps stored before compact steps");
    }
}

/// A row of [`select_unpacked`] as profiler columns and body.
fn old_columns<B: Backend>(row: &B::Row) -> Result<(StepColumns, String), StoreError> {
    let r = Rec::<B>(row);
    let opt = |i: usize| -> Result<Option<String>, StoreError> {
        r.col::<Option<Vec<u8>>>(i)?.map(utf8).transpose()
    };
    let ancestry = match opt(8)? {
        Some(function_name) => Some(InvocationNode {
            function_name,
            function_id: opt(9)?.unwrap_or_default(),
            parent_name: opt(10)?,
            parent_id: opt(11)?,
        }),
        None => None,
    };
    let columns = StepColumns {
        event_type: event_type_from_code(r.col(3)?)?,
        event_timestamp: r.col(4)?,
        uuid: opt(5)?.unwrap_or_default(),
        name: opt(6)?,
        framework: r
            .col::<Option<i16>>(7)?
            .map(framework_from_code)
            .transpose()?,
        ancestry,
        prompt_tokens: r.col(12)?,
        completion_tokens: r.col(13)?,
        total_tokens: r.col(14)?,
        seconds_between_calls: r.col::<Option<i64>>(15)?.unwrap_or(0),
        text: opt(16)?,
        span_event_timestamp: r.col(17)?,
        parent_id: opt(18)?,
        cached_tokens: r.col::<Option<i64>>(19)?.unwrap_or(0),
    };
    let body = r
        .col::<Option<String>>(20)?
        .ok_or_else(|| StoreError::Corrupt("an unpacked step has no body".into()))?;
    Ok((columns, body))
}
