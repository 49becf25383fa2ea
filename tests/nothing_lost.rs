//! Nothing lost, nothing doubled: distinct steps that share a UUID, type and timestamp are all
//! kept, a retried batch or create changes nothing, big integers survive digit for digit, and a
//! case posted in random splits with retries gives the toolkit's outputs. Every test runs on
//! PostgreSQL and SQLite.

mod common;

use axum::http::{Method, StatusCode};
use common::app::{Backend, TestApp};
use common::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng as StdRng;
use serde_json::{Value, json};

/// A streamed LLM call whose chunks all share the call's UUID and one timestamp (a burst, or a
/// coarse clock), each with its own text.
fn burst(uuid: &str, chunks: &[&str]) -> Vec<Value> {
    let mut steps = vec![step("LLM_START", 1.0, uuid)];
    for text in chunks {
        steps.push(json!({
            "function_ancestry": {"function_id": "f", "function_name": "agent"},
            "payload": {"event_type": "LLM_NEW_TOKEN", "event_timestamp": 1.5, "UUID": uuid,
                        "name": "m", "data": {"chunk": text}}
        }));
    }
    steps.push(step("LLM_END", 2.0, uuid));
    steps
}

async fn post_steps(
    app: &TestApp,
    id: &str,
    body: &Value,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    let r = app
        .request(
            Method::POST,
            &format!("/v1/runs/{id}/steps"),
            &headers,
            body.to_string(),
        )
        .await;
    let status = r.status;
    (status, r.json())
}

on_both_backends!(
    chunks_sharing_uuid_type_and_time_are_all_kept,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let words = [
            " Once", " upon", " a", " time", " there", " was", " a", " fox",
        ];
        let doc = json!([burst("call", &words)]);
        let id = app.create_run(&json!({})).await;
        let (status, first) = post_steps(&app, &id, &doc, None).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        // " a" appears twice: an exact duplicate inside one batch is a step of its own.
        assert_eq!(first["steps"]["stored"], 10, "{first}");
        let (_, again) = post_steps(&app, &id, &doc, None).await;
        assert_eq!(
            (
                again["steps"]["stored"].as_i64(),
                again["steps"]["skipped_duplicate"].as_i64()
            ),
            (Some(0), Some(10)),
            "a retried batch stores nothing"
        );
        let run = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(run["step_count"], 10);
        // The toolkit's `""` prefix group counts every non-LLM row: all eight chunks are there.
        let metrics = app.get(&format!("/v1/runs/{id}/metrics")).await.json();
        assert_eq!(
            metrics["common_prefixes"][""]["total_calls"], 8,
            "{metrics}"
        );
    }
);

on_both_backends!(a_retried_create_makes_one_run, |backend| async move {
    let app = TestApp::new(backend).await;
    let body = json!({"name": "nightly", "requests": [burst("a", &[" x"])]}).to_string();
    let create = |key: &'static str, body: String| {
        let app = &app;
        async move {
            app.request(
                Method::POST,
                "/v1/runs",
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                body,
            )
            .await
        }
    };
    let first = create("\"k-1\"", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    assert!(first.header("idempotent-replayed").is_none());
    for _ in 0..3 {
        let retry = create("\"k-1\"", body.clone()).await;
        assert_eq!(retry.status, StatusCode::CREATED);
        assert_eq!(retry.header("idempotent-replayed"), Some("true"));
        assert_eq!(retry.json()["id"], first.json()["id"]);
        assert_eq!(retry.json()["ingest"], first.json()["ingest"]);
        assert_eq!(retry.header("location"), first.header("location"));
    }
    let list = app.get("/v1/runs").await.json();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "one run, not four"
    );
    // The same key with another body is refused, and creates nothing.
    let other = create("\"k-1\"", json!({"name": "other"}).to_string()).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.json()["code"], "idempotency-key-reused");
    assert_eq!(
        app.get("/v1/runs").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A bare (unquoted) key works too; a bad one is a 400 that says what to send.
    assert_eq!(
        create("k-2", body.clone()).await.status,
        StatusCode::CREATED
    );
    let bad = create("\"\"", body).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("Idempotency-Key"), "{}", bad.text());
});

