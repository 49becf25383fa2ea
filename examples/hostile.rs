//! The hostile-load check: what an attacker with no key can do to a server with default limits,
//! measured against the bounds the server promises (docs/limits.md).
//!
//! ```text
//! cargo run --release --example hostile -- --base http://127.0.0.1:8080 --server-pid PID
//! ```
//!
//! Phases, one after another, each with its own peak RSS (the kernel's high-water mark, reset
//! before the phase):
//! 1. `connections`: how long a socket that sends nothing and one that trickles a header a byte a
//!    second stay open; then 1,100 sockets that send nothing, and `/healthz` asked meanwhile.
//! 2. `bomb`: gzip bodies of minimal steps that inflate to just under the default inflated limit
//!    (millions of steps), more at once than the server ingests at once; the server must refuse
//!    them, store nothing, and keep answering.
//! 3. `nested`: 5,000 and 20,000 calls nested in one request; size and time of `/profiling`.
//! 4. `concurrent`: 16 realistic batches of about 48 MB posted at once.
//! 5. `idle`: resident memory 10 s after the load.
//!
//! Prints a JSON report and exits 1 when any bound is broken.

mod support;

use clap::Parser;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Client, latency_summary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// Server base URL (http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// API key (a write key), if the server has keys.
    #[arg(long, env = "AGENTPROF_KEY")]
    key: Option<String>,
    /// The server's process id, to read its memory from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Also write the report here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Bytes the bomb inflates to (default: just under the server's default inflated limit).
    #[arg(long, default_value_t = 255 * 1024 * 1024)]
    bomb_bytes: usize,
    /// Bombs posted at once: the server's default ingest concurrency, and one more to wait.
    #[arg(long, default_value_t = 3)]
    bombs: usize,
    /// Idle sockets in the connection flood.
    #[arg(long, default_value_t = 1100)]
    flood: usize,
}

/// The bounds, from the issue that asked for them.
const MAX_PEAK_RSS_MB: f64 = 1536.0;
const MAX_PROFILING_MB: f64 = 64.0;
const MAX_PROFILING_SECONDS: f64 = 10.0;
const MAX_OPEN_SECONDS: f64 = 30.0;
const MAX_IDLE_RSS_MB: f64 = 768.0;

/// Reads the server's memory: `VmRSS` (now) and `VmHWM` (peak) in MB.
struct Memory {
    pid: u32,
}

impl Memory {
    fn field(&self, name: &str) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    fn rss_mb(&self) -> f64 {
        self.field("VmRSS:")
    }

    fn peak_mb(&self) -> f64 {
        self.field("VmHWM:")
    }

    /// Starts a new peak (`clear_refs` 5 resets the high-water mark to the current RSS), after a
    /// pause in which the allocator can return what the previous phase freed.
    async fn reset_peak(&self) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }
}

struct Check {
    name: String,
    ok: bool,
    detail: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Arc::new(Client::new(&args.base, args.key.clone())?);
    let memory = Memory {
        pid: args.server_pid,
    };
    let addr = args
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut checks = Vec::new();
    let mut report = serde_json::Map::new();
    report.insert("rss_at_start_mb".into(), json!(memory.rss_mb()));

    memory.reset_peak().await;
    let phase = connections(&client, &addr, args.flood, &mut checks).await?;
    report.insert("connections".into(), with_peak(phase, &memory));

    memory.reset_peak().await;
    let phase = bomb(&client, args.bomb_bytes, args.bombs, &mut checks).await?;
    let phase = with_peak(phase, &memory);
    checks.push(bound(
        "bomb: peak RSS",
        phase["peak_rss_mb"].as_f64(),
        MAX_PEAK_RSS_MB,
        "MB",
    ));
    report.insert("bomb".into(), phase);

    memory.reset_peak().await;
    let phase = nested(&client, &mut checks).await?;
    report.insert("nested".into(), with_peak(phase, &memory));

    memory.reset_peak().await;
    let phase = concurrent(&client, &mut checks).await?;
    let phase = with_peak(phase, &memory);
    checks.push(bound(
        "concurrent: peak RSS",
        phase["peak_rss_mb"].as_f64(),
        MAX_PEAK_RSS_MB,
        "MB",
    ));
    report.insert("concurrent".into(), phase);

    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = memory.rss_mb();
    checks.push(bound(
        "idle RSS 10 s after the load",
        Some(idle),
        MAX_IDLE_RSS_MB,
        "MB",
    ));
    report.insert("idle_rss_mb".into(), json!(idle));

    let failed = checks.iter().filter(|c| !c.ok).count();
    report.insert(
        "checks".into(),
        checks
            .iter()
            .map(|c| json!({"check": c.name, "ok": c.ok, "measured": c.detail}))
            .collect(),
    );
    let report = Value::Object(report);
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.report {
        std::fs::write(path, &text)?;
    }
    for c in &checks {
        eprintln!(
            "{} {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", checks.len());
    }
    Ok(())
}

