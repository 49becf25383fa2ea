//! `/stats` and `/v1/compare` with known answers, on both backends.

mod common;

use common::app::{Backend, TestApp};
use common::*;
use serde_json::{Value, json};

fn shift_llm_ends(doc: &mut Value, by: f64) {
    for req in doc.as_array_mut().unwrap() {
        for step in req["intermediate_steps"].as_array_mut().unwrap() {
            if step["payload"]["event_type"] == "LLM_END" {
                let ts = step["payload"]["event_timestamp"].as_f64().unwrap();
                step["payload"]["event_timestamp"] = json!(ts + by);
            }
        }
    }
}

async fn create(app: &TestApp, doc: &Value) -> String {
    app.create_run(&json!({"requests": doc})).await
}

async fn compare(app: &TestApp, a: &str, b: &str) -> Value {
    let r = app
        .post_json(
            "/v1/compare",
            json!({"baseline": a, "candidate": b}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

on_both_backends!(stats_of_a_run, |backend| async move {
    let app = TestApp::new(backend).await;
    let case = fixtures().join("cases/edge_8");
    let id = app
        .create_run(
            &serde_json::from_slice::<Value>(&read_maybe_gz(&case, "input.json").unwrap())
                .map(|d| json!({"requests": d}))
                .unwrap(),
        )
        .await;
    let s = app.get(&format!("/v1/runs/{id}/stats")).await;
    assert_eq!(s.status, 200, "{}", s.text());
    let s = s.json();
    // edge_8 has an orphan LLM_END and an LLM_START that never ends (request 2).
    assert_eq!(s["llm_latency"]["unmatched_ends"], 1);
    assert_eq!(s["llm_latency"]["unmatched_starts"], 1);
    let overall = &s["llm_latency"]["overall"];
    let n = overall["n"].as_i64().unwrap();
    assert!(n > 10);
    let [lo, hi] = [
        overall["mean_ci95"]["t"][0].as_f64().unwrap(),
        overall["mean_ci95"]["t"][1].as_f64().unwrap(),
    ];
    let mean = overall["mean"].as_f64().unwrap();
    assert!(lo < mean && mean < hi);
    assert!(overall["mean_ci95"]["bootstrap"].is_array());
    assert!(
        s["time_to_first_token"]["n"].as_i64().unwrap() > 0,
        "edge_8 streams tokens"
    );
    assert!(
        s["throughput"]["ci95"][0].as_f64().unwrap()
            < s["throughput"]["requests_per_second"].as_f64().unwrap()
    );
    let pc = &s["prefix_cache"]["meta/llama-3.1-70b-instruct"];
    assert_eq!(pc["tokenization"], "whitespace");
    assert!(
        pc["cacheable_share"].as_f64().unwrap() > 0.5,
        "ReAct prompts share a long system prompt"
    );
    assert!(s["tool_latency"].as_object().unwrap().len() >= 2);
});

on_both_backends!(compare_with_an_exact_copy, |backend| async move {
    let app = TestApp::new(backend).await;
    let doc = agentprof::synth::profiler_document(40, 3);
    let (a, b) = (create(&app, &doc).await, create(&app, &doc).await);
    let c = compare(&app, &a, &b).await;
    assert_eq!(c["paired"], true);
    assert_eq!(c["pairing"], "request_number");
    let metrics = c["metrics"].as_object().unwrap();
    assert_eq!(
        metrics.len(),
        agentprof::profiler::statistics::compare::METRICS.len(),
        "{c}"
    );
    for (name, m) in metrics {
        assert_eq!(m["p_value"], 1.0, "{name}");
        assert_eq!(m["difference_of_means"], 0.0, "{name}");
        assert_eq!(m["significant"], false, "{name}");
        assert_eq!(m["wilcoxon"]["p_value"], 1.0, "{name}");
    }
});

on_both_backends!(compare_detects_a_half_second_shift, |backend| async move {
    let app = TestApp::new(backend).await;
    let doc = agentprof::synth::profiler_document(40, 5);
    let mut shifted = doc.clone();
    shift_llm_ends(&mut shifted, 0.5);
    let (a, b) = (create(&app, &doc).await, create(&app, &shifted).await);
    let m = &compare(&app, &a, &b).await["metrics"]["llm_latency"];
    assert_eq!(m["test"], "paired_t");
    assert!(m["p_value"].as_f64().unwrap() < 1e-6, "{m}");
    let [lo, hi] = [
        m["ci95"][0].as_f64().unwrap(),
        m["ci95"][1].as_f64().unwrap(),
    ];
    assert!(lo <= 0.5 && 0.5 <= hi, "[{lo}, {hi}]");
    assert!(m["wilcoxon"]["p_value"].as_f64().unwrap() < 1e-6);
    assert_eq!(m["significant"], true);

    // Unpaired (different requests): Welch on the calls still finds it.
    let mut renumbered = shifted.clone();
    for req in renumbered.as_array_mut().unwrap() {
        req["request_number"] = json!(req["request_number"].as_i64().unwrap() + 1000);
    }
    let c = create(&app, &renumbered).await;
    let w = compare(&app, &a, &c).await;
    assert_eq!(w["paired"], false);
    let m = &w["metrics"]["llm_latency"];
    assert_eq!(m["test"], "welch_t");
    assert!(m["p_value"].as_f64().unwrap() < 1e-6, "{m}");
    let [lo, hi] = [
        m["ci95"][0].as_f64().unwrap(),
        m["ci95"][1].as_f64().unwrap(),
    ];
    assert!(lo <= 0.5 && 0.5 <= hi, "[{lo}, {hi}]");
});

#[tokio::test]
async fn compare_validates_its_body() {
    let app = TestApp::new(Backend::Sqlite).await;
    let r = app
        .post_json("/v1/compare", json!({"baseline": "x"}).to_string())
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["errors"][0]["path"], "/baseline");
    let a = app.create_run(&json!({})).await;
    let missing = uuid::Uuid::new_v4();
    let r = app
        .post_json(
            "/v1/compare",
            json!({"baseline": a, "candidate": missing}).to_string(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains(&missing.to_string())
    );
}
