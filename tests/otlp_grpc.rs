//! OTLP over gRPC (`--otlp-grpc-bind`) against OTLP over HTTP, and the real GenAI captures
//! against the ground truth their generator recorded.
//!
//! The gRPC port must be the HTTP receiver by another transport: the same export bodies sent over
//! both store the same steps byte for byte; its refusals are the gRPC statuses the OTLP exporters
//! act on (UNAVAILABLE with RetryInfo when busy, so they retry after it).

mod common;

use agentprof::api::otlp_grpc::{EXPORT_PATH, RawCodec, TraceService};
use bytes::Bytes;
use common::app::{Backend, TestApp};
use common::fixtures;
use common::process::{Server, free_port, get_json, post_run};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

async fn channel(addr: &str) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match endpoint.connect().await {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no gRPC server: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One unary call to `path` with `metadata`; the response's bytes and metadata, or the status.
async fn call(
    channel: &Channel,
    path: &'static str,
    body: Vec<u8>,
    metadata: &[(&'static str, &str)],
    gzip: bool,
) -> Result<(Bytes, tonic::metadata::MetadataMap), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(body);
    for (k, v) in metadata {
        request.metadata_mut().insert(*k, v.parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(request, path, RawCodec).await.map(|r| {
        let (metadata, body, _) = r.into_parts();
        (body, metadata)
    })
}

/// Every `*.pb` body in `dir`, in file order.
fn bodies(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pb"))
        .collect();
    names.sort();
    names.iter().map(|n| std::fs::read(n).unwrap()).collect()
}

/// The GenAI capture folders (one per library).
fn libraries() -> Vec<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("otlp_genai"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("grpc").is_dir())
        .collect();
    libs.sort();
    libs
}

/// A new run named `name` on `base`; its id.
async fn new_run(client: &reqwest::Client, base: &str, name: &str) -> String {
    post_run(client, base, json!({ "name": name }).to_string()).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The binary on SQLite with its gRPC port open (and `env`), ready; its data folder lives as long
/// as the returned guard.
async fn grpc_server(
    env: &[(&str, &str)],
) -> (Server, reqwest::Client, Channel, tempfile::TempDir) {
    let grpc_addr = format!("127.0.0.1:{}", free_port());
    let data = tempfile::tempdir().unwrap();
    let mut all = vec![
        ("AGENTPROF_OTLP_GRPC_BIND", grpc_addr.as_str()),
        ("AGENTPROF_DATA_DIR", data.path().to_str().unwrap()),
    ];
    all.extend_from_slice(env);
    let server = Server::spawn(&all);
    let client = reqwest::Client::new();
    server.ready(&client).await;
    let channel = channel(&grpc_addr).await;
    (server, client, channel, data)
}

/// A run's stored steps as `/requests` answers them.
async fn stored(client: &reqwest::Client, base: &str, run: &str) -> Bytes {
    let r = client
        .get(format!("{base}/v1/runs/{run}/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_stores_what_http_stores_for_the_same_exports() {
    let (server, client, channel, _data) = grpc_server(&[]).await;
    let base = &server.base;
    for lib in libraries() {
        // The bodies the real HTTP exporter sent, once over HTTP and once over gRPC (gzip on
        // every other call), each into a run of its own.
        let (over_http, over_grpc) = (
            new_run(&client, base, "http").await,
            new_run(&client, base, "grpc").await,
        );
        for (i, body) in bodies(&lib.join("http")).into_iter().enumerate() {
            let r = client
                .post(format!("{base}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .header("x-agentprof-run-id", &over_http)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let (_, metadata) = call(
                &channel,
                EXPORT_PATH,
                body,
                &[("x-agentprof-run-id", &over_grpc)],
                i % 2 == 1,
            )
            .await
            .unwrap_or_else(|s| panic!("{}: export {i}: {s:?}", lib.display()));
            assert_eq!(
                metadata
                    .get("x-agentprof-run-id")
                    .and_then(|v| v.to_str().ok()),
                Some(over_grpc.as_str())
            );
        }
        let a = stored(&client, base, &over_http).await;
        let b = stored(&client, base, &over_grpc).await;
        assert!(
            !a.is_empty() && a == b,
            "{}: gRPC stored other steps than HTTP",
            lib.display()
        );

        // The real gRPC exporter's own bodies, with no run named: the run of their service name,
        // checked against the program's ground truth.
        let truth: Value =
            serde_json::from_slice(&std::fs::read(lib.join("grpc/truth.json")).unwrap()).unwrap();
        let mut runs = Vec::new();
        for body in bodies(&lib.join("grpc")) {
            let (_, metadata) = call(&channel, EXPORT_PATH, body, &[], false).await.unwrap();
            if let Some(run) = metadata.get("x-agentprof-run-id") {
                runs.push(run.to_str().unwrap().to_owned());
            }
        }
        runs.dedup();
        assert_eq!(runs.len(), 1, "{}: one run for the service", lib.display());
        let stored = get_json(&client, &format!("{base}/v1/runs/{}/requests", runs[0])).await;
        check_against_truth(&lib, &stored, &truth);
    }
    server.stop();
}

/// One request per trace; every chat span an LLM call with the truth's model and tokens, every
/// tool execution a tool call with its name; nothing lost across the exports.
fn check_against_truth(lib: &Path, stored: &Value, truth: &Value) {
    let lib = lib.display();
    let requests = stored.as_array().unwrap();
    assert_eq!(
        requests.len() as u64,
        truth["totals"]["traces"].as_u64().unwrap(),
        "{lib}: requests"
    );
    let mut ends: HashMap<(String, String), Value> = HashMap::new();
    for r in requests {
        for s in r["intermediate_steps"].as_array().unwrap() {
            let p = &s["payload"];
            let kind = p["event_type"].as_str().unwrap().to_owned();
            ends.insert((kind, p["UUID"].as_str().unwrap().to_owned()), p.clone());
        }
    }
    let count = |kind: &str| ends.keys().filter(|(k, _)| k == kind).count() as u64;
    assert_eq!(
        count("LLM_END"),
        truth["totals"]["chat_calls"].as_u64().unwrap(),
        "{lib}: LLM calls"
    );
    assert_eq!(
        count("TOOL_END"),
        truth["totals"]["tool_calls"].as_u64().unwrap(),
        "{lib}: tool calls"
    );
    for trace in truth["traces"].as_array().unwrap() {
        for chat in trace["chat_calls"].as_array().unwrap() {
            let span = chat["span_id"].as_str().unwrap().to_owned();
            let end = ends
                .get(&("LLM_END".to_owned(), span.clone()))
                .unwrap_or_else(|| panic!("{lib}: chat span {span} is not an LLM call"));
            let usage = &end["usage_info"]["token_usage"];
            assert_eq!(
                usage["prompt_tokens"], chat["input_tokens"],
                "{lib}: {span} prompt tokens"
            );
            assert_eq!(
                usage["completion_tokens"], chat["output_tokens"],
                "{lib}: {span} completion tokens"
            );
            // Cache and reasoning counts, where the instrumentation put them on the span at all
            // (the generator lists where it did not, as disagreements).
            let response = chat["response_id"].as_str().unwrap_or_default();
            for what in ["cached_tokens", "reasoning_tokens"] {
                let missing = truth["disagreements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|d| d.starts_with(&format!("{response} {what}:")));
                if !missing {
                    assert_eq!(usage[what], chat[what], "{lib}: {span} {what}");
                }
            }
            let models = [&chat["request_model"], &chat["response_model"]];
            assert!(
                models.contains(&&end["name"]),
                "{lib}: {span} model {}",
                end["name"]
            );
        }
        for tool in trace["tool_calls"].as_array().unwrap() {
            let span = tool["span_id"].as_str().unwrap().to_owned();
            let end = ends
                .get(&("TOOL_END".to_owned(), span.clone()))
                .unwrap_or_else(|| panic!("{lib}: tool span {span} is not a tool call"));
            assert_eq!(end["name"], tool["tool_name"], "{lib}: {span} tool name");
            // Arguments and result, where the span carries them (gen_ai.tool.call.*).
            let data = &end["data"];
            if !data["input"].is_null() {
                let (args, result) = (&tool["arguments_parsed"], &tool["result"]);
                assert_eq!(
                    numbers_as_f64(&data["input"]),
                    numbers_as_f64(args),
                    "{lib}: {span} arguments"
                );
                assert_eq!(
                    numbers_as_f64(&data["output"]),
                    numbers_as_f64(result),
                    "{lib}: {span} result"
                );
            }
        }
    }
}

/// One call of the refusals test: what it tries, the method, the body, the metadata, gzip or
/// not, and the status it must get (`None`: stored).
type Case<'a> = (
    &'a str,
    &'static str,
    Vec<u8>,
    Vec<(&'static str, &'a str)>,
    bool,
    Option<Code>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refusals_are_statuses_exporters_act_on() {
    let (server, _client, channel, _data) =
        grpc_server(&[("AGENTPROF_API_KEYS", "write:write-key-1,read:read-key-1")]).await;
    let body = bodies(&fixtures().join("otlp_genai/openai_v2/http")).remove(0);
    let auth = ("authorization", "Bearer write-key-1");
    let huge = vec![0u8; 33 * 1024 * 1024];
    let metrics = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    let cases: Vec<Case> = vec![
        (
            "no key",
            EXPORT_PATH,
            body.clone(),
            vec![],
            false,
            Some(Code::Unauthenticated),
        ),
        (
            "a read key",
            EXPORT_PATH,
            body.clone(),
            vec![("authorization", "Bearer read-key-1")],
            false,
            Some(Code::PermissionDenied),
        ),
        (
            "an unknown run",
            EXPORT_PATH,
            body.clone(),
            vec![
                auth,
                ("x-agentprof-run-id", "7f0c3a4e-0000-4000-8000-000000000000"),
            ],
            false,
            Some(Code::NotFound),
        ),
        (
            "a malformed run id",
            EXPORT_PATH,
            body.clone(),
            vec![auth, ("x-agentprof-run-id", "nope")],
            false,
            Some(Code::InvalidArgument),
        ),
        (
            "not an export",
            EXPORT_PATH,
            vec![0xff; 64],
            vec![auth],
            false,
            Some(Code::InvalidArgument),
        ),
        (
            "another service",
            metrics,
            body.clone(),
            vec![auth],
            false,
            Some(Code::Unimplemented),
        ),
        // Past the inflated-size bound (32 MiB), gzip or not (tonic's own answer to the plain
        // one is OUT_OF_RANGE, which exporters retry).
        (
            "32 MiB and more, gzip",
            EXPORT_PATH,
            huge.clone(),
            vec![auth],
            true,
            Some(Code::ResourceExhausted),
        ),
        (
            "32 MiB and more",
            EXPORT_PATH,
            huge,
            vec![auth],
            false,
            Some(Code::ResourceExhausted),
        ),
        // The key's scheme is case-insensitive, as on the REST port.
        (
            "a lower-case scheme",
            EXPORT_PATH,
            body.clone(),
            vec![("authorization", "bearer write-key-1")],
            false,
            None,
        ),
        ("a write key", EXPORT_PATH, body, vec![auth], false, None),
    ];
    for (what, path, body, metadata, gzip, expected) in cases {
        match call(&channel, path, body, &metadata, gzip).await {
            Ok(_) => assert_eq!(expected, None, "{what}: stored"),
            Err(status) => {
                assert_eq!(Some(status.code()), expected, "{what}: {status:?}");
                if status.code() == Code::ResourceExhausted {
                    assert!(
                        tonic_types::StatusExt::get_details_retry_info(&status).is_none(),
                        "{what}: without RetryInfo, which exporters take as final"
                    );
                }
            }
        }
    }
    server.stop();
}

/// With every ingest slot taken, an export is UNAVAILABLE with a RetryInfo: the OTLP exporters
/// wait that long and retry, where they would drop the data on another code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_gate_is_unavailable_with_retry_info() {
    use tonic_types::StatusExt;
    let app = TestApp::new(Backend::Sqlite).await;
    let state = app.state_with_ingest_slots(1, Duration::from_millis(10));
    // The one slot, held by another ingest for the whole test.
    let _held = state.ingest.admit().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceService::new(state))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = channel(&addr).await;
    let body = bodies(&fixtures().join("otlp_genai/openai_v2/http")).remove(0);
    let status = call(&channel, EXPORT_PATH, body, &[], false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert!(
        retry
            .retry_delay
            .is_some_and(|d| d >= Duration::from_secs(1))
    );
}

/// JSON with every number as a float: the program's Python values and the span's JSON text may
/// spell one number differently (`33.0`, `33`).
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
