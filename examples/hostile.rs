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
//! 5. `methods`: 2,000 requests with invented 8,000-character methods; the Prometheus text
//!    after them.
//! 6. `otlp`: exports of a few kilobytes of gzip holding a million empty spans or resources, and
//!    one LLM span with a 256 KiB model name and 20,000 streamed tokens.
//! 7. `metadata`: a run created with 24 MiB of metadata, listed, appended to 32 times (each
//!    append a new version the read side caches), appended to with 40 Idempotency-Keys, and six
//!    concurrent comparisons of two runs with 28 MB of evaluator scores each.
//! 8. `idle`: resident memory 10 s after the load.
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
    /// The server's data directory (the embedded store), to measure how its database grows.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
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

    memory.reset_peak().await;
    let before = memory.rss_mb();
    let phase = methods(&client, &addr, &mut checks).await?;
    let mut phase = with_peak(phase, &memory);
    let growth = memory.rss_mb() - before;
    phase["rss_growth_mb"] = json!(growth);
    checks.push(bound("methods: RSS growth", Some(growth), 64.0, "MB"));
    report.insert("methods".into(), phase);

    memory.reset_peak().await;
    let phase = otlp(&client, &mut checks).await?;
    let phase = with_peak(phase, &memory);
    checks.push(bound(
        "otlp: peak RSS",
        phase["peak_rss_mb"].as_f64(),
        MAX_PEAK_RSS_MB,
        "MB",
    ));
    report.insert("otlp".into(), phase);

    memory.reset_peak().await;
    let phase = metadata(&client, &memory, args.data_dir.as_deref(), &mut checks).await?;
    let phase = with_peak(phase, &memory);
    checks.push(bound(
        "metadata: peak RSS",
        phase["peak_rss_mb"].as_f64(),
        MAX_PEAK_RSS_MB,
        "MB",
    ));
    report.insert("metadata".into(), phase);

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

/// Invented HTTP methods: each would have been a label value of the request metrics.
async fn methods(client: &Client, addr: &str, checks: &mut Vec<Check>) -> anyhow::Result<Value> {
    let n = 2_000;
    let started = Instant::now();
    for i in 0..n {
        let mut socket = TcpStream::connect(addr).await?;
        let request = format!(
            "X{i}{} /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "M".repeat(8_000)
        );
        socket.write_all(request.as_bytes()).await?;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut sink)).await;
    }
    let scrape = client
        .req(reqwest::Method::GET, "/metrics")
        .send()
        .await?
        .bytes()
        .await?
        .len();
    let mb = scrape as f64 / 1e6;
    checks.push(bound("methods: /metrics size", Some(mb), 1.0, "MB"));
    Ok(json!({"requests": n, "seconds": started.elapsed().as_secs_f64(), "metrics_bytes": scrape}))
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

/// OTLP exports that are small on the wire and large once decoded or mapped.
async fn otlp(client: &Client, checks: &mut Vec<Check>) -> anyhow::Result<Value> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
    use prost::Message;
    let kv = |k: &str, v: String| KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
    };
    let scope = |spans: Vec<Span>| ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut llm = Span {
        trace_id: vec![7; 16],
        span_id: vec![1; 8],
        name: "llm".to_owned(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        attributes: vec![
            kv("openinference.span.kind", "LLM".to_owned()),
            kv("llm.model_name", "m".repeat(256 * 1024)),
        ],
        ..Default::default()
    };
    llm.events = (0..20_000)
        .map(|i| Event {
            time_unix_nano: 1_700_000_000_000_000_000 + i,
            name: "new_token".to_owned(),
            attributes: vec![kv("chunk", "t".to_owned())],
            dropped_attributes_count: 0,
        })
        .collect();
    let exports = [
        (
            "a million empty spans",
            ExportTraceServiceRequest {
                resource_spans: vec![scope(vec![Span::default(); 1_000_000])],
            },
        ),
        (
            "a million empty resources",
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans::default(); 1_000_000],
            },
        ),
        (
            "20,000 tokens of a 256 KiB model",
            ExportTraceServiceRequest {
                resource_spans: vec![scope(vec![llm])],
            },
        ),
    ];
    let mut out = serde_json::Map::new();
    for (what, export) in exports {
        let body = gzip(&export.encode_to_vec())?;
        drop(export);
        let started = Instant::now();
        let r = client
            .req(reqwest::Method::POST, "/v1/traces")
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(body.clone())
            .send()
            .await?;
        let status = r.status().as_u16();
        checks.push(expect(
            &format!("otlp: {what} refused"),
            status == 413,
            format!("{status} for {} bytes of gzip", body.len()),
        ));
        out.insert(
            what.to_owned(),
            json!({"gzip_bytes": body.len(), "status": status, "seconds": started.elapsed().as_secs_f64()}),
        );
    }
    Ok(Value::Object(out))
}

