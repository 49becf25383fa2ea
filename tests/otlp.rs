//! The OTLP receiver against bodies that real exporters sent (tests/fixtures/otlp/README.md):
//! NeMo Agent Toolkit 1.9's own `otelcollector` exporter, and OpenInference spans from the
//! OpenTelemetry Python SDK in protobuf and JSON. Each run is checked against the same
//! workflow's steps. Every test runs on PostgreSQL and SQLite.

mod common;

use agentprof::otlp::RunTarget;
use axum::http::{Method, StatusCode};
use common::app::{Backend, TestApp};
use common::*;
use prost::Message;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;

fn otlp_dir(name: &str) -> PathBuf {
    fixtures().join("otlp").join(name)
}

/// The fixture bodies of one capture with this extension (`pb` or `json`), in export order.
fn bodies(name: &str, ext: &str) -> Vec<Vec<u8>> {
    let dir = otlp_dir(name);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(&format!(".{ext}.gz")))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no .{ext}.gz in {}", dir.display());
    names
        .iter()
        .map(|n| read_maybe_gz(&dir, n.trim_end_matches(".gz")).expect("fixture body"))
        .collect()
}

async fn export(app: &TestApp, body: Vec<u8>, content_type: &str, extra: &[(&str, &str)]) -> Value {
    let mut headers = vec![("content-type", content_type)];
    headers.extend_from_slice(extra);
    let r = app
        .request(Method::POST, "/v1/traces", &headers, body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(content_type));
    if content_type == "application/json" {
        r.json()
    } else {
        let resp =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                r.body.as_slice(),
            )
            .expect("an ExportTraceServiceResponse");
        json!({"rejected": resp.partial_success.map_or(0, |p| p.rejected_spans)})
    }
}