on_both_backends!(
    keyed_appends_replay_and_keep_new_duplicates,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let id = app.create_run(&json!({})).await;
        let batch = json!([burst("a", &[" same"])]);
        let (_, first) = post_steps(&app, &id, &batch, Some("b-1")).await;
        assert_eq!(first["steps"]["stored"], 3);
        let (_, retry) = post_steps(&app, &id, &batch, Some("b-1")).await;
        assert_eq!(retry, first, "the retry gets the first response");
        // A new batch (new key) holding a step identical to a stored one: a keyed batch is known to
        // be new, so its identical steps come after the stored ones instead of being skipped.
        let more = json!([[{
            "function_ancestry": {"function_id": "f", "function_name": "agent"},
            "payload": {"event_type": "LLM_NEW_TOKEN", "event_timestamp": 1.5, "UUID": "a",
                        "name": "m", "data": {"chunk": " same"}}
        }]]);
        let (_, next) = post_steps(&app, &id, &more, Some("b-2")).await;
        assert_eq!(next["steps"]["stored"], 1, "{next}");
        // Without a key the same batch is taken for a retry of what is stored.
        let (_, unkeyed) = post_steps(&app, &id, &more, None).await;
        assert_eq!(unkeyed["steps"]["stored"], 0, "{unkeyed}");
        assert_eq!(
            app.get(&format!("/v1/runs/{id}")).await.json()["step_count"],
            4
        );
    }
);

on_both_backends!(integers_of_any_size_are_kept, |backend| async move {
    let app = TestApp::new(backend).await;
    let big = "12345678901234567890123";
    let text = format!(
        r#"{{"metadata": {{"seed": {big}}}, "requests": [[
            {{"function_ancestry": {{"function_id": "f", "function_name": "agent"}},
              "payload": {{"event_type": "LLM_START", "event_timestamp": 1, "UUID": "a", "name": "m",
                          "data": {{"input": {{"n": {big}, "x": 1.50}}}}}}}},
            {{"function_ancestry": {{"function_id": "f", "function_name": "agent"}},
              "payload": {{"event_type": "LLM_END", "event_timestamp": 2, "UUID": "a", "name": "m"}}}}
        ]]}}"#
    );
    let r = app.post_json("/v1/runs", text).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert!(
        r.text().contains(&format!("\"seed\":{big}")),
        "{}",
        r.text()
    );
    let traces = app.get(&format!("/v1/runs/{id}/requests")).await.text();
    assert!(traces.contains(&format!("\"n\": {big}")), "{traces}");
    // Python's str() of the input, in the CSV and the prefix text: the integer, and 1.5.
    let csv = app
        .get(&format!("/v1/runs/{id}/standardized.csv"))
        .await
        .text();
    assert!(csv.contains(&format!("{{'n': {big}, 'x': 1.5}}")), "{csv}");
    // A float literal beyond f64 has no JSON to go back to: refused with its pointer.
    let r = app
        .post_json(
            &format!("/v1/runs/{id}/steps"),
            r#"[[{"payload": {"event_type": "LLM_START", "data": {"input": 1e400}}}]]"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["errors"][0]["path"], "/0/0/payload/data/input");
});

on_both_backends!(gzip_without_its_header_is_read, |backend| async move {
    let app = TestApp::new(backend).await;
    let id = app.create_run(&json!({})).await;
    let doc = json!([burst("a", &[" x"])]).to_string();
    let r = app
        .request(
            Method::POST,
            &format!("/v1/runs/{id}/steps"),
            &[("content-type", "application/json")],
            gzip(doc.as_bytes()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["steps"]["stored"], 3);
    // A body that is neither JSON nor gzip says what it starts with.
    let r = app
        .request(
            Method::POST,
            &format!("/v1/runs/{id}/steps"),
            &[("content-type", "application/json")],
            b"PK\x03\x04zipped".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["detail"].as_str().unwrap().contains("zip archive"),
        "{}",
        r.text()
    );
});

on_both_backends!(
    a_retry_compressed_again_is_the_same_request,
    |backend| async move {
        use std::io::Write;
        let app = TestApp::new(backend).await;
        let id = app.create_run(&json!({})).await;
        let doc = json!([burst("a", &[" x", " y"])]).to_string();
        let compress = |level: u32| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            gz.write_all(doc.as_bytes()).unwrap();
            gz.finish().unwrap()
        };
        let (fast, best) = (compress(1), compress(9));
        assert_ne!(fast, best, "the premise: two different encodings");
        let post = |body: Vec<u8>, gzip: bool| {
            let app = &app;
            let uri = format!("/v1/runs/{id}/steps");
            async move {
                let mut headers = vec![
                    ("content-type", "application/json"),
                    ("idempotency-key", "retry-1"),
                ];
                if gzip {
                    headers.push(("content-encoding", "gzip"));
                }
                app.request(Method::POST, &uri, &headers, body).await
            }
        };
        let first = post(fast, true).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text());
        assert_eq!(first.json()["steps"]["stored"], 4);
        for (body, gzip) in [(best, true), (doc.clone().into_bytes(), false)] {
            let retry = post(body, gzip).await;
            assert_eq!(retry.status, StatusCode::OK, "{}", retry.text());
            assert_eq!(retry.header("idempotent-replayed"), Some("true"));
            assert_eq!(retry.json()["steps"], first.json()["steps"]);
        }
        let run = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(run["step_count"], 4);
    }
);