/// A run's metadata, large: what creating, listing, versioning, keying and comparing it cost.
async fn metadata(
    client: &Client,
    memory: &Memory,
    data_dir: Option<&std::path::Path>,
    checks: &mut Vec<Check>,
) -> anyhow::Result<Value> {
    let post = |path: String, body: String, key: Option<String>| async move {
        let mut req = client
            .req(reqwest::Method::POST, &path)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let r = req.send().await?;
        let status = r.status();
        let json: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{path}: {status} {json}");
        Ok::<Value, anyhow::Error>(json)
    };
    let step = |i: usize| json!([[{"payload": {"event_type": "LLM_END", "event_timestamp": i, "UUID": format!("u{i}"), "name": "m"}}]]);
    // 24 MiB of small values: the shape that cost most as parsed values.
    let blob: Vec<u8> = vec![0; 12 << 20];
    let started = Instant::now();
    let created = post(
        "/v1/runs".to_owned(),
        json!({"name": "hostile: metadata", "metadata": {"blob": blob}}).to_string(),
        None,
    )
    .await?;
    let create_peak = memory.peak_mb();
    let run = created["id"].as_str().unwrap_or_default().to_owned();
    let list = client
        .req(reqwest::Method::GET, "/v1/runs?limit=1")
        .send()
        .await?
        .bytes()
        .await?
        .len();
    let db_before = data_dir.map(dir_size);
    for i in 0..32 {
        post(format!("/v1/runs/{run}/steps"), step(i).to_string(), None).await?;
        client
            .req(reqwest::Method::GET, &format!("/v1/runs/{run}"))
            .send()
            .await?
            .bytes()
            .await?;
    }
    for i in 0..40 {
        post(
            format!("/v1/runs/{run}/steps"),
            step(100 + i).to_string(),
            Some(format!("hostile-{i}")),
        )
        .await?;
    }
    let db_growth = data_dir
        .map(dir_size)
        .zip(db_before)
        .map(|(a, b)| (a - b) / 1e6);
    if let Some(growth) = db_growth {
        checks.push(bound(
            "metadata: database growth over 72 appends",
            Some(growth),
            // SQLite rewrites the run's row, metadata included, once per append; its freed pages are
            // reused, so the file grows by about one copy of the metadata, not 72.
            50.0,
            "MB",
        ));
    }
    // Two runs with 28 MB of evaluator scores each, compared six times at once.
    let items: Vec<Value> = (0..500_000)
        .map(|i| json!({"request": i, "scores": {"accuracy": (i % 3) as f64 / 2.0}}))
        .collect();
    let scored = json!({"eval": {"items": items}}).to_string();
    let mut runs = Vec::new();
    for name in ["scores a", "scores b"] {
        let body = format!(
            r#"{{"name": "{name}", "metadata": {scored}, "requests": {}}}"#,
            step(0)
        );
        runs.push(post("/v1/runs".to_owned(), body, None).await?["id"].clone());
    }
    let compare_started = Instant::now();
    let body = json!({"baseline": runs[0], "candidate": runs[1]}).to_string();
    let compares = futures::future::join_all(
        (0..6).map(|_| post("/v1/compare".to_owned(), body.clone(), None)),
    )
    .await;
    let compared = compares.iter().filter(|r| r.is_ok()).count();
    checks.push(expect(
        "metadata: six concurrent comparisons answered",
        compared == 6,
        format!("{compared} of 6"),
    ));
    Ok(json!({
        "create_seconds": started.elapsed().as_secs_f64(),
        "create_peak_rss_mb": create_peak,
        "list_bytes": list,
        "database_growth_mb": db_growth,
        "compare_seconds": compare_started.elapsed().as_secs_f64(),
    }))
}

/// The database file's size (its write-ahead log, which SQLite reuses after each checkpoint,
/// is left out: it grows by one write's worth, not by what is kept).
fn dir_size(dir: &std::path::Path) -> f64 {
    std::fs::metadata(dir.join("agentprof.db")).map_or(f64::NAN, |m| m.len() as f64)
}