/// Every step of a run, as `/requests` writes them.
async fn stored_steps(app: &TestApp, run: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/runs/{run}/requests")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
        .as_array()
        .expect("requests")
        .iter()
        .flat_map(|req| {
            req["intermediate_steps"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn event_counts(steps: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in steps {
        *counts
            .entry(s["payload"]["event_type"].as_str().unwrap_or("").to_owned())
            .or_insert(0) += 1;
    }
    counts
}

on_both_backends!(
    nat_exporter_spans_match_the_steps_they_came_from,
    |backend| async move {
        let app = TestApp::new(backend).await;
        for body in bodies("nat_react4", "pb") {
            let resp = export(&app, body, "application/x-protobuf", &[]).await;
            assert_eq!(resp["rejected"], 0);
        }
        // No header and no agentprof.run.id: the run of the exporter's service.name, made on sight.
        let run = RunTarget::service_run_id("natrun_react").to_string();
        let view = app.get(&format!("/v1/runs/{run}")).await.json();
        assert_eq!(view["name"], "natrun_react");
        assert_eq!(view["metadata"]["source"], "otlp");
        assert_eq!(view["toolkit"], "nat-1.9");
        let listed = app.get("/v1/runs").await.json();
        assert!(
            listed["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == run.as_str())
        );

        // 4 traces (one per question), 32 spans: a START and an END each.
        assert_eq!(view["request_count"], 4, "{view}");
        let steps = stored_steps(&app, &run).await;
        assert_eq!(steps.len(), 64);
        let counts = event_counts(&steps);
        assert_eq!(counts["WORKFLOW_START"], 4);
        assert_eq!(counts["LLM_START"], 4);
        assert_eq!(counts["LLM_END"], 4);
        assert_eq!(counts["FUNCTION_START"], 24);

        // Each START is the toolkit's own START step: same type, timestamp (exact: the exporter sends
        // it as nat.event_timestamp), name, framework and function ancestry.
        let originals: Vec<Value> = serde_json::from_slice::<Value>(
            &read_maybe_gz(&otlp_dir("nat_react4"), "input.json").unwrap(),
        )
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|item| item["intermediate_steps"].as_array().cloned().unwrap())
        .collect();
        let mut matched_llm_ends = 0;
        for ours in steps.iter().filter(|s| {
            s["payload"]["event_type"]
                .as_str()
                .is_some_and(|t| t.ends_with("_START"))
        }) {
            let p = &ours["payload"];
            let original = originals
                .iter()
                .find(|o| {
                    o["payload"]["event_type"] == p["event_type"]
                        && o["payload"]["event_timestamp"] == p["event_timestamp"]
                })
                .unwrap_or_else(|| panic!("no original START for {ours}"));
            assert_eq!(original["payload"]["name"], p["name"]);
            assert_eq!(original["payload"]["framework"], p["framework"]);
            assert_eq!(
                original["function_ancestry"]["function_id"],
                ours["function_ancestry"]["function_id"]
            );
            assert_eq!(
                original["function_ancestry"]["function_name"],
                ours["function_ancestry"]["function_name"]
            );
            if p["event_type"] == "LLM_START" {
                // The END of the same call: same token counts, end time to the microsecond.
                let uuid = &original["payload"]["UUID"];
                let original_end = originals
                    .iter()
                    .find(|o| {
                        o["payload"]["event_type"] == "LLM_END" && &o["payload"]["UUID"] == uuid
                    })
                    .unwrap();
                let our_end = steps
                    .iter()
                    .find(|s| {
                        s["payload"]["event_type"] == "LLM_END" && s["payload"]["UUID"] == p["UUID"]
                    })
                    .unwrap();
                assert_eq!(
                    original_end["payload"]["usage_info"]["token_usage"]["completion_tokens"],
                    our_end["payload"]["usage_info"]["token_usage"]["completion_tokens"]
                );
                assert_eq!(
                    original_end["payload"]["usage_info"]["token_usage"]["prompt_tokens"],
                    our_end["payload"]["usage_info"]["token_usage"]["prompt_tokens"]
                );
                let (a, b) = (
                    original_end["payload"]["event_timestamp"].as_f64().unwrap(),
                    our_end["payload"]["event_timestamp"].as_f64().unwrap(),
                );
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
                assert_eq!(
                    original_end["payload"]["data"]["output"],
                    our_end["payload"]["data"]["output"]
                );
                matched_llm_ends += 1;
            }
        }
        assert_eq!(matched_llm_ends, 4);

        // Every export again: nothing new is stored, and the run's version stays.
        for body in bodies("nat_react4", "pb") {
            export(&app, body, "application/x-protobuf", &[]).await;
        }
        assert_eq!(stored_steps(&app, &run).await.len(), 64);
        let again = app.get(&format!("/v1/runs/{run}")).await.json();
        assert_eq!(again["step_count"], view["step_count"]);
        assert_eq!(again["version"], view["version"]);
    }
);

/// The outputs of the OpenInference run next to those of the same steps posted as a batch:
/// equal where spans carry what the analysis reads (docs/otlp.md#what-spans-cannot-carry).
async fn compare_with_steps(app: &TestApp, otlp_run: &str) {
    let case = fixtures().join("cases/realnat_react_12");
    let steps_run = app
        .create_run(&json!({"requests": serde_json::from_slice::<Value>(
            &read_maybe_gz(&case, "input.json").unwrap()).unwrap()}))
        .await;
    let ours = app
        .get(&format!("/v1/runs/{otlp_run}/metrics"))
        .await
        .json();
    let theirs = app
        .get(&format!("/v1/runs/{steps_run}/metrics"))
        .await
        .json();
    for pointer in [
        "/confidence_intervals/workflow_run_time_confidence_intervals",
        "/confidence_intervals/llm_latency_confidence_intervals",
        "/confidence_intervals/throughput_estimate_confidence_interval",
        "/workflow_runtimes",
        "/common_prefixes/canned-react-1",
        "/token_uniqueness",
    ] {
        let (a, b) = (&theirs.pointer(pointer), &ours.pointer(pointer));
        let (Some(a), Some(b)) = (a, b) else {
            panic!("{pointer} missing: steps {a:?}, spans {b:?}");
        };
        assert_close(pointer, a, b);
    }
    // The simple stack: per LLM model and tool, the same calls and durations.
    let ours = app
        .get(&format!("/v1/runs/{otlp_run}/profiling"))
        .await
        .json();
    let theirs = app
        .get(&format!("/v1/runs/{steps_run}/profiling"))
        .await
        .json();
    for pointer in [
        "/simple_stack_analysis",
        "/concurrency_spike_analysis/concurrency_distribution",
        "/nested_stack_analysis/concurrency/p90",
    ] {
        match (theirs.pointer(pointer), ours.pointer(pointer)) {
            (Some(a), Some(b)) => assert_close(pointer, a, b),
            other => panic!("{pointer}: {other:?}"),
        }
    }
}

/// Equal, numbers within 1e-6 relative: span times are nanoseconds, step times float seconds.
fn assert_close(at: &str, a: &Value, b: &Value) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1e-3),
                "{at}: steps {x}, spans {y}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(&format!("{at}/{i}"), x, y);
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            assert_eq!(kx, ky, "{at}: keys");
            for (k, v) in x {
                assert_close(&format!("{at}/{k}"), v, &y[k]);
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

on_both_backends!(
    openinference_protobuf_from_the_python_sdk,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let run = app.create_run(&json!({"name": "live"})).await;
        for body in bodies("openinference_react12", "pb") {
            let resp = export(
                &app,
                body,
                "application/x-protobuf",
                &[("x-agentprof-run-id", &run)],
            )
            .await;
            assert_eq!(resp["rejected"], 0);
        }
        let view = app.get(&format!("/v1/runs/{run}")).await.json();
        assert_eq!(view["request_count"], 12);
        compare_with_steps(&app, &run).await;
    }
);

on_both_backends!(
    openinference_json_gzip_matches_protobuf,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let (pb_run, json_run) = (
            app.create_run(&json!({})).await,
            app.create_run(&json!({})).await,
        );
        for body in bodies("openinference_react12", "pb") {
            export(
                &app,
                body,
                "application/x-protobuf",
                &[("x-agentprof-run-id", &pb_run)],
            )
            .await;
        }
        for body in bodies("openinference_react12", "json") {
            let resp = export(
                &app,
                gzip(&body),
                "application/json",
                &[
                    ("x-agentprof-run-id", &json_run),
                    ("content-encoding", "gzip"),
                ],
            )
            .await;
            assert!(resp.get("partialSuccess").is_none(), "{resp}");
        }
        let a = app.get(&format!("/v1/runs/{pb_run}/requests")).await;
        let b = app.get(&format!("/v1/runs/{json_run}/requests")).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            a.body == b.body,
            "the JSON and protobuf exports stored different steps"
        );
    }
);

on_both_backends!(
    exports_out_of_order_and_repeated_store_each_span_once,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let mut exports = bodies("openinference_react12", "pb");
        let in_order = app.create_run(&json!({})).await;
        for body in &exports {
            export(
                &app,
                body.clone(),
                "application/x-protobuf",
                &[("x-agentprof-run-id", &in_order)],
            )
            .await;
        }
        // Last export first, and every export twice.
        exports.reverse();
        let shuffled = app.create_run(&json!({})).await;
        for body in exports.iter().chain(exports.iter()) {
            export(
                &app,
                body.clone(),
                "application/x-protobuf",
                &[("x-agentprof-run-id", &shuffled)],
            )
            .await;
        }
        let (a, b) = (
            stored_steps(&app, &in_order).await,
            stored_steps(&app, &shuffled).await,
        );
        assert_eq!(a.len(), b.len());
        assert_eq!(event_counts(&a), event_counts(&b));
        let view = app.get(&format!("/v1/runs/{shuffled}")).await.json();
        assert_eq!(
            view["request_count"], 12,
            "a trace is one request whatever the export order"
        );
        // The analyses sort by time: the metrics agree.
        let ma = app
            .get(&format!("/v1/runs/{in_order}/metrics"))
            .await
            .json();
        let mb = app
            .get(&format!("/v1/runs/{shuffled}/metrics"))
            .await
            .json();
        assert_close(
            "/",
            &ma["confidence_intervals"],
            &mb["confidence_intervals"],
        );
    }
);

