//! HTTP load tool for a running agentprof server.
//!
//! ```text
//! cargo run --release --example loadtest -- --base http://127.0.0.1:8080 ingest --batches 10 --requests 100 --clients 2
//! cargo run --release --example loadtest -- --base http://127.0.0.1:8080 metrics --requests 1000 --clients 32 --seconds 10
//! cargo run --release --example loadtest -- --base http://127.0.0.1:8080 otlp --exports 100 --spans 512 --clients 2
//! ```
//!
//! `ingest` posts seeded synthetic batches (profiler form, distinct request numbers) from
//! concurrent clients into one new run and reports steps per second; `--ndjson FILE` also writes
//! the same steps, one JSON object per line, for the `COPY` floor in `bench/ingest.sh`.
//! `metrics` loads a run, times the first (cold) `GET /metrics`, then hammers the cached one from
//! many clients and reports latency percentiles; it also streams `/requests` once. `otlp` turns
//! the same synthetic calls into OpenInference spans and posts them as OTLP/protobuf exports of
//! `--spans` spans to `/v1/traces`, reporting spans per second (`--ndjson` writes the steps they
//! become, for the floor). Every scenario prints a JSON report on stdout.

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
    /// OTLP/protobuf exports of OpenInference spans to /v1/traces.
    Otlp {
        #[arg(long, default_value_t = 100)]
        exports: usize,
        /// Spans per export (the OpenTelemetry SDKs' default batch is 512).
        #[arg(long, default_value_t = 512)]
        spans: usize,
        #[arg(long, default_value_t = 2)]
        clients: usize,
        /// Also write the steps the spans become as NDJSON, for the COPY floor.
        #[arg(long)]
        ndjson: Option<std::path::PathBuf>,
        /// Send the timed exports over OTLP/gRPC to this address (host:port) instead of HTTP.
        #[arg(long)]
        grpc: Option<String>,
    },
    /// A live service: OTLP exports at a steady rate with span times of now, for `--seconds`;
    /// at `--sweep-at` seconds the run's retention is set to `--retention` seconds, so that
    /// the server's sweep deletes the oldest traffic while exports go on. Reports the export
    /// latency per minute and around the sweep, and the server's peak RSS.
    Live {
        #[arg(long, default_value_t = 1800)]
        seconds: u64,
        /// Steps a second (two per span).
        #[arg(long, default_value_t = 1000)]
        steps_per_second: usize,
        #[arg(long, default_value_t = 100)]
        spans: usize,
        #[arg(long, default_value_t = 1200)]
        sweep_at: u64,
        #[arg(long, default_value_t = 600)]
        retention: i64,
        /// The server's process id, for its RSS.
        #[arg(long)]
        server_pid: Option<u32>,
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
        Scenario::Otlp {
            exports,
            spans,
            clients,
            ndjson,
            grpc,
        } => otlp(client, exports, spans, clients, ndjson, grpc).await?,
        Scenario::Live {
            seconds,
            steps_per_second,
            spans,
            sweep_at,
            retention,
            server_pid,
        } => {
            let rate = Rate {
                seconds,
                spans_per_second: steps_per_second.div_ceil(2),
                per_export: spans,
            };
            live(client, rate, sweep_at, retention, server_pid).await?
        }
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
    let (latencies, stored, elapsed) = drive(bodies, clients, {
        let (client, run) = (client.clone(), run.clone());
        move |body| {
            let (client, run) = (client.clone(), run.clone());
            async move {
                let r = client.post_batch(&run, body).await?;
                Ok(r["steps"]["stored"].as_i64().unwrap_or(0))
            }
        }
    })
    .await?;
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

/// Synthetic calls as OTLP exports: each START/END pair of the synthetic steps becomes one span
/// with OpenInference attributes, a request one trace. Returns the protobuf bodies and the
/// number of spans.
fn kv(
    key: &str,
    value: opentelemetry_proto::tonic::common::v1::any_value::Value,
) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn otlp_exports(exports: usize, per_export: usize) -> (Vec<Vec<u8>>, usize) {
    let spans = otlp_spans(exports * per_export);
    let total = spans.len();
    let mut bodies = Vec::new();
    let mut rest = spans.into_iter();
    loop {
        let chunk: Vec<Span> = rest.by_ref().take(per_export).collect();
        if chunk.is_empty() {
            break;
        }
        bodies.push(export_body(chunk));
    }
    (bodies, total)
}

use opentelemetry_proto::tonic::trace::v1::Span;

/// One OTLP/protobuf export of `spans` from the service "loadtest".
fn export_body(spans: Vec<Span>) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    use prost::Message;
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("loadtest".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

/// `count` OpenInference spans made from the synthetic runs' calls, each trace a request.
fn otlp_spans(count: usize) -> Vec<Span> {
    use opentelemetry_proto::tonic::common::v1::any_value;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut spans: Vec<Span> = Vec::new();
    let mut seed = 0u64;
    while spans.len() < count {
        let doc = agentprof::synth::profiler_document_from(seed as usize * 50, 50, 5000 + seed);
        for (r, req) in doc.as_array().into_iter().flatten().enumerate() {
            let steps = req["intermediate_steps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(seed + 1).to_be_bytes());
            trace_id[8..].copy_from_slice(&(r as u64 + 1).to_be_bytes());
            let mut starts: std::collections::HashMap<String, &Value> = Default::default();
            for step in &steps {
                let p = &step["payload"];
                let et = p["event_type"].as_str().unwrap_or("");
                let uuid = p["UUID"].as_str().unwrap_or("").to_owned();
                if et.ends_with("_START") {
                    starts.insert(uuid, step);
                    continue;
                }
                if !et.ends_with("_END") {
                    continue;
                }
                let Some(start) = starts.remove(&uuid) else {
                    continue;
                };
                let kind = match et {
                    "LLM_END" => "LLM",
                    "TOOL_END" => "TOOL",
                    _ => "CHAIN",
                };
                let ns = |t: &Value| (t.as_f64().unwrap_or(0.0) * 1e9) as u64;
                let mut attributes = vec![kv(
                    "openinference.span.kind",
                    any_value::Value::StringValue(kind.into()),
                )];
                let name = p["name"].as_str().unwrap_or("call").to_owned();
                if kind == "LLM" {
                    attributes.push(kv(
                        "llm.model_name",
                        any_value::Value::StringValue(name.clone()),
                    ));
                    let usage = &p["usage_info"]["token_usage"];
                    for (field, key) in [
                        ("prompt_tokens", "llm.token_count.prompt"),
                        ("completion_tokens", "llm.token_count.completion"),
                        ("total_tokens", "llm.token_count.total"),
                    ] {
                        attributes.push(kv(
                            key,
                            any_value::Value::IntValue(usage[field].as_i64().unwrap_or(0)),
                        ));
                    }
                }
                if let Some(input) = start["payload"]["data"]
                    .get("input")
                    .filter(|v| !v.is_null())
                {
                    attributes.push(kv(
                        "input.value",
                        any_value::Value::StringValue(text(input)),
                    ));
                }
                if let Some(output) = p["data"].get("output").filter(|v| !v.is_null()) {
                    attributes.push(kv(
                        "output.value",
                        any_value::Value::StringValue(text(output)),
                    ));
                }
                let id = spans.len() as u64 + 1;
                spans.push(Span {
                    trace_id: trace_id.to_vec(),
                    span_id: id.to_be_bytes().to_vec(),
                    name,
                    kind: 1,
                    start_time_unix_nano: ns(&start["payload"]["event_timestamp"]),
                    end_time_unix_nano: ns(&p["event_timestamp"]),
                    attributes,
                    ..Default::default()
                });
            }
        }
        seed += 1;
    }
    spans.truncate(count);
    spans
}

async fn otlp(
    client: Arc<Client>,
    exports: usize,
    per_export: usize,
    clients: usize,
    ndjson: Option<std::path::PathBuf>,
    grpc: Option<String>,
) -> anyhow::Result<Value> {
    let (bodies, spans) = otlp_exports(exports, per_export);
    let channel = match &grpc {
        Some(addr) => Some(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        ),
        None => None,
    };
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let run = client.create_run("loadtest otlp").await?;
    if let Some(path) = &ndjson {
        // The floor's input: the steps these spans become, as the server maps them (posted
        // once to a scratch run and read back).
        let scratch = client.create_run("loadtest otlp floor").await?;
        for body in &bodies {
            client.post_otlp(&scratch, body.clone()).await?;
        }
        let doc: Value = client
            .req(
                reqwest::Method::GET,
                &format!("/v1/runs/{scratch}/requests"),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for req in doc.as_array().into_iter().flatten() {
            for step in req["intermediate_steps"].as_array().into_iter().flatten() {
                serde_json::to_writer(&mut out, step)?;
                out.write_all(b"\n")?;
            }
        }
        client
            .req(reqwest::Method::DELETE, &format!("/v1/runs/{scratch}"))
            .send()
            .await?
            .error_for_status()?;
    }
    let exports = bodies.len();
    let (latencies, retries, elapsed) = drive(bodies, clients, {
        let (client, run) = (client.clone(), run.clone());
        move |body| {
            let (client, run, channel) = (client.clone(), run.clone(), channel.clone());
            async move {
                // A sender faster than the database gets 503 + Retry-After (over gRPC,
                // UNAVAILABLE): wait and resend, as OTLP exporters do.
                let mut retries = 0;
                loop {
                    let busy = match &channel {
                        Some(channel) => export_grpc(channel, &run, body.clone()).await?,
                        None => client.post_otlp(&run, body.clone()).await?.is_some(),
                    };
                    if !busy {
                        break;
                    }
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(retries)
            }
        }
    })
    .await?;
    let view: Value = client
        .req(reqwest::Method::GET, &format!("/v1/runs/{run}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(json!({
        "scenario": "otlp", "transport": if grpc.is_some() { "grpc" } else { "http" }, "run_id": run, "exports": exports, "spans_per_export": per_export, "clients": clients,
        "spans": spans, "steps_stored": view["step_count"], "bytes": bytes, "seconds": elapsed,
        "spans_per_second": spans as f64 / elapsed, "megabytes_per_second": bytes as f64 / 1e6 / elapsed,
        "busy_retries": retries, "export_latency": latency_summary(latencies),
    }))
}

/// One OTLP/gRPC export of `body` into `run`; true when the server was busy (UNAVAILABLE).
async fn export_grpc(
    channel: &tonic::transport::Channel,
    run: &str,
    body: Vec<u8>,
) -> anyhow::Result<bool> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("x-agentprof-run-id", run.parse()?);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        agentprof::api::otlp_grpc::EXPORT_PATH,
    );
    match grpc
        .unary(request, path, agentprof::api::otlp_grpc::RawCodec)
        .await
    {
        Ok(_) => Ok(false),
        Err(s) if s.code() == tonic::Code::Unavailable => Ok(true),
        Err(s) => Err(anyhow::anyhow!("gRPC export failed: {s:?}")),
    }
}

/// Posts every body once from `clients` concurrent clients, each taking the next body in turn;
/// `post` sends one and returns a count to add up (steps stored, retries). Returns the
/// latencies in ms, the summed counts and the seconds the whole took.
async fn drive<F, Fut>(
    bodies: Vec<Vec<u8>>,
    clients: usize,
    post: F,
) -> anyhow::Result<(Vec<f64>, i64, f64)>
where
    F: Fn(Vec<u8>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<i64>> + Send,
{
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next, post) = (bodies.clone(), next.clone(), post.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut total) = (Vec::new(), 0i64);
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                total += post(body.clone()).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>((latencies, total))
        }));
    }
    let (mut latencies, mut total) = (Vec::new(), 0);
    for t in tasks {
        let (l, n) = t.await??;
        latencies.extend(l);
        total += n;
    }
    Ok((latencies, total, started.elapsed().as_secs_f64()))
}

