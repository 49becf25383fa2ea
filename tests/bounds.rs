//! Bounds that keep an output's size linear whatever a client sends, sized so that realistic runs
//! never reach them (issue "What a newcomer and a hostile client found").

mod common;

use agentprof::profiler::core::calltree::CallForest;
use agentprof::profiler::toolkit::spikes;
use agentprof::profiler::{self, Dialect, Frame, ProfilerConfig};
use agentprof::trace::{ParseOptions, parse_value};
use serde_json::json;

fn frame_of(doc: serde_json::Value) -> Frame {
    let batch = parse_value(doc, &ParseOptions::default()).expect("a valid document");
    Frame::from_numbered(&batch.into_numbered())
}

/// A realistic run lists every UUID of its spikes, as the toolkit does: a 1,000-request eval of
/// the synthetic generator with 48 requests in flight, whose spike intervals list hundreds of
/// thousands of UUIDs (more than the 16-per-call budget of before, which cut them short).
#[test]
fn a_realistic_run_lists_every_spike_uuid() {
    let frame = frame_of(agentprof::synth::profiler_document_with(0, 1_000, 7, 48));
    let config = ProfilerConfig::default();
    let profiling = profiler::workflow_profiling(&frame, &config, Dialect::Nat19);
    let spikes = profiling
        .concurrency_spike_analysis
        .as_ref()
        .expect("the spike analysis is on by default");
    assert!(!spikes.truncated, "a realistic run was cut short");
    let listed: usize = spikes
        .spike_intervals
        .iter()
        .map(|s| s.active_uuids.len())
        .sum();
    let calls = CallForest::build(&frame, false).nodes.len();
    println!("{calls} calls, {listed} UUIDs listed");
    assert!(
        listed > 16 * calls,
        "the premise: {listed} UUIDs for {calls} calls is more than the old budget allowed"
    );
    for interval in &spikes.spike_intervals {
        assert_eq!(interval.active_calls, None);
    }
}

/// A client's 20,000 calls nested in one request: the lists are cut within the byte budget, the
/// counts stay exact, and the whole `/profiling` document stays under 64 MB.
#[test]
fn nested_calls_are_cut_within_the_byte_budget() {
    let depth = 20_000;
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
    let frame = frame_of(json!([{"request_number": 0, "intermediate_steps": steps}]));
    let config = ProfilerConfig::default();
    let profiling = profiler::workflow_profiling(&frame, &config, Dialect::Nat19);
    let spikes = profiling.concurrency_spike_analysis.as_ref().unwrap();
    assert!(spikes.truncated);
    let bytes = agentprof::py::json::to_vec(&profiling).len();
    assert!(bytes < 64_000_000, "/profiling is {bytes} bytes");
    let deepest = spikes
        .spike_intervals
        .iter()
        .map(|s| s.active_call_count())
        .max();
    assert_eq!(deepest, Some(depth), "counts stay exact");

    // The budget is a setting: a smaller one cuts sooner.
    let forest = CallForest::build(&frame, false);
    let small = spikes::analyze(&forest, 1, 1_000_000);
    let bytes: usize = small
        .spike_intervals
        .iter()
        .flat_map(|s| &s.active_uuids)
        .map(|u| u.len() + 14)
        .sum();
    assert!(bytes <= 1_000_000 && bytes > 1_000_000 - 40, "{bytes}");
    assert!(small.truncated);
}

mod service {
    use super::common::app::{Backend, Options, PgTestDb, TestApp};
    use agentprof::store::postgres::PgStore;
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn step(uuid: &str, t: f64) -> Value {
        json!({"payload": {"event_type": "LLM_END", "event_timestamp": t, "UUID": uuid, "name": "m"}})
    }

    async fn keyed_append(app: &TestApp, run: &str, key: &str, t: f64) -> StatusCode {
        app.request(
            Method::POST,
            &format!("/v1/runs/{run}/steps"),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            json!([[step(key, t)]]).to_string(),
        )
        .await
        .status
    }

