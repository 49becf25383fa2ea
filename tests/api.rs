//! The HTTP API against real databases: every test runs on PostgreSQL and on SQLite.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::app::{Backend, Options, TestApp};
use common::*;
use serde_json::{Value, json};

on_both_backends!(conformance_cases_over_http, |backend| async move {
    let app = TestApp::new(backend).await;
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let config = case_config(&case);
        let id = app
            .create_run(&json!({"name": name, "profiler_config": config}))
            .await;
        let raw = case_input(&case);
        let headers: Vec<(&str, &str)> = if raw.starts_with(&[0x1f, 0x8b]) {
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ]
        } else {
            vec![("content-type", "application/json")]
        };
        let uri = format!("/v1/runs/{id}/steps");
        let first = app.request(Method::POST, &uri, &headers, raw.clone()).await;
        assert_eq!(first.status, StatusCode::OK, "{name}: {}", first.text());
        let first = first.json();
        assert_eq!(
            first["steps"]["stored"], first["steps"]["received"],
            "{name}"
        );
        // The same body again stores nothing and leaves the version alone.
        let again = app.request(Method::POST, &uri, &headers, raw).await.json();
        assert_eq!(again["steps"]["stored"], 0, "{name}: retry stored steps");
        assert_eq!(again["requests"]["created"], 0, "{name}");
        assert_eq!(again["version"], first["version"], "{name}");

        // Without a toolkit, the steps' schema decides.
        let run = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(run["toolkit_source"], "detected", "{name}");
        let detected = run["toolkit"].as_str().unwrap().to_owned();
        let batch = agentprof::trace::parse(
            &case_input(&case),
            &agentprof::trace::ParseOptions::default(),
        )
        .unwrap();
        let want = agentprof::profiler::Dialect::detect(batch.steps());
        assert_eq!(detected, want.as_str(), "{name}");

        let cfg = agentprof::profiler::ProfilerConfig::from_json(config.clone()).unwrap();
        let mut current = detected.clone();
        for (dialect, expected) in case_dialects(&case) {
            if dialect.as_str() != current {
                current = dialect.as_str().to_owned();
                let r = app
                    .request(
                        Method::PATCH,
                        &format!("/v1/runs/{id}"),
                        &[("content-type", "application/merge-patch+json")],
                        json!({"toolkit": dialect.as_str()}).to_string(),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text());
                assert_eq!(r.json()["toolkit_source"], "given");
            }
            let mut outputs = std::collections::HashMap::new();
            for (file, path) in OUTPUT_FILES {
                let r = app.get(&format!("/v1/runs/{id}/{path}")).await;
                match r.status {
                    StatusCode::OK => {
                        outputs.insert(file, r.body);
                    }
                    StatusCode::NOT_FOUND => assert_eq!(
                        r.json()["code"],
                        "not-in-dialect",
                        "{name}[{dialect}]/{path}"
                    ),
                    other => panic!("{name}[{dialect}]/{path}: {other} {}", r.text()),
                }
            }
            let label = format!("{name}[{dialect}] over HTTP");
            let files = compare_outputs(
                &label,
                &case,
                dialect,
                &expected,
                known_deviations(&cfg),
                &|file| outputs.get(file).cloned(),
            );
            assert!(files >= 6, "{label}: only {files} files compared");
        }
        // null returns the run to detection.
        let r = app
            .request(
                Method::PATCH,
                &format!("/v1/runs/{id}"),
                &[("content-type", "application/merge-patch+json")],
                r#"{"toolkit": null}"#,
            )
            .await
            .json();
        assert_eq!(
            (r["toolkit"].as_str(), r["toolkit_source"].as_str()),
            (Some(detected.as_str()), Some("detected")),
            "{name}"
        );
    }
});