fn with_peak(mut phase: Value, memory: &Memory) -> Value {
    phase["peak_rss_mb"] = json!(memory.peak_mb());
    phase
}

fn bound(name: &str, measured: Option<f64>, max: f64, unit: &str) -> Check {
    let value = measured.unwrap_or(f64::NAN);
    Check {
        name: name.to_owned(),
        ok: value < max,
        detail: format!("{value:.1} {unit} (bound {max} {unit})"),
    }
}

fn expect(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
    }
}

/// Seconds until the server closes `socket` (EOF or reset), or `None` after `limit`.
async fn open_for(mut socket: TcpStream, limit: Duration) -> Option<f64> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        while let Ok(n) = socket.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .ok()
    .map(|()| start.elapsed().as_secs_f64())
}

async fn connections(
    client: &Client,
    addr: &str,
    flood: usize,
    checks: &mut Vec<Check>,
) -> anyhow::Result<Value> {
    // The flood needs more descriptors than a shell's default soft limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let limit = Duration::from_secs(60);
    // The idle and trickling sockets first, alone: in the flood they would be evicted for newer
    // sockets at once, which says nothing about the deadline.
    let idle = tokio::spawn(open_for(TcpStream::connect(addr).await?, limit));
    let mut trickler = TcpStream::connect(addr).await?;
    let trickle = tokio::spawn(async move {
        let start = Instant::now();
        let header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .chain([b'a'; 100].iter());
        for byte in header {
            if trickler.write_all(&[*byte]).await.is_err() {
                return Some(start.elapsed().as_secs_f64());
            }
            let mut probe = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(1), trickler.read(&mut probe));
            if let Ok(Ok(0) | Err(_)) = read.await {
                return Some(start.elapsed().as_secs_f64());
            }
            if start.elapsed() > limit {
                break;
            }
        }
        None
    });
    let idle = idle.await?;
    let trickle = trickle.await?;
    let mut sockets = Vec::new();
    let mut refused = 0;
    for _ in 0..flood {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => sockets.push(s),
            _ => refused += 1,
        }
    }
    let mut healthz = Vec::new();
    let mut healthy = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = client
            .req(reqwest::Method::GET, "/healthz")
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        healthz.push(t.elapsed().as_secs_f64() * 1000.0);
        healthy += usize::from(r.is_ok_and(|r| r.status() == 200));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(sockets);
    checks.push(expect(
        "connections: /healthz answers with the flood open",
        healthy == 5,
        format!("{healthy} of 5 answered 200"),
    ));
    checks.push(bound(
        "connections: idle socket open",
        idle,
        MAX_OPEN_SECONDS,
        "s",
    ));
    checks.push(bound(
        "connections: trickling socket open",
        trickle,
        MAX_OPEN_SECONDS,
        "s",
    ));
    Ok(json!({
        "flood_sockets": flood, "flood_connects_failed": refused,
        "healthz_during_flood": latency_summary(healthz),
        "idle_socket_closed_after_s": idle, "trickling_socket_closed_after_s": trickle,
    }))
}

async fn bomb(
    client: &Client,
    inflated: usize,
    bombs: usize,
    checks: &mut Vec<Check>,
) -> anyhow::Result<Value> {
    let step = br#"{"payload":{"event_type":"LLM_START"}}"#;
    let count = (inflated - 4) / (step.len() + 1);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"[[")?;
    let chunk: Vec<u8> = std::iter::repeat_n(&step[..], 4096)
        .flat_map(|s| s.iter().copied().chain([b',']))
        .collect();
    let mut left = count;
    while left > 1 {
        let n = (left - 1).min(4096);
        gz.write_all(&chunk[..n * (step.len() + 1)])?;
        left -= n;
    }
    gz.write_all(step)?;
    gz.write_all(b"]]")?;
    let body = gz.finish()?;

    let mut runs = Vec::new();
    for _ in 0..bombs {
        runs.push(client.create_run("hostile: gzip bomb").await?);
    }
    let started = Instant::now();
    let posts: Vec<_> = runs
        .iter()
        .map(|run| {
            tokio::spawn(
                client
                    .req(reqwest::Method::POST, &format!("/v1/runs/{run}/steps"))
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(body.clone())
                    .send(),
            )
        })
        .collect();
    // Meanwhile the server must keep answering.
    let mut healthz = Vec::new();
    let mut unanswered = 0;
    while !posts.iter().all(|p| p.is_finished()) {
        let t = Instant::now();
        let ok = client
            .req(reqwest::Method::GET, "/healthz")
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        healthz.push(t.elapsed().as_secs_f64() * 1000.0);
        unanswered += usize::from(!ok);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut statuses = Vec::new();
    let mut problem = Value::Null;
    for post in posts {
        let response = post.await??;
        statuses.push(response.status().as_u16());
        problem = response.json().await.unwrap_or(Value::Null);
    }
    let mut stored = 0;
    for run in &runs {
        let run_after: Value = client
            .req(reqwest::Method::GET, &format!("/v1/runs/{run}"))
            .send()
            .await?
            .json()
            .await?;
        stored += run_after["step_count"].as_i64().unwrap_or(-1);
    }
    checks.push(expect(
        "bomb: refused with a 4xx",
        statuses.iter().all(|s| (400..500).contains(s)),
        format!("{statuses:?} {}", problem["code"]),
    ));
    checks.push(expect(
        "bomb: nothing stored",
        stored == 0,
        format!("{stored} steps"),
    ));
    checks.push(expect(
        "bomb: /healthz answered throughout",
        unanswered == 0,
        format!("{} of {} probes unanswered", unanswered, healthz.len()),
    ));
    Ok(json!({
        "bombs": bombs, "compressed_bytes": body.len(), "inflated_bytes": inflated, "steps": count,
        "statuses": statuses, "problem": problem, "seconds": seconds, "steps_stored": stored,
        "healthz_during": latency_summary(healthz),
    }))
}