    /// An Idempotency-Key keeps the fingerprint and the first outcome, not a copy of the run:
    /// twenty keyed appends to a run with 1 MiB of metadata store no metadata, a retry still gets
    /// its first outcome, and a client's keys beyond its bound are forgotten, oldest first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idempotency_keys_keep_only_what_a_replay_needs() {
        crate::require_postgres!();
        let db = PgTestDb::create().await;
        let store = PgStore::connect(&db.url)
            .await
            .unwrap()
            .with_max_keys_per_client(10);
        let pool = store.pool().clone();
        let app = TestApp::on_store(
            Backend::Postgres,
            Arc::new(store),
            Some(db),
            Options::default(),
        );
        let big = "x".repeat(1 << 20);
        let run = app.create_run(&json!({"metadata": {"blob": big}})).await;
        for i in 0..20 {
            assert_eq!(
                keyed_append(&app, &run, &format!("k{i}"), f64::from(i)).await,
                StatusCode::OK
            );
        }
        let (keys, record_bytes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), COALESCE(sum(length(record)), 0)::bigint FROM idempotency_keys",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(record_bytes, 0, "a key kept a copy of the run");
        assert_eq!(
            keys, 10,
            "the client's keys beyond its bound were not forgotten"
        );
        // The newest key replays its first outcome; the oldest was forgotten, so its retry is a
        // new request (and a keyed request's identical steps are new occurrences).
        let replay = app
            .request(
                Method::POST,
                &format!("/v1/runs/{run}/steps"),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", "k19"),
                ],
                json!([[step("k19", 19.0)]]).to_string(),
            )
            .await;
        assert_eq!(replay.header("idempotent-replayed"), Some("true"));
        assert_eq!(replay.json()["steps"]["stored"], 1);
        assert_eq!(replay.json()["run_id"], json!(run));
        let again = app
            .request(
                Method::POST,
                &format!("/v1/runs/{run}/steps"),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", "k0"),
                ],
                json!([[step("k0", 0.0)]]).to_string(),
            )
            .await;
        assert_eq!(again.header("idempotent-replayed"), None);
        assert_eq!(again.json()["steps"]["stored"], 1);
    }

    /// Metadata is kept as the text it came as: a few MiB of it is created, listed, merged and
    /// read back exactly, large numbers digit for digit, without being read into values.
    #[tokio::test]
    async fn metadata_round_trips_as_text() {
        let app = TestApp::new(Backend::Sqlite).await;
        let items: Vec<Value> = (0..50_000)
            .map(|i| json!({"request": i, "scores": {"accuracy": (i % 2) as f64, "huge": 1.7e308}}))
            .collect();
        let body = format!(
            r#"{{"name": "meta", "metadata": {{"seed": 123456789012345678901234567890, "eval": {{"items": {}}}}}}}"#,
            Value::Array(items)
        );
        assert!(body.len() > 2 << 20);
        let r = app.post_json("/v1/runs", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let view = app.get("/v1/runs?limit=1").await;
        assert!(
            view.text()
                .contains("\"seed\":123456789012345678901234567890")
        );
        let run = &view.json()["items"][0];
        assert_eq!(run["scores"]["accuracy"], json!({"n": 50_000, "mean": 0.5}));
        assert_eq!(
            run["scores"]["huge"]["mean"],
            json!(1.7e308),
            "a finite mean of huge scores"
        );
        let patched = app
            .request(
                Method::PATCH,
                &format!("/v1/runs/{id}"),
                &[("content-type", "application/merge-patch+json")],
                r#"{"metadata": {"seed": null, "note": {"a": 1}}}"#,
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
        let metadata = &patched.json()["metadata"];
        assert!(metadata.get("seed").is_none());
        assert_eq!(metadata["note"], json!({"a": 1}));
        assert_eq!(metadata["eval"]["items"].as_array().unwrap().len(), 50_000);
        // A profiler config is read as values: it is bounded in size.
        let huge_config = format!(
            r#"{{"profiler_config": {{"x": "{}"}}}}"#,
            "y".repeat(70_000)
        );
        let r = app.post_json("/v1/runs", huge_config).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.json()["errors"][0]["path"], "/profiler_config");
    }

    /// Two runs compared twice are compared once: the second answer comes from the cache.
    #[tokio::test]
    async fn a_comparison_is_computed_once() {
        let app = TestApp::new(Backend::Sqlite).await;
        let run = |n: usize| {
            let steps: Vec<Value> = (0..n).map(|i| step(&format!("u{i}"), i as f64)).collect();
            json!({"requests": [steps]})
        };
        let a = app.create_run(&run(3)).await;
        let b = app.create_run(&run(4)).await;
        let body = json!({"baseline": a, "candidate": b}).to_string();
        let first = app.post_json("/v1/compare", body.clone()).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text());
        let computed = |text: &str| {
            text.lines()
                .filter(|l| l.starts_with("agentprof_frame_load_seconds_count"))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum::<f64>()
        };
        let loads = computed(&app.get("/metrics").await.text());
        let second = app.post_json("/v1/compare", body).await;
        assert_eq!(second.json(), first.json());
        assert_eq!(computed(&app.get("/metrics").await.text()), loads);
        let bad = app
            .post_json(
                "/v1/compare",
                json!({"baseline": a, "other": 1}).to_string(),
            )
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