on_both_backends!(run_lifecycle, |backend| async move {
    let app = TestApp::new(backend).await;
    let created = app
        .post_json(
            "/v1/runs",
            json!({"name": "first", "metadata": {"commit": "abc"}}).to_string(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let run = created.json();
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/runs/{id}").as_str())
    );
    for field in [
        "id",
        "name",
        "created_at",
        "step_count",
        "request_count",
        "version",
        "profiler_config",
    ] {
        assert!(run.get(field).is_some(), "missing {field}");
    }
    assert_eq!(
        run["profiler_config"]["prompt_caching_prefixes"]["min_frequency"],
        0.5
    );

    let got = app.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["metadata"], json!({"commit": "abc"}));

    let patched = app
        .request(Method::PATCH, &format!("/v1/runs/{id}"), &[("content-type", "application/merge-patch+json")],
            json!({"name": "renamed", "metadata": {"commit": null, "branch": "main"}, "profiler_config": {"concurrency_spike_analysis": {"spike_threshold": 3}}}).to_string())
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let p = patched.json();
    assert_eq!(p["name"], "renamed");
    assert_eq!(p["metadata"], json!({"branch": "main"}));
    assert_eq!(
        p["profiler_config"]["concurrency_spike_analysis"]["spike_threshold"],
        3
    );
    let bad = app
        .request(
            Method::PATCH,
            &format!("/v1/runs/{id}"),
            &[("content-type", "application/json")],
            json!({"profiler_config": {"prompt_caching_prefixes": {"min_frequency": "lots"}}})
                .to_string(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.json()["errors"][0]["path"],
        "/profiler_config/prompt_caching_prefixes/min_frequency"
    );

    // Pagination, newest first.
    for i in 0..4 {
        app.create_run(&json!({"name": format!("r{i}")})).await;
    }
    let page1 = app.get("/v1/runs?limit=2").await.json();
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    assert_eq!(page1["items"][0]["name"], "r3");
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = app
        .get(&format!("/v1/runs?limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(page2["items"][0]["name"], "r1");
    let page3 = app
        .get(&format!(
            "/v1/runs?limit=2&cursor={}",
            page2["next_cursor"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(page3["items"].as_array().unwrap().len(), 1);
    assert!(page3["next_cursor"].is_null());
    assert_eq!(
        app.get("/v1/runs?limit=0").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/v1/runs?cursor=bogus").await.status,
        StatusCode::BAD_REQUEST
    );

    let del = app
        .request(
            Method::DELETE,
            &format!("/v1/runs/{id}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = app.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        gone.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(gone.json()["code"], "run-not-found");
    assert_eq!(
        app.get(&format!("/v1/runs/{id}/metrics")).await.status,
        StatusCode::NOT_FOUND
    );
});

on_both_backends!(etag_and_cache, |backend| async move {
    let app = TestApp::new(backend).await;
    let id = app
        .create_run(
            &json!({"requests": [[step("LLM_START", 1.0, "a"), step("LLM_END", 2.0, "a")]]}),
        )
        .await;
    let first = app.get(&format!("/v1/runs/{id}/metrics")).await;
    let tag = first.header("etag").unwrap().to_owned();
    let again = app
        .request(
            Method::GET,
            &format!("/v1/runs/{id}/metrics"),
            &[("if-none-match", &tag)],
            Body::empty(),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    // Different outputs have different tags.
    let csv = app.get(&format!("/v1/runs/{id}/standardized.csv")).await;
    assert_ne!(csv.header("etag").unwrap(), tag);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    // New data: new version, new tag, new numbers.
    let r = app
        .post_json(
            &format!("/v1/runs/{id}/steps"),
            json!([
                [step("LLM_START", 1.0, "a"), step("LLM_END", 2.0, "a")],
                [step("LLM_START", 1.0, "b"), step("LLM_END", 4.0, "b")]
            ])
            .to_string(),
        )
        .await;
    assert_eq!(
        r.json()["steps"]["stored"],
        2,
        "request 0's steps were already there"
    );
    let after = app
        .request(
            Method::GET,
            &format!("/v1/runs/{id}/metrics"),
            &[("if-none-match", &tag)],
            Body::empty(),
        )
        .await;
    assert_eq!(after.status, StatusCode::OK);
    assert_ne!(after.header("etag").unwrap(), tag);
    assert_eq!(
        after.json()["confidence_intervals"]["llm_latency_confidence_intervals"]["mean"],
        2.0
    );
    // A config change changes the tag too.
    let tag2 = after.header("etag").unwrap().to_owned();
    let patched = app
        .request(
            Method::PATCH,
            &format!("/v1/runs/{id}"),
            &[("content-type", "application/json")],
            json!({"profiler_config": {"prompt_caching_prefixes": {"enable": false}}}).to_string(),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let cfg = app
        .request(
            Method::GET,
            &format!("/v1/runs/{id}/metrics"),
            &[("if-none-match", &tag2)],
            Body::empty(),
        )
        .await;
    assert_eq!(cfg.status, StatusCode::OK);
    assert!(cfg.json()["common_prefixes"].is_null());
});

on_both_backends!(invalid_batches_store_nothing, |backend| async move {
    let app = TestApp::new(backend).await;
    let id = app.create_run(&json!({})).await;
    let uri = format!("/v1/runs/{id}/steps");
    let bad = json!([[step("LLM_START", 1.0, "a"), {"payload": {"event_type": "LLM_END", "event_timestamp": "later"}}]]);
    let r = app.post_json(&uri, bad.to_string()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let p = r.json();
    assert_eq!(p["errors"][0]["path"], "/0/1/payload/event_timestamp");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("/0/1/payload/event_timestamp")
    );
    let run = app.get(&format!("/v1/runs/{id}")).await.json();
    assert_eq!(
        (
            run["step_count"].clone(),
            run["request_count"].clone(),
            run["version"].clone()
        ),
        (json!(0), json!(0), json!(0))
    );

    // A create with invalid requests creates no run at all.
    let before = app.get("/v1/runs").await.json()["items"]
        .as_array()
        .unwrap()
        .len();
    let r = app
        .post_json(
            "/v1/runs",
            json!({"name": "x", "requests": [{"request_number": -1, "intermediate_steps": []}]})
                .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["errors"][0]["path"], "/requests/0/request_number");
    assert_eq!(
        app.get("/v1/runs").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        before
    );

    // Malformed JSON: 400; wrong type: 415; unknown run: 404.
    let r = app.post_json(&uri, "[[{").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "malformed-request");
    let r = app
        .request(Method::POST, &uri, &[("content-type", "text/plain")], "[]")
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .post_json(&format!("/v1/runs/{}/steps", uuid::Uuid::new_v4()), "[]")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
});

on_both_backends!(limits_and_gzip, |backend| async move {
    let app = TestApp::with(
        backend,
        Options {
            max_bytes: 4096,
            max_decompressed: 16 * 1024,
            ..Options::default()
        },
    )
    .await;
    let id = app.create_run(&json!({})).await;
    let uri = format!("/v1/runs/{id}/steps");
    let big = format!(
        "[[{}]]",
        vec![step("TOOL_START", 1.0, "t").to_string(); 40].join(",")
    );
    let r = app.post_json(&uri, big.clone()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    // The same batch gzipped fits on the wire and inflates within the limit.
    let small = format!(
        "[[{}]]",
        vec![step("TOOL_START", 1.0, "t").to_string(); 30].join(",")
    );
    let gz = gzip(small.as_bytes());
    assert!(gz.len() < 4096);
    let r = app
        .request(
            Method::POST,
            &uri,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            gz,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        (
            r.json()["steps"]["stored"].as_i64(),
            r.json()["steps"]["skipped_duplicate"].as_i64()
        ),
        (Some(30), Some(0)),
        "30 identical steps in one batch are 30 steps, as the toolkit keeps them"
    );
    // A gzip bomb: tiny on the wire, huge inflated.
    let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
    let r = app
        .request(
            Method::POST,
            &uri,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            bomb,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = app
        .request(
            Method::POST,
            &uri,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
            "[]",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .request(
            Method::POST,
            &uri,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            "not gzip",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
});

on_both_backends!(appends_match_requests, |backend| async move {
    let app = TestApp::new(backend).await;
    let id = app.create_run(&json!({})).await;
    let uri = format!("/v1/runs/{id}/steps");
    // Profiler form: request_number identifies the request.
    app.post_json(
        &uri,
        json!([{"request_number": 7, "intermediate_steps": [step("LLM_START", 1.0, "a")]}])
            .to_string(),
    )
    .await;
    let r = app
        .post_json(
            &uri,
            json!([{"request_number": 7, "intermediate_steps": [step("LLM_END", 3.0, "a")]}])
                .to_string(),
        )
        .await
        .json();
    assert_eq!(r["requests"]["created"], 0);
    let m = app.get(&format!("/v1/runs/{id}/metrics")).await.json();
    assert_eq!(
        m["confidence_intervals"]["llm_latency_confidence_intervals"]["mean"],
        2.0
    );
    // Eval form: the id identifies the request; new ids get the next numbers.
    let eval = |qid: &str, s: Value| json!([{"id": qid, "question": "q", "generated_answer": "a", "intermediate_steps": [s]}]);
    let r = app
        .post_json(&uri, eval("q-1", step("TOOL_START", 10.0, "t")).to_string())
        .await
        .json();
    assert_eq!(r["requests"]["created"], 1);
    let r = app
        .post_json(&uri, eval("q-1", step("TOOL_END", 12.0, "t")).to_string())
        .await
        .json();
    assert_eq!(r["requests"]["created"], 0);
    let traces = app.get(&format!("/v1/runs/{id}/requests")).await.json();
    let numbers: Vec<i64> = traces
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [7, 8]);
    assert_eq!(traces[1]["intermediate_steps"].as_array().unwrap().len(), 2);
    let run = app.get(&format!("/v1/runs/{id}")).await.json();
    assert_eq!(
        (run["request_count"].clone(), run["step_count"].clone()),
        (json!(2), json!(4))
    );
});

on_both_backends!(nul_characters_round_trip, |backend| async move {
    let app = TestApp::new(backend).await;
    let mut s = step("LLM_START", 1.0, "nul\u{0}uuid");
    s["payload"]["data"]["input"] = json!("before\u{0}after");
    s["payload"]["name"] = json!("model\u{0}x");
    let id = app
        .create_run(&json!({"requests": [[s.clone(), step("LLM_END", 2.0, "nul\u{0}uuid")]]}))
        .await;
    let traces = app.get(&format!("/v1/runs/{id}/requests")).await.json();
    assert_eq!(
        traces[0]["intermediate_steps"][0]["payload"]["data"]["input"],
        "before\u{0}after"
    );
    assert_eq!(
        traces[0]["intermediate_steps"][0]["payload"]["UUID"],
        "nul\u{0}uuid"
    );
    let csv = app
        .get(&format!("/v1/runs/{id}/standardized.csv"))
        .await
        .text();
    assert!(csv.contains("before\u{0}after"));
    let m = app.get(&format!("/v1/runs/{id}/metrics")).await.json();
    assert!(m["common_prefixes"].get("model\u{0}x").is_some(), "{m}");
});

on_both_backends!(outputs_exist_for_empty_runs, |backend| async move {
    let app = TestApp::new(backend).await;
    let id = app.create_run(&json!({})).await;
    for path in [
        "metrics",
        "profiling",
        "report",
        "standardized.csv",
        "gantt.svg",
        "forecast",
        "requests",
    ] {
        let r = app.get(&format!("/v1/runs/{id}/{path}")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    }
    assert_eq!(
        app.get(&format!("/v1/runs/{id}/requests")).await.text(),
        "[]"
    );
    assert_eq!(
        app.get(&format!("/v1/runs/{id}/standardized.csv"))
            .await
            .text(),
        "\n"
    );
    assert!(
        app.get(&format!("/v1/runs/{id}/gantt.svg"))
            .await
            .text()
            .contains("No calls found.")
    );
    assert_eq!(
        app.get(&format!("/v1/runs/{id}/forecast")).await.json()["status"],
        "skipped"
    );
});

on_both_backends!(over_a_real_socket, |backend| async move {
    let app = TestApp::new(backend).await;
    let base = app.serve().await;
    let client = reqwest::Client::new();
    let case = fixtures().join("cases/small_5");
    let body = std::fs::read(case.join("input.json")).unwrap();
    let created = client
        .post(format!("{base}/v1/runs"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"name\": \"socket\", \"requests\": {}}}",
            String::from_utf8(body).unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let metrics: Value = client
        .get(format!("{base}{location}/metrics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_json_matches(
        "small_5",
        "metrics over socket",
        &expected_json(&case, "inference_optimization.json").unwrap(),
        &metrics,
    );
    let resp = client
        .get(format!("{base}{location}/requests"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-request-id").is_some());
    let bytes = resp.bytes().await.unwrap();
    assert_text_equal(
        "small_5",
        "requests over socket",
        &std::fs::read(case.join("expected/all_requests_profiler_traces.json")).unwrap(),
        &bytes,
    );
    let health = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
});

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::new(Backend::Sqlite).await;
    let r = app.get("/v2/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let r = app
        .request(Method::PUT, "/v1/runs", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["code"], "method-not-allowed");
    assert_eq!(
        app.get("/v1/runs/not-a-uuid").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn prometheus_and_probes() {
    let app = TestApp::new(Backend::Sqlite).await;
    assert_eq!(app.get("/healthz").await.json(), json!({"status": "ok"}));
    assert_eq!(
        app.get("/readyz").await.json(),
        json!({"status": "ready", "database": "sqlite"})
    );
    let id = app
        .create_run(&json!({"requests": [[step("LLM_START", 1.0, "a")]]}))
        .await;
    app.get(&format!("/v1/runs/{id}/metrics")).await;
    let text = app.get("/metrics").await.text();
    for needle in [
        "agentprof_http_requests_total",
        "agentprof_steps_stored_total",
        "agentprof_computations_total",
        "agentprof_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }
    assert!(
        text.contains("route=\"/v1/runs/{run_id}/metrics\""),
        "routes are templates, not URLs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_is_seen_by_the_next_read_on_another() {
    require_postgres!();
    use agentprof::store::Store;
    use std::sync::Arc;
    // Two "replicas": two applications, each with its own caches, on one database.
    let a = TestApp::new(Backend::Postgres).await;
    let store: Arc<dyn Store> = a.state.store.clone();
    let b = TestApp::on_store(Backend::Postgres, store, None, Options::default());
    let id = a
        .create_run(
            &json!({"requests": [[step("LLM_START", 1.0, "a"), step("LLM_END", 2.0, "a")]]}),
        )
        .await;
    let before = b.get(&format!("/v1/runs/{id}/metrics")).await.json();
    assert_eq!(
        before["confidence_intervals"]["llm_latency_confidence_intervals"]["n"],
        1
    );
    a.post_json(
        &format!("/v1/runs/{id}/steps"),
        json!([[], [step("LLM_START", 1.0, "b"), step("LLM_END", 4.0, "b")]]).to_string(),
    )
    .await;
    // The writer sees its write at once.
    let on_a = a.get(&format!("/v1/runs/{id}/metrics")).await.json();
    assert_eq!(
        on_a["confidence_intervals"]["llm_latency_confidence_intervals"]["n"],
        2
    );
    // And so does the other replica, at once, ETag included.
    let on_b = b.get(&format!("/v1/runs/{id}/metrics")).await;
    assert_eq!(
        on_b.json()["confidence_intervals"]["llm_latency_confidence_intervals"]["n"],
        2
    );
    let on_a = a.get(&format!("/v1/runs/{id}/metrics")).await;
    assert_eq!(on_a.header("etag"), on_b.header("etag"));
    // A PATCH through one is seen by the other as well.
    let r = b
        .request(
            Method::PATCH,
            &format!("/v1/runs/{id}"),
            &[("content-type", "application/merge-patch+json")],
            r#"{"name": "renamed on b"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        a.get(&format!("/v1/runs/{id}")).await.json()["name"],
        "renamed on b"
    );
}

on_both_backends!(
    nul_characters_in_run_fields_round_trip,
    |backend| async move {
        // PostgreSQL text and jsonb cannot hold U+0000, yet it is valid in any JSON string: names, eval
        // ids, metadata keys and values must come back exactly as sent (schemathesis found the gap).
        let app = TestApp::new(backend).await;
        let metadata = json!({"k\u{0}/": ["x", "y\u{0}"], "plain": {"n\u{0}": 1}});
        let config = json!({"concurrency_spike_analysis": {"spike_threshold": 3}});
        let r = app
        .post_json(
            "/v1/runs",
            json!({
                "name": "a\u{0}b",
                "metadata": metadata,
                "profiler_config": config,
                "requests": [{"id": "q\u{0}1", "intermediate_steps": [step("LLM_START", 1.0, "a")]}],
            })
            .to_string(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let run = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(run["name"], "a\u{0}b");
        assert_eq!(run["metadata"], metadata);
        assert_eq!(
            run["profiler_config"]["concurrency_spike_analysis"]["spike_threshold"],
            3
        );

        // The same eval id again is the same request: the NUL-holding id is matched, not duplicated.
        let again = app
            .post_json(
                &format!("/v1/runs/{id}/steps"),
                json!([{"id": "q\u{0}1", "intermediate_steps": [step("LLM_END", 2.0, "a")]}])
                    .to_string(),
            )
            .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text());
        let traces = app.get(&format!("/v1/runs/{id}/requests")).await.json();
        assert_eq!(traces.as_array().map(Vec::len), Some(1), "{traces}");
        assert_eq!(
            traces[0]["intermediate_steps"].as_array().map(Vec::len),
            Some(2)
        );

        let r = app
            .request(
                Method::PATCH,
                &format!("/v1/runs/{id}"),
                &[("content-type", "application/merge-patch+json")],
                json!({"name": "\u{0}", "metadata": {"note": "\u{0}"}}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let run = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(run["name"], "\u{0}");
        assert_eq!(run["metadata"]["note"], "\u{0}");
        assert_eq!(run["metadata"]["k\u{0}/"], json!(["x", "y\u{0}"]));
    }
);

on_both_backends!(concurrent_patches_all_land, |backend| async move {
    // Each PATCH merges a different key; a read-merge-write without a precondition would let a
    // later write carry an older read and drop the other keys.
    let app = TestApp::new(backend).await;
    let id = app.create_run(&json!({})).await;
    let uri = format!("/v1/runs/{id}");
    let patches = (0..8).map(|i| {
        let (app, uri) = (&app, &uri);
        async move {
            app.request(
                Method::PATCH,
                uri,
                &[("content-type", "application/merge-patch+json")],
                json!({"metadata": {format!("k{i}"): i}}).to_string(),
            )
            .await
        }
    });
    for r in futures::future::join_all(patches).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let metadata = app.get(&uri).await.json()["metadata"].clone();
    let keys = metadata.as_object().map(|o| o.len());
    assert_eq!(keys, Some(8), "{metadata}");
});

on_both_backends!(
    eval_and_numbered_batches_race_cleanly,
    |backend| async move {
        // Eval batches hand out new request numbers while numbered batches create the same numbers;
        // every eval id must end up on a request of its own, whatever the interleaving.
        let app = TestApp::new(backend).await;
        let id = app.create_run(&json!({})).await;
        let uri = format!("/v1/runs/{id}/steps");
        let batches = (0..12).map(|i| {
        let (app, uri) = (&app, &uri);
        let body = if i % 2 == 0 {
            json!([{"id": format!("q{i}"), "intermediate_steps": [step("LLM_START", i as f64, &format!("e{i}"))]}])
        } else {
            json!([{"request_number": i, "intermediate_steps": [step("LLM_START", i as f64, &format!("n{i}"))]}])
        };
        async move { app.post_json(uri, body.to_string()).await }
    });
        for r in futures::future::join_all(batches).await {
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        let traces = app.get(&format!("/v1/runs/{id}/requests")).await.json();
        let traces = traces.as_array().unwrap();
        let steps: usize = traces
            .iter()
            .map(|r| r["intermediate_steps"].as_array().unwrap().len())
            .sum();
        assert_eq!(steps, 12);
        let eval_requests = traces
            .iter()
            .filter(|r| {
                r["intermediate_steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["payload"]["UUID"].as_str().unwrap().starts_with('e'))
            })
            .count();
        assert_eq!(eval_requests, 6, "each eval id has its own request");
        // A retry of an eval batch finds its request by id.
        let retry = app
            .post_json(
                &uri,
                json!([{"id": "q0", "intermediate_steps": [step("LLM_END", 1.0, "e0")]}])
                    .to_string(),
            )
            .await
            .json();
        assert_eq!(retry["requests"]["created"], 0);
    }
);

on_both_backends!(
    request_numbers_run_out_with_a_clear_error,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let id = app
        .create_run(&json!({"requests": [{"request_number": i32::MAX, "intermediate_steps": [step("LLM_START", 1.0, "a")]}]}))
        .await;
        let r = app
            .post_json(
                &format!("/v1/runs/{id}/steps"),
                json!([{"id": "new", "intermediate_steps": [step("LLM_START", 2.0, "b")]}])
                    .to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert!(
            r.json()["detail"]
                .as_str()
                .unwrap()
                .contains("no request number is left")
        );
        let run = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(
            run["step_count"], 1,
            "nothing of the refused batch is stored"
        );
    }
);

#[tokio::test]
async fn appending_to_a_missing_run_is_a_404_before_the_body_is_read() {
    let app = TestApp::new(Backend::Sqlite).await;
    let r = app
        .post_json(
            &format!("/v1/runs/{}/steps", uuid::Uuid::new_v4()),
            "this is not JSON",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

#[tokio::test]
async fn a_request_past_the_time_limit_is_a_problem_with_retry_after() {
    use tower::ServiceExt;
    let app = TestApp::new(Backend::Sqlite).await;
    let doc = agentprof::synth::profiler_document(100, 7);
    let id = app.create_run(&json!({"requests": doc})).await;
    // Computing the metrics of 100 requests takes well over a millisecond.
    let mut state = app.state.clone();
    state.request_timeout = std::time::Duration::from_millis(1);
    let router = agentprof::server::app(state);
    let req = axum::http::Request::get(format!("/v1/runs/{id}/metrics"))
        .body(Body::empty())
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "busy");
}

on_both_backends!(
    a_batch_over_the_memory_budget_is_a_413_that_says_how_to_split,
    |backend| async move {
        let app = TestApp::with(
            backend,
            Options {
                max_batch_memory: 256 * 1024,
                ..Options::default()
            },
        )
        .await;
        let id = app.create_run(&json!({})).await;
        let doc = agentprof::synth::profiler_document(100, 11);
        let text = doc.to_string();
        let uri = format!("/v1/runs/{id}/steps");
        let mut advice = None;
        for (body, encoding) in [
            (text.clone().into_bytes(), None),
            (gzip(text.as_bytes()), Some("gzip")),
        ] {
            let mut headers = vec![("content-type", "application/json")];
            headers.extend(encoding.map(|e| ("content-encoding", e)));
            let r = app.request(Method::POST, &uri, &headers, body).await;
            assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
            let problem = r.json();
            assert_eq!(problem["code"], "batch-too-large");
            let detail = problem["detail"].as_str().unwrap().to_owned();
            let at_most: usize = detail
                .split("batches of at most ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no advice in {detail:?}"));
            advice = Some(at_most);
        }
        assert_eq!(
            app.get(&format!("/v1/runs/{id}")).await.json()["step_count"],
            0
        );

        // The advice works: a batch of that many of the same steps is stored.
        let at_most = advice.unwrap();
        let steps: Vec<Value> = doc
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["intermediate_steps"].as_array().unwrap().clone())
            .take(at_most)
            .collect();
        assert_eq!(steps.len(), at_most, "the premise: the run has more steps");
        let r = app.post_json(&uri, json!([steps]).to_string()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["steps"]["stored"], at_most);
    }
);

#[tokio::test]
async fn an_ingest_that_finds_every_slot_taken_waits_then_gets_a_503() {
    let app = TestApp::new(Backend::Sqlite).await;
    let id = app.create_run(&json!({})).await;
    let state = app.state_with_ingest_slots(1, std::time::Duration::from_millis(50));
    let router = agentprof::server::app(state.clone());
    let post = || {
        axum::http::Request::post(format!("/v1/runs/{id}/steps"))
            .header("content-type", "application/json")
            .body(Body::from(
                json!([[step("LLM_START", 1.0, "a")]]).to_string(),
            ))
            .unwrap()
    };
    use tower::ServiceExt;
    let held = state.ingest.admit().await.unwrap();
    let resp = router.clone().oneshot(post()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    drop(held);
    let resp = router.oneshot(post()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_output_the_runs_toolkit_lacks_is_a_404_even_to_a_conditional_get() {
    let app = TestApp::new(Backend::Sqlite).await;
    let id = app
        .create_run(&json!({"toolkit": "aiq-1.1", "requests": [[step("LLM_START", 1.0, "a")]]}))
        .await;
    for headers in [vec![], vec![("if-none-match", "*")]] {
        let r = app
            .request(
                Method::GET,
                &format!("/v1/runs/{id}/prediction_trie"),
                &headers,
                Vec::new(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{headers:?}");
        assert_eq!(r.json()["code"], "not-in-dialect");
    }
}