/// One request of `depth` TOOL calls, each inside the previous one.
fn nested_run(depth: usize) -> Value {
    let mut steps = Vec::with_capacity(2 * depth);
    for i in 0..depth {
        steps.push(
            json!({"payload": {"event_type": "TOOL_START", "event_timestamp": i as f64,
                                      "UUID": format!("call-{i}"), "name": "tool"}}),
        );
    }
    for i in (0..depth).rev() {
        steps.push(
            json!({"payload": {"event_type": "TOOL_END", "event_timestamp": (2 * depth - i) as f64,
                                      "UUID": format!("call-{i}"), "name": "tool"}}),
        );
    }
    json!({"name": format!("hostile: {depth} nested calls"),
           "requests": [{"request_number": 0, "intermediate_steps": steps}]})
}

async fn nested(client: &Client, checks: &mut Vec<Check>) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    for depth in [5_000, 20_000] {
        let body = serde_json::to_vec(&nested_run(depth))?;
        let created: Value = client
            .req(reqwest::Method::POST, "/v1/runs")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let run = created["id"].as_str().unwrap_or_default().to_owned();
        let mut sizes = serde_json::Map::new();
        for output in ["profiling", "report"] {
            let t = Instant::now();
            let r = client
                .req(reqwest::Method::GET, &format!("/v1/runs/{run}/{output}"))
                .timeout(Duration::from_secs(120))
                .send()
                .await?
                .error_for_status()?;
            let bytes = r.bytes().await?.len();
            let seconds = t.elapsed().as_secs_f64();
            let mb = bytes as f64 / 1e6;
            checks.push(bound(
                &format!("nested {depth}: /{output} size"),
                Some(mb),
                MAX_PROFILING_MB,
                "MB",
            ));
            checks.push(bound(
                &format!("nested {depth}: /{output} time"),
                Some(seconds),
                MAX_PROFILING_SECONDS,
                "s",
            ));
            sizes.insert(
                output.to_owned(),
                json!({"bytes": bytes, "seconds": seconds}),
            );
        }
        out.push(json!({"depth": depth, "body_bytes": body.len(), "outputs": sizes}));
    }
    Ok(json!({"runs": out}))
}

async fn concurrent(client: &Arc<Client>, checks: &mut Vec<Check>) -> anyhow::Result<Value> {
    // About 48 MB of realistic steps per batch.
    let body = Arc::new(serde_json::to_vec(&agentprof::synth::profiler_document(
        2_900, 48,
    ))?);
    let mut runs = Vec::new();
    for i in 0..16 {
        runs.push(
            client
                .create_run(&format!("hostile: concurrent {i}"))
                .await?,
        );
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for run in runs {
        let (client, body) = (client.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .req(reqwest::Method::POST, &format!("/v1/runs/{run}/steps"))
                .header("content-type", "application/json")
                .body(body.to_vec())
                .timeout(Duration::from_secs(300))
                .send()
                .await?;
            Ok::<u16, anyhow::Error>(r.status().as_u16())
        }));
    }
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    for t in tasks {
        *statuses.entry(t.await??).or_default() += 1;
    }
    let unexpected: usize = statuses
        .iter()
        .filter(|(s, _)| !matches!(s, 200 | 201 | 503))
        .map(|(_, n)| n)
        .sum();
    checks.push(expect(
        "concurrent: every batch stored or told to retry (503)",
        unexpected == 0,
        format!("{statuses:?}"),
    ));
    Ok(json!({
        "batches": 16, "batch_bytes": body.len(), "seconds": started.elapsed().as_secs_f64(),
        "statuses": statuses,
    }))
}