on_both_backends!(the_otlp_answers, |backend| async move {
    let app = TestApp::new(backend).await;
    let body = bodies("openinference_react12", "json").remove(0);
    // Undecodable: 400 with a google.rpc.Status in the request's encoding.
    let r = app
        .request(
            Method::POST,
            "/v1/traces",
            &[("content-type", "application/json")],
            "{\"resourceSpans\": 7}",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], 3);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("ExportTraceServiceRequest")
    );
    let r = app
        .request(
            Method::POST,
            "/v1/traces",
            &[("content-type", "application/x-protobuf")],
            vec![0xff, 0xff, 0xff],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    let status = agentprof::otlp::Status::decode(r.body.as_slice()).expect("a Status");
    assert_eq!(status.code, 3);
    // Another media type: 415.
    let r = app
        .request(
            Method::POST,
            "/v1/traces",
            &[("content-type", "text/plain")],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A run header naming no run: 404, nothing created.
    let ghost = uuid::Uuid::new_v4().to_string();
    let r = app
        .request(
            Method::POST,
            "/v1/traces",
            &[
                ("content-type", "application/json"),
                ("x-agentprof-run-id", &ghost),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    // A bad span among good ones: the others are stored, the bad one counted.
    let mut doc: Value = serde_json::from_slice(&body).unwrap();
    let spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array_mut()
        .unwrap();
    let total = spans.len();
    spans[0]["spanId"] = json!("");
    let run = app.create_run(&json!({})).await;
    let resp = export(
        &app,
        doc.to_string().into_bytes(),
        "application/json",
        &[("x-agentprof-run-id", &run)],
    )
    .await;
    assert_eq!(resp["partialSuccess"]["rejectedSpans"], json!(1), "{resp}");
    assert!(
        resp["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("span id")
    );
    let steps = stored_steps(&app, &run).await;
    let ends = steps
        .iter()
        .filter(|s| {
            s["payload"]["event_type"]
                .as_str()
                .unwrap()
                .ends_with("_END")
        })
        .count();
    assert_eq!(ends, total - 1);
    // Values a step cannot hold, in one span of an export that other spans share: no 400 for
    // the export. A toolkit start time past any real time falls back to the span's own start; a
    // JSON input a step cannot hold (a number beyond a float, nesting deeper than a stored step
    // can be read back with) is kept as its text. Every span is stored, and every output reads.
    let mut doc: Value = serde_json::from_slice(&body).unwrap();
    let deep = format!("{}1{}", "[".repeat(126), "]".repeat(126));
    let span = &mut doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    let start_nanos: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let span_id = span["spanId"].as_str().unwrap().to_owned();
    let attributes = span["attributes"].as_array_mut().unwrap();
    attributes.retain(|kv| !kv["key"].as_str().unwrap().starts_with("input."));
    attributes.retain(|kv| !kv["key"].as_str().unwrap().starts_with("output."));
    attributes.extend([
        json!({"key": "nat.event_timestamp", "value": {"doubleValue": 1e300}}),
        json!({"key": "input.value_obj", "value": {"stringValue": "1e400"}}),
        json!({"key": "output.value_obj", "value": {"stringValue": deep}}),
    ]);
    let odd = app.create_run(&json!({})).await;
    let resp = export(
        &app,
        doc.to_string().into_bytes(),
        "application/json",
        &[("x-agentprof-run-id", &odd)],
    )
    .await;
    assert!(resp.get("partialSuccess").is_none(), "{resp}");
    let steps = stored_steps(&app, &odd).await;
    let ends = steps
        .iter()
        .filter(|s| {
            s["payload"]["event_type"]
                .as_str()
                .unwrap()
                .ends_with("_END")
        })
        .count();
    assert_eq!(ends, total, "every span stored");
    let end = steps
        .iter()
        .find(|s| {
            s["payload"]["UUID"] == json!(span_id)
                && s["payload"]["event_type"]
                    .as_str()
                    .unwrap()
                    .ends_with("_END")
        })
        .unwrap();
    let start = end["payload"]["span_event_timestamp"].as_f64().unwrap();
    assert!((start - start_nanos as f64 / 1e9).abs() < 1e-6, "{start}");
    assert_eq!(end["payload"]["data"]["input"], json!("1e400"));
    assert_eq!(end["payload"]["data"]["output"], json!(deep));
    for output in ["atif", "requests", "metrics"] {
        let r = app.get(&format!("/v1/runs/{odd}/{output}")).await;
        assert_eq!(r.status, StatusCode::OK, "{output}: {}", r.text());
    }
    // The resource attribute names (and creates) the run.
    let chosen = uuid::Uuid::new_v4().to_string();
    let mut doc: Value = serde_json::from_slice(&body).unwrap();
    doc["resourceSpans"][0]["resource"]["attributes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "agentprof.run.id", "value": {"stringValue": chosen}}));
    export(&app, doc.to_string().into_bytes(), "application/json", &[]).await;
    let view = app.get(&format!("/v1/runs/{chosen}")).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text());
    assert_eq!(view.json()["name"], "realnat-react-oi");
});

/// A sender faster than the database: with every ingest slot taken, an export waits, then gets
/// 503 + Retry-After (which OTLP exporters honour) and a google.rpc.Status; once a slot frees,
/// the same export is stored.
#[tokio::test]
async fn backpressure_is_503_with_retry_after() {
    use tower::ServiceExt;
    let app = TestApp::new(Backend::Sqlite).await;
    let state = app.state_with_ingest_slots(1, std::time::Duration::from_millis(50));
    let router = agentprof::server::app(state.clone());
    let body = bodies("openinference_react12", "pb").remove(0);
    let post = || {
        axum::http::Request::post("/v1/traces")
            .header("content-type", "application/x-protobuf")
            .body(axum::body::Body::from(body.clone()))
            .unwrap()
    };
    let held = state.ingest.admit().await.unwrap();
    let resp = router.clone().oneshot(post()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        agentprof::otlp::Status::decode(bytes.as_ref())
            .unwrap()
            .code,
        14
    );
    drop(held);
    let resp = router.oneshot(post()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Every capture's spans become the same stored steps as when the snapshot beside it was taken
/// (`stored_requests.snapshot.gz`, the run's `/requests`): a span sent again after an upgrade must
/// meet its stored steps, which it only does when it renders to the same bodies. Run with
/// `AGENTPROF_UPDATE_SNAPSHOTS=1` to take a snapshot anew after a deliberate change of the
/// mapping.
#[tokio::test]
async fn captures_map_to_their_snapshot_steps() {
    let captures: Vec<(PathBuf, Vec<Vec<u8>>)> = vec![
        (otlp_dir("nat_react4"), bodies("nat_react4", "pb")),
        (
            otlp_dir("openinference_react12"),
            bodies("openinference_react12", "pb"),
        ),
    ]
    .into_iter()
    .chain(genai_captures())
    .collect();
    let update = std::env::var_os("AGENTPROF_UPDATE_SNAPSHOTS").is_some();
    for (dir, bodies) in captures {
        let app = TestApp::new(Backend::Sqlite).await;
        let run_id = app.create_run(&json!({"name": "snapshot"})).await;
        for body in bodies {
            export(
                &app,
                body,
                "application/x-protobuf",
                &[("x-agentprof-run-id", &run_id)],
            )
            .await;
        }
        let r = app.get(&format!("/v1/runs/{run_id}/requests")).await;
        assert_eq!(r.status, StatusCode::OK);
        let snapshot = dir.join("stored_requests.snapshot.gz");
        if update {
            std::fs::write(&snapshot, gzip(&r.body)).unwrap();
            continue;
        }
        let expected = read_maybe_gz(&dir, "stored_requests.snapshot")
            .unwrap_or_else(|| panic!("no snapshot in {}", dir.display()));
        assert!(
            expected == r.body,
            "{}: the stored steps differ from the snapshot",
            dir.display()
        );
    }
}

/// The GenAI captures (tests/fixtures/otlp_genai), each library's HTTP export bodies in order.
fn genai_captures() -> Vec<(PathBuf, Vec<Vec<u8>>)> {
    let root = fixtures().join("otlp_genai");
    let mut libs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("otlp_genai")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("http").is_dir())
        .collect();
    libs.sort();
    libs.into_iter()
        .map(|lib| {
            let dir = lib.join("http");
            let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pb"))
                .collect();
            names.sort();
            (
                dir,
                names.iter().map(|n| std::fs::read(n).unwrap()).collect(),
            )
        })
        .collect()
}

/// What a hostile sender can make an export cost is bounded before it is built: a few kilobytes
/// of gzip holding a million empty spans, or many empty resources, are refused (413) while still
/// counted; a span's streamed-token steps count against the batch memory as they are made; a
/// service name past the run-name limit, or more runs than one export may write, refuse those
/// spans only.
#[tokio::test]
async fn hostile_exports_are_bounded() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};
    let app = TestApp::new(Backend::Sqlite).await;
    let post = |body: Vec<u8>| {
        let app = &app;
        async move {
            app.request(
                Method::POST,
                "/v1/traces",
                &[
                    ("content-type", "application/x-protobuf"),
                    ("content-encoding", "gzip"),
                ],
                gzip(&body),
            )
            .await
        }
    };
    let kv = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
    };
    let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    };
    let span = |id: u64| Span {
        trace_id: vec![9; 16],
        span_id: id.to_be_bytes().to_vec(),
        name: "s".to_owned(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        ..Default::default()
    };

    // One more empty span than an export may carry: a few KB of gzip (the hostile client of the
    // issue sent a million).
    let many = ExportTraceServiceRequest {
        resource_spans: vec![resource("svc", vec![Span::default(); 100_001])],
    };
    let r = post(many.encode_to_vec()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    // Empty resources escape no limit.
    let empty = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans::default(); 20_000],
    };
    assert_eq!(
        post(empty.encode_to_vec()).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // One LLM span with a 64 KiB model name and 5,000 streamed tokens: refused within the batch
    // memory (each token step carries the name), not built whole first.
    let mut llm = span(1);
    llm.attributes = vec![
        kv("openinference.span.kind", "LLM"),
        kv("llm.model_name", &"m".repeat(64 * 1024)),
    ];
    llm.events = (0..5_000)
        .map(|i| Event {
            time_unix_nano: 1_700_000_000_000_000_000 + i,
            name: "new_token".to_owned(),
            attributes: vec![kv("chunk", "t")],
            dropped_attributes_count: 0,
        })
        .collect();
    let tokens = ExportTraceServiceRequest {
        resource_spans: vec![resource("tokens", vec![llm])],
    };
    let r = post(tokens.encode_to_vec()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(
        app.get(&format!("/v1/runs/{}", RunTarget::service_run_id("tokens")))
            .await
            .status,
        StatusCode::NOT_FOUND,
        "nothing stored"
    );

    // A 5 MiB service name, and 100 services in one export: those spans are refused, the rest
    // stored, and no run is named past the limit.
    let mut resources = vec![
        resource(&"n".repeat(5 << 20), vec![span(2)]),
        resource("fine", vec![span(3)]),
    ];
    resources.extend((0..100).map(|i| resource(&format!("svc-{i}"), vec![span(100 + i)])));
    let r = post(
        ExportTraceServiceRequest {
            resource_spans: resources,
        }
        .encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            r.body.as_slice(),
        )
        .unwrap();
    let partial = resp.partial_success.unwrap();
    // The long name's span, and the spans of the services past the 64th run.
    assert_eq!(partial.rejected_spans, 1 + (101 - 64));
    assert!(
        partial.error_message.contains("longer than 500"),
        "{}",
        partial.error_message
    );
    let runs = r.header("x-agentprof-run-id").unwrap().split(", ").count();
    assert_eq!(runs, 64);
    let listed = app.get("/v1/runs?limit=1000").await.json();
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|run| run["name"].as_str().unwrap().chars().count() <= 500)
    );
}
