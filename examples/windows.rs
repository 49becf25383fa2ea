//! The window benchmark (bench/windows.sh runs it): one run of live-like traffic, then what its
//! windows cost.
//!
//! 1. Posts REQUESTS synthetic requests (about 20 steps each) in gzip batches, each batch's
//!    workers starting where the previous batch's last request started, so that the run reads
//!    as one stream at about RATE requests a second.
//! 2. Asks for the whole run's `/profiling` and `/metrics` (past a small analysis budget: a 413
//!    `window-too-large` naming a window that fits), then the last five minutes' `/metrics`
//!    cold, and the other outputs of that window, timing each and reading the server's peak RSS.
//! 3. Asks for eight different five-minute windows' `/profiling` at once.
//!
//! Writes a JSON report and prints one line per figure.

mod support;

use clap::Parser;
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};
use support::Client;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Requests in the run.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Requests per batch.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Requests in flight at once (a synthetic request lasts about 2 s: 200 in flight is
    /// about 100 requests a second).
    #[arg(long, default_value_t = 200)]
    workers: usize,
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Only make the run (step 1), for benchmarks of other reads on it (bench/live.sh).
    #[arg(long)]
    ingest_only: bool,
}

fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The earliest and latest request starts of a profiler-form document.
fn starts(doc: &Value) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for item in doc.as_array().into_iter().flatten() {
        let start = item["intermediate_steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["payload"]["event_timestamp"].as_f64())
            .fold(f64::INFINITY, f64::min);
        lo = lo.min(start);
        hi = hi.max(start);
    }
    (lo, hi)
}

/// A GET, timed: status, seconds, bytes and the body when it is a problem.
async fn timed(client: &Client, path: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    let r = client
        .http
        .get(format!("{}{path}", client.base))
        .send()
        .await?;
    let status = r.status().as_u16();
    let body = r.bytes().await?;
    let seconds = started.elapsed().as_secs_f64();
    let problem = if status >= 400 {
        serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Ok(
        json!({"path": path, "status": status, "seconds": seconds, "bytes": body.len(),
              "problem": problem}),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::new(&args.base, None)?;
    let pid = args.server_pid;
    let mut report = serde_json::Map::new();

    // 1. The run.
    let run: Value = client
        .http
        .post(format!("{}/v1/runs", client.base))
        .json(&json!({"name": "windows-bench", "toolkit": "nat-1.9"}))
        .send()
        .await?
        .json()
        .await?;
    let id = run["id"].as_str().unwrap_or_default().to_owned();
    let started = Instant::now();
    let (mut t0, mut first_start, mut last_start) = (1_765_000_000.0, f64::NAN, f64::NAN);
    let mut steps = 0u64;
    for (k, first) in (0..args.requests).step_by(args.batch).enumerate() {
        let n = args.batch.min(args.requests - first);
        let doc =
            agentprof::synth::profiler_document_at(first, n, 1000 + k as u64, args.workers, t0);
        let (lo, hi) = starts(&doc);
        if k == 0 {
            first_start = lo;
        }
        last_start = hi;
        t0 = hi;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        serde_json::to_writer(&mut gz, &doc)?;
        let body = gz.finish()?;
        let r = client
            .http
            .post(format!("{}/v1/runs/{id}/steps", client.base))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
            .await?;
        let status = r.status();
        let out: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "batch {k}: {status} {out}");
        steps += out["steps"]["stored"].as_u64().unwrap_or(0);
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    let span = last_start - first_start;
    report.insert(
        "run".into(),
        json!({"requests": args.requests, "steps": steps, "ingest_seconds": ingest_seconds,
               "traffic_seconds": span, "requests_per_second": args.requests as f64 / span}),
    );
    println!(
        "run: {} requests, {steps} steps, ingested in {ingest_seconds:.0} s; {:.1} minutes of \
         traffic at {:.0} requests/s",
        args.requests,
        span / 60.0,
        args.requests as f64 / span
    );
    // Let the allocator give back what ingest freed, then start the peak afresh.
    tokio::time::sleep(Duration::from_secs(3)).await;
    report.insert(
        "rss_after_ingest_mb".into(),
        json!(support::process_mb(pid, "VmRSS:")),
    );
    reset_peak(pid);
    if args.ingest_only {
        report.insert("run_id".into(), json!(id));
        if let Some(path) = args.report {
            std::fs::File::create(path)?.write_all(&serde_json::to_vec_pretty(&report)?)?;
        }
        return Ok(());
    }

    // 2. The whole run, and the last five minutes.
    let mut reads = Vec::new();
    for path in ["profiling", "metrics"] {
        let r = timed(&client, &format!("/v1/runs/{id}/{path}")).await?;
        println!(
            "whole run /{path}: {} in {:.3} s ({})",
            r["status"],
            r["seconds"].as_f64().unwrap_or(f64::NAN),
            r["problem"]["detail"].as_str().unwrap_or("")
        );
        reads.push(r);
    }
    let from = last_start - 300.0;
    for path in [
        "metrics",
        "profiling",
        "stats",
        "timeline",
        "standardized.csv",
    ] {
        let r = timed(&client, &format!("/v1/runs/{id}/{path}?from={from}")).await?;
        println!(
            "last 5 minutes /{path} (cold): {} in {:.3} s, {} bytes",
            r["status"],
            r["seconds"].as_f64().unwrap_or(f64::NAN),
            r["bytes"]
        );
        reads.push(r);
    }
    // The window the whole run's 413 named, when it named one.
    if let Some(fits) = reads[0]["problem"]["memory"]["fits"]["from"].as_f64() {
        let r = timed(&client, &format!("/v1/runs/{id}/profiling?from={fits}")).await?;
        println!(
            "the window that fits (from {fits}, {:.1} minutes): /profiling {} in {:.3} s",
            (last_start - fits) / 60.0,
            r["status"],
            r["seconds"].as_f64().unwrap_or(f64::NAN)
        );
        reads.push(r);
    }
    let peak = support::process_mb(pid, "VmHWM:");
    println!("peak RSS over these reads: {peak:.0} MB");
    report.insert("reads".into(), json!(reads));
    report.insert("reads_peak_rss_mb".into(), json!(peak));

    // 3. Eight five-minute windows' /profiling at once.
    reset_peak(pid);
    let started = Instant::now();
    let windows: Vec<_> = (0..8)
        .map(|i| {
            let to = last_start - 300.0 * f64::from(i + 1);
            format!("/v1/runs/{id}/profiling?from={}&to={to}", to - 300.0)
        })
        .collect();
    let answers = futures::future::join_all(windows.iter().map(|p| timed(&client, p))).await;
    let answers: Vec<Value> = answers.into_iter().collect::<Result<_, _>>()?;
    let statuses: Vec<u64> = answers
        .iter()
        .filter_map(|a| a["status"].as_u64())
        .collect();
    let peak = support::process_mb(pid, "VmHWM:");
    println!(
        "eight windows' /profiling at once: statuses {statuses:?} in {:.1} s, peak RSS {peak:.0} MB",
        started.elapsed().as_secs_f64()
    );
    report.insert(
        "concurrent".into(),
        json!({"answers": answers, "seconds": started.elapsed().as_secs_f64(),
               "peak_rss_mb": peak}),
    );
    report.insert("run_id".into(), json!(id));
    report.insert(
        "window_sql".into(),
        json!(agentprof::store::WINDOW_STEPS_SQL),
    );
    if let Some(path) = args.report {
        std::fs::File::create(path)?.write_all(&serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
