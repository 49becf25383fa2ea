//! Which bulk path should the PostgreSQL store use? Times the same prepared batches through
//! (a) the store's `INSERT ... SELECT FROM UNNEST($arrays) ON CONFLICT DO NOTHING` and
//! (b) `COPY ... FROM STDIN` into a temporary staging table followed by
//!     `INSERT ... SELECT ... ON CONFLICT DO NOTHING` (COPY cannot skip duplicates by itself),
//! each on a fresh database, best of three.
//!
//! ```text
//! cargo run --release --example bulk_paths -- postgres://postgres@127.0.0.1:5432/postgres [BATCHES] [REQUESTS]
//! ```

use agentprof::store::postgres::PgStore;
use agentprof::store::{NewRun, PreparedBatch, Store};
use agentprof::trace::{ParseOptions, parse_value};
use sqlx::{Connection, PgConnection};
use std::fmt::Write;
use std::time::{Duration, Instant};

fn batches(n: usize, requests: usize) -> Vec<PreparedBatch> {
    (0..n)
        .map(|b| {
            let doc =
                agentprof::synth::profiler_document_from(b * requests, requests, 500 + b as u64);
            PreparedBatch::prepare(parse_value(doc, &ParseOptions::default()).expect("valid"))
        })
        .collect()
}

fn bytea_field(out: &mut String, b: Option<&[u8]>) {
    match b {
        None => out.push_str("\\N"),
        Some(b) => {
            out.push_str("\\\\x");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

async fn fresh(admin: &str, name: &str) -> anyhow::Result<String> {
    let mut c = PgConnection::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await?;
    Ok(format!(
        "{}/{name}",
        admin.rsplit_once('/').map_or(admin, |(base, _)| base)
    ))
}

async fn unnest_path(url: &str, batches: &[PreparedBatch]) -> anyhow::Result<Duration> {
    let store = PgStore::connect(url).await?;
    let run = store
        .create_run(
            NewRun {
                name: "unnest".into(),
                profiler_config: serde_json::json!({}),
                metadata: Default::default(),
                toolkit: None,
                retention_seconds: None,
                prices: Default::default(),
            },
            None,
            None,
        )
        .await?
        .record;
    let t = Instant::now();
    for b in batches {
        store.append(run.id, b.clone(), None).await?;
    }
    Ok(t.elapsed())
}

async fn copy_path(url: &str, batches: &[PreparedBatch]) -> anyhow::Result<Duration> {
    let store = PgStore::connect(url).await?;
    let run = store
        .create_run(
            NewRun {
                name: "copy".into(),
                profiler_config: serde_json::json!({}),
                metadata: Default::default(),
                toolkit: None,
                retention_seconds: None,
                prices: Default::default(),
            },
            None,
            None,
        )
        .await?
        .record;
    let pool = store.pool().clone();
    let t = Instant::now();
    let mut seq: i64 = 0;
    for b in batches {
        let mut tx = pool.begin().await?;
        let mut numbers: Vec<i32> = b
            .requests
            .iter()
            .filter_map(|r| match r.key {
                agentprof::store::RequestKey::Number(n) => i32::try_from(n).ok(),
                agentprof::store::RequestKey::External(_) => None,
            })
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        sqlx::query("INSERT INTO requests (run_id, request_number) SELECT $1, * FROM UNNEST($2::int4[]) ON CONFLICT DO NOTHING")
            .bind(run.id)
            .bind(&numbers)
            .execute(&mut *tx)
            .await?;
        sqlx::query("CREATE TEMP TABLE staging (LIKE steps INCLUDING DEFAULTS) ON COMMIT DROP")
            .execute(&mut *tx)
            .await?;
        let mut text = String::with_capacity(4 << 20);
        for r in &b.requests {
            let agentprof::store::RequestKey::Number(n) = r.key else {
                continue;
            };
            for s in &r.steps {
                let c = &s.columns;
                let event_code = c.event_type.code();
                let _ = write!(
                    text,
                    "{}\t{n}\t{seq}\t{event_code}\t{}\t{}\t{}\t{}\t",
                    run.id,
                    agentprof::py::repr::float_repr(c.event_timestamp),
                    c.prompt_tokens,
                    c.completion_tokens,
                    c.total_tokens
                );
                match c.span_event_timestamp {
                    Some(t) => text.push_str(&agentprof::py::repr::float_repr(t)),
                    None => text.push_str("\\N"),
                }
                text.push('\t');
                match c.cached_tokens {
                    0 => text.push_str("\\N"),
                    n => {
                        let _ = write!(text, "{n}");
                    }
                }
                text.push('\t');
                bytea_field(&mut text, Some(&s.content_hash));
                text.push_str("\t1\t");
                bytea_field(&mut text, Some(&s.packed));
                text.push('\n');
                seq += 1;
            }
        }
        let mut copy = tx.copy_in_raw("COPY staging (run_id, request_number, seq, event_type, event_timestamp, prompt_tokens, completion_tokens, total_tokens, span_event_timestamp, cached_tokens, content_hash, occurrence, packed) FROM STDIN").await?;
        copy.send(text.as_bytes()).await?;
        copy.finish().await?;
        sqlx::query("INSERT INTO steps SELECT * FROM staging ON CONFLICT DO NOTHING")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE runs SET version = version + 1 WHERE id = $1")
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(t.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let admin = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let requests: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let data = batches(n, requests);
    let steps: usize = data.iter().map(PreparedBatch::step_count).sum();
    for (name, path) in [("unnest", 0), ("copy+insert", 1)] {
        let mut best = Duration::MAX;
        for attempt in 0..3 {
            let url = fresh(&admin, &format!("agentprof_bulk_{attempt}")).await?;
            let t = if path == 0 {
                unnest_path(&url, &data).await?
            } else {
                copy_path(&url, &data).await?
            };
            best = best.min(t);
        }
        println!(
            "{name:12} {steps} steps in {n} batches: best {:.3} s = {:.0} steps/s",
            best.as_secs_f64(),
            steps as f64 / best.as_secs_f64()
        );
    }
    let mut c = PgConnection::connect(&admin).await?;
    for attempt in 0..3 {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS agentprof_bulk_{attempt} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await?;
    }
    Ok(())
}
