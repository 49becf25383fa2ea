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

on_both_backends!(
    two_evals_of_one_dataset_pair_by_item,
    |backend| async move {
        // As the toolkit plugin sends them: each request keyed by the workflow run's own id,
        // which differs between evals, and the eval's items name the request they ran as.
        // The candidate answered the items in reverse order, each 0.5 s slower.
        let n = 8;
        let run = |prefix: &str, order: &dyn Fn(usize) -> usize, extra: f64| {
            let requests: Vec<Value> = (0..n)
                .map(|j| {
                    let item = order(j);
                    let t = 10.0 * j as f64;
                    let latency = 1.0 + 0.1 * item as f64 + extra;
                    json!({"id": format!("{prefix}{j}"), "intermediate_steps": [
                        step("LLM_START", t, &format!("c{j}")),
                        step("LLM_END", t + latency, &format!("c{j}")),
                    ]})
                })
                .collect();
            let items: Vec<Value> = (0..n)
                .map(|j| {
                    json!({"id": format!("q{}", order(j)), "request": format!("{prefix}{j}"),
                                "scores": {"accuracy": 1.0}})
                })
                .collect();
            (
                Value::Array(requests),
                json!({"metadata": {"eval": {"items": items}}}),
            )
        };
        let app = TestApp::new(backend).await;
        let (doc, meta) = run("wf-a-", &|j| j, 0.0);
        let base = app.create_run(&json!({"requests": doc})).await;
        patch(&app, &base, meta).await;
        let (doc, meta) = run("wf-b-", &|j| n - 1 - j, 0.5);
        let cand = app.create_run(&json!({"requests": doc})).await;
        patch(&app, &cand, meta).await;
        let compare = || async {
            let body = json!({"baseline": base, "candidate": cand}).to_string();
            app.post_json("/v1/compare", body).await.json()
        };
        let c = compare().await;
        assert_eq!(c["pairing"], "dataset_item", "{c}");
        let latency = &c["metrics"]["llm_latency"];
        assert_eq!(latency["n_pairs"], 8, "{latency}");
        // Paired item by item, every difference is exactly 0.5 s.
        let d = latency["difference_of_means"].as_f64().unwrap();
        assert!((d - 0.5).abs() < 1e-9, "{latency}");
        assert!(latency["p_value"].as_f64().unwrap() < 1e-6, "{latency}");
        // Without the items the two evals' requests do not pair.
        patch(&app, &cand, json!({"metadata": {"eval": null}})).await;
        assert_eq!(compare().await["pairing"], Value::Null);
    }
);
