//! HTTP load tool for a running agentprof server.
//!
//! ```text
//! cargo run --release --example loadtest -- --base http://127.0.0.1:8080 ingest --batches 10 --requests 100 --clients 2
//! cargo run --release --example loadtest -- --base http://127.0.0.1:8080 metrics --requests 1000 --clients 32 --seconds 10
//! ```
//!
//! `ingest` posts seeded synthetic batches (profiler form, distinct request numbers) from
//! concurrent clients into one new run and reports steps per second; `--ndjson FILE` also writes
//! the same steps, one JSON object per line, for the `COPY` floor in `bench/ingest.sh`.
//! `metrics` loads a run, times the first (cold) `GET /metrics`, then hammers the cached one from
//! many clients and reports latency percentiles; it also streams `/requests` once. Every
//! scenario prints a JSON report on stdout.

mod support;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Client, latency_summary};

#[derive(Parser)]
struct Args {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// API key (a write key), if the server has keys.
    #[arg(long, env = "AGENTPROF_KEY")]
    key: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Concurrent batch ingest into one run.
    Ingest {
        #[arg(long, default_value_t = 10)]
        batches: usize,
        /// Requests per batch (about 20 steps each).
        #[arg(long, default_value_t = 100)]
        requests: usize,
        #[arg(long, default_value_t = 2)]
        clients: usize,
        /// Also write the posted steps as NDJSON (one step per line) to this file.
        #[arg(long)]
        ndjson: Option<std::path::PathBuf>,
    },
    /// Cold and cached GET /metrics latency, and /requests streaming.
    Metrics {
        /// Requests in the run (about 20 steps each).
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Arc::new(Client::new(&args.base, args.key)?);
    let report = match args.scenario {
        Scenario::Ingest {
            batches,
            requests,
            clients,
            ndjson,
        } => ingest(client, batches, requests, clients, ndjson).await?,
        Scenario::Metrics {
            requests,
            clients,
            seconds,
        } => metrics(client, requests, clients, seconds).await?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn ingest(
    client: Arc<Client>,
    batches: usize,
    requests: usize,
    clients: usize,
    ndjson: Option<std::path::PathBuf>,
) -> anyhow::Result<Value> {
    // Prepare every body before the clock starts.
    let bodies: Vec<Vec<u8>> = (0..batches)
        .map(|b| {
            serde_json::to_vec(&agentprof::synth::profiler_document_from(
                b * requests,
                requests,
                1000 + b as u64,
            ))
        })
        .collect::<Result<_, _>>()?;
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    if let Some(path) = ndjson {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for body in &bodies {
            let doc: Value = serde_json::from_slice(body)?;
            for req in doc.as_array().into_iter().flatten() {
                for step in req["intermediate_steps"].as_array().into_iter().flatten() {
                    serde_json::to_writer(&mut out, step)?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    let run = client.create_run("loadtest ingest").await?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, bodies, next, run) =
            (client.clone(), bodies.clone(), next.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut stored = 0i64;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let r = client.post_batch(&run, body.clone()).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                stored += r["steps"]["stored"].as_i64().unwrap_or(0);
            }
            Ok::<_, anyhow::Error>((latencies, stored))
        }));
    }
    let mut latencies = Vec::new();
    let mut stored = 0;
    for t in tasks {
        let (l, s) = t.await??;
        latencies.extend(l);
        stored += s;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(json!({
        "scenario": "ingest", "run_id": run, "batches": batches, "requests_per_batch": requests, "clients": clients,
        "steps_stored": stored, "bytes": bytes, "seconds": elapsed,
        "steps_per_second": stored as f64 / elapsed, "megabytes_per_second": bytes as f64 / 1e6 / elapsed,
        "batch_latency": latency_summary(latencies),
    }))
}

async fn metrics(
    client: Arc<Client>,
    requests: usize,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Value> {
    let run = client.create_run("loadtest metrics").await?;
    let per_batch = 250;
    let mut stored = 0;
    for b in 0..requests.div_ceil(per_batch) {
        let n = per_batch.min(requests - b * per_batch);
        let body = serde_json::to_vec(&agentprof::synth::profiler_document_from(
            b * per_batch,
            n,
            7 + b as u64,
        ))?;
        stored += client.post_batch(&run, body).await?["steps"]["stored"]
            .as_i64()
            .unwrap_or(0);
    }
    let path = format!("/v1/runs/{run}/metrics");
    let t = Instant::now();
    let cold = client
        .req(reqwest::Method::GET, &path)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let cold_ms = t.elapsed().as_secs_f64() * 1000.0;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, path) = (client.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut l = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client
                    .req(reqwest::Method::GET, &path)
                    .send()
                    .await?
                    .error_for_status()?;
                let _ = r.bytes().await?;
                l.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(l)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let total = all.len();
    let t = Instant::now();
    let mut streamed = 0usize;
    let mut resp = client
        .req(reqwest::Method::GET, &format!("/v1/runs/{run}/requests"))
        .send()
        .await?
        .error_for_status()?;
    while let Some(chunk) = resp.chunk().await? {
        streamed += chunk.len();
    }
    let stream_s = t.elapsed().as_secs_f64();
    Ok(json!({
        "scenario": "metrics", "run_id": run, "requests": requests, "steps": stored, "metrics_bytes": cold.len(),
        "cold_ms": cold_ms, "clients": clients, "seconds": seconds,
        "cached": latency_summary(all), "cached_requests_per_second": total as f64 / seconds as f64,
        "requests_stream": {"bytes": streamed, "seconds": stream_s, "megabytes_per_second": streamed as f64 / 1e6 / stream_s},
    }))
}