/// How a live scenario sends.
struct Rate {
    seconds: u64,
    spans_per_second: usize,
    per_export: usize,
}

async fn live(
    client: Arc<Client>,
    rate: Rate,
    sweep_at: u64,
    retention: i64,
    server_pid: Option<u32>,
) -> anyhow::Result<Value> {
    // A minute of distinct spans, sent again with new trace ids and times each minute.
    let templates = Arc::new(otlp_spans(rate.spans_per_second * 60));
    let run = client.create_run("loadtest live").await?;
    let started = Instant::now();
    let interval = Duration::from_secs_f64(rate.per_export as f64 / rate.spans_per_second as f64);
    let exports = (rate.seconds as f64 / interval.as_secs_f64()) as usize;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let inflight = Arc::new(tokio::sync::Semaphore::new(16));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(f64, f64, i64)>();
    let peak = Arc::new(std::sync::Mutex::new(0f64));
    if let Some(pid) = server_pid {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = support::process_mb(pid, "VmRSS:");
                if let Ok(mut p) = peak.lock()
                    && now > *p
                {
                    *p = now;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    let mut swept_at = None;
    let mut skipped = 0;
    for i in 0..exports {
        tick.tick().await;
        if swept_at.is_none() && started.elapsed().as_secs() >= sweep_at {
            client
                .req(reqwest::Method::PATCH, &format!("/v1/runs/{run}"))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"retention_seconds": retention}).to_string())
                .send()
                .await?
                .error_for_status()?;
            swept_at = Some(started.elapsed().as_secs_f64());
        }
        let Ok(permit) = inflight.clone().try_acquire_owned() else {
            // Sixteen exports in flight: the server is behind; count it and go on.
            skipped += 1;
            continue;
        };
        let (client, run, templates, tx) =
            (client.clone(), run.clone(), templates.clone(), tx.clone());
        let at = started.elapsed().as_secs_f64();
        tokio::spawn(async move {
            let _permit = permit;
            let from = (i * rate.per_export) % templates.len();
            let mut spans: Vec<Span> = (0..rate.per_export)
                .map(|k| templates[(from + k) % templates.len()].clone())
                .collect();
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let last = spans
                .iter()
                .map(|s| s.end_time_unix_nano)
                .max()
                .unwrap_or(0);
            let cycle = ((i * rate.per_export) / templates.len()) as u64 + 1;
            for s in &mut spans {
                s.start_time_unix_nano = s.start_time_unix_nano + now_ns - last;
                s.end_time_unix_nano = s.end_time_unix_nano + now_ns - last;
                // Each minute's pass gets its own traces: the template's trace id (its seed
                // and request) with the pass number in its top bits.
                let seed = u64::from_be_bytes(s.trace_id[..8].try_into().unwrap_or([0; 8]));
                s.trace_id[..8].copy_from_slice(&(seed | (cycle << 40)).to_be_bytes());
                let id = u64::from_be_bytes(s.span_id[..8].try_into().unwrap_or([0; 8]));
                s.span_id = (id ^ (cycle << 40)).to_be_bytes().to_vec();
            }
            let body = export_body(spans);
            let t = Instant::now();
            let mut retries = 0;
            loop {
                match client.post_otlp(&run, body.clone()).await {
                    Ok(None) => break,
                    Ok(Some(_)) | Err(_) => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            let _ = tx.send((at, t.elapsed().as_secs_f64() * 1000.0, retries));
        });
    }
    drop(tx);
    let mut samples = Vec::new();
    while let Some(s) = rx.recv().await {
        samples.push(s);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let view: Value = client
        .req(reqwest::Method::GET, &format!("/v1/runs/{run}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let between = |a: f64, b: f64| -> Vec<f64> {
        samples
            .iter()
            .filter(|(at, _, _)| *at >= a && *at < b)
            .map(|(_, ms, _)| *ms)
            .collect()
    };
    let per_minute: Vec<Value> = (0..rate.seconds.div_ceil(60))
        .map(|m| {
            let l = between(m as f64 * 60.0, (m + 1) as f64 * 60.0);
            json!({"minute": m, "exports": l.len(), "latency_ms": latency_summary(l)})
        })
        .collect();
    let sweep = swept_at.unwrap_or(f64::NAN);
    Ok(json!({
        "scenario": "live", "run_id": run, "seconds": elapsed, "exports_planned": exports,
        "exports_skipped_behind": skipped, "spans_per_export": rate.per_export,
        "spans_per_second": rate.spans_per_second, "retention_set_at": sweep, "retention_seconds": retention,
        "busy_retries": samples.iter().map(|s| s.2).sum::<i64>(),
        "latency_before_sweep_ms": latency_summary(between(sweep - 300.0, sweep)),
        "latency_after_sweep_ms": latency_summary(between(sweep, sweep + 300.0)),
        "latency_overall_ms": latency_summary(samples.iter().map(|s| s.1).collect()),
        "per_minute": per_minute, "server_peak_rss_mb": *peak.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
        "run_after": {"request_count": view["request_count"], "step_count": view["step_count"],
                      "first_event_at": view["summary"]["first_event_at"], "last_event_at": view["summary"]["last_event_at"]},
    }))
}
