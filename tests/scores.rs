//! Evaluator scores (docs/scores.md): put on a run's metadata by an eval, shown in the run's view,
//! summarised in /stats, and compared between runs by the same paired tests as latency and
//! tokens. Both backends.

mod common;

use axum::http::{Method, StatusCode};
use common::app::{Backend, TestApp};
use common::*;
use serde_json::{Value, json};

/// An eval of `n` items, one LLM call each, as the eval form (ids `q0`...).
fn eval_doc(n: usize, latency: f64) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let t = 10.0 * i as f64;
            json!({"id": format!("q{i}"), "intermediate_steps": [
                step("LLM_START", t, &format!("c{i}")),
                step("LLM_END", t + latency + 0.01 * i as f64, &format!("c{i}")),
            ]})
        })
        .collect();
    Value::Array(items)
}

async fn patch(app: &TestApp, id: &str, body: Value) -> Value {
    let r = app
        .request(
            Method::PATCH,
            &format!("/v1/runs/{id}"),
            &[("content-type", "application/merge-patch+json")],
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

fn scores(values: &[f64]) -> Value {
    let items: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"id": format!("q{i}"), "request": format!("q{i}"), "scores": {"accuracy": s}}))
        .collect();
    json!({"metadata": {"eval": {"items": items}}})
}

on_both_backends!(
    scores_are_shown_summarised_and_compared,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let base = app.create_run(&json!({"requests": eval_doc(8, 1.0)})).await;
        let cand = app.create_run(&json!({"requests": eval_doc(8, 1.0)})).await;
        let stats_before = app.get(&format!("/v1/runs/{base}/stats")).await;
        assert!(stats_before.json().get("scores").is_none());
        let metrics_before = app.get(&format!("/v1/runs/{base}/metrics")).await;

        let view = patch(
            &app,
            &base,
            scores(&[0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]),
        )
        .await;
        assert_eq!(view["scores"]["accuracy"]["n"], 8);
        assert_eq!(view["scores"]["accuracy"]["mean"], 0.25);
        patch(
            &app,
            &cand,
            scores(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        )
        .await;

        // The statistics follow the new metadata (a new ETag, not the cached document).
        let stats = app.get(&format!("/v1/runs/{base}/stats")).await;
        assert_ne!(stats.header("etag"), stats_before.header("etag"));
        // Outputs that do not read the scores keep their cache entry and ETag.
        let metrics = app.get(&format!("/v1/runs/{base}/metrics")).await;
        assert_eq!(metrics.header("etag"), metrics_before.header("etag"));
        assert_eq!(stats.json()["scores"]["accuracy"]["n"], 8);
        assert_eq!(stats.json()["scores"]["accuracy"]["mean"], 0.25);

        let r = app
            .post_json(
                "/v1/compare",
                json!({"baseline": base, "candidate": cand}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let c = r.json();
        assert_eq!(c["pairing"], "external_id");
        let accuracy = &c["metrics"]["score:accuracy"];
        assert_eq!(accuracy["difference_of_means"], 0.75, "{accuracy}");
        assert!(accuracy["p_value"].as_f64().unwrap() < 0.01, "{accuracy}");
        // Holm's correction runs over the scores too.
        assert!(accuracy["p_value_holm"].as_f64().is_some());
        // Latency did not change.
        let latency = &c["metrics"]["llm_latency"];
        assert_eq!(latency["difference_of_means"], 0.0, "{latency}");
    }
);