/// The batches a case's document splits into: each request's steps cut into consecutive chunks,
/// the chunks of different requests interleaved at random, each request's own in order.
fn random_splits(doc: &Value, rng: &mut StdRng) -> Vec<Value> {
    let items = doc.as_array().expect("a list of requests");
    let mut queues: Vec<Vec<Value>> = items
        .iter()
        .map(|item| {
            let steps = item["intermediate_steps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < steps.len() {
                let n = rng.random_range(1..=steps.len() - at);
                let mut part = item.clone();
                part["intermediate_steps"] = Value::Array(steps[at..at + n].to_vec());
                chunks.push(part);
                at += n;
            }
            chunks.reverse();
            chunks
        })
        .collect();
    let mut batches = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len())
            .filter(|i| !queues[*i].is_empty())
            .collect();
        let take = rng.random_range(1..=live.len().min(3));
        let mut batch = Vec::new();
        for &i in live.iter().take(take) {
            batch.push(queues[i].pop().expect("non-empty"));
        }
        batches.push(Value::Array(batch));
    }
    batches
}

on_both_backends!(
    cases_posted_in_random_splits_with_retries_match,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let mut rng = StdRng::seed_from_u64(20261129);
        for name in ["small_5", "nat_chat_8", "medium_50"] {
            let case = fixtures().join("cases").join(name);
            let doc: Value =
                serde_json::from_slice(&read_maybe_gz(&case, "input.json").unwrap()).unwrap();
            let id = app
                .create_run(&json!({"profiler_config": case_config(&case)}))
                .await;
            let mut stored = 0;
            for (i, batch) in random_splits(&doc, &mut rng).iter().enumerate() {
                let key = format!("{name}-{i}");
                let keyed = rng.random_bool(0.5);
                let (status, r) = post_steps(&app, &id, batch, keyed.then_some(key.as_str())).await;
                assert_eq!(status, StatusCode::OK, "{r}");
                stored += r["steps"]["stored"].as_i64().unwrap();
                if rng.random_bool(0.4) {
                    let (_, again) =
                        post_steps(&app, &id, batch, keyed.then_some(key.as_str())).await;
                    let expect = if keyed {
                        r["steps"]["stored"].clone()
                    } else {
                        json!(0)
                    };
                    assert_eq!(again["steps"]["stored"], expect, "retry of batch {i}");
                }
            }
            let total: usize = doc
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["intermediate_steps"].as_array().map_or(0, Vec::len))
                .sum();
            assert_eq!(stored as usize, total, "{name}: steps stored");
            for (dialect, expected) in case_dialects(&case) {
                let r = app
                    .request(
                        Method::PATCH,
                        &format!("/v1/runs/{id}"),
                        &[("content-type", "application/merge-patch+json")],
                        json!({"toolkit": dialect.as_str()}).to_string(),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK);
                let mut outputs = std::collections::HashMap::new();
                for (file, path) in OUTPUT_FILES {
                    let r = app.get(&format!("/v1/runs/{id}/{path}")).await;
                    if r.status == StatusCode::OK {
                        outputs.insert(file, r.body);
                    }
                }
                let cfg =
                    agentprof::profiler::ProfilerConfig::from_json(case_config(&case)).unwrap();
                compare_outputs(
                    &format!("{name}[{dialect}] in random splits"),
                    &case,
                    dialect,
                    &expected,
                    known_deviations(&cfg),
                    &|file| outputs.get(file).cloned(),
                );
            }
        }
    }
);
