//! Time windows: a window's outputs are those of a run holding just the requests that started
//! in it (same config and dialect), through `agentprof analyze` and over HTTP on both backends,
//! for several conformance cases, windows and both dialects. And what a window costs: a read
//! of a window is refused with `window-too-large` past the analysis budget, naming the most
//! recent window that fits, and bounds that are not times are 400s that name the parameter.

mod common;

use agentprof::analyze::{AnalyzeOptions, analyze_file};
use agentprof::outputs::OUTPUTS;
use agentprof::profiler::{Dialect, ProfilerConfig};
use agentprof::trace::{NumberedRequest, ParseOptions, parse};
use agentprof::window::{Window, request_start, rfc3339};
use axum::http::StatusCode;
use common::app::{Backend, Options, TestApp};
use common::{case_config, case_input, fixtures};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Cases with requests spread in time: profiler and eval forms, aiq and nat schemas, one with
/// many requests in flight at once.
const CASES: [&str; 5] = [
    "busy_40",
    "eval_all_12",
    "nat_chat_8",
    "realnat_concurrent_16",
    "edge_8",
];

/// A case's requests as numbered, and when each started.
struct Case {
    name: &'static str,
    config: Value,
    input: Vec<u8>,
    requests: Vec<NumberedRequest>,
}

impl Case {
    fn load(name: &'static str) -> Case {
        let dir = fixtures().join("cases").join(name);
        let input = case_input(&dir);
        let requests = parse(&input, &ParseOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_numbered();
        Case {
            name,
            config: case_config(&dir),
            input,
            requests,
        }
    }

    fn start(r: &NumberedRequest) -> Option<f64> {
        request_start(r.steps.iter().map(|s| s.payload.event_timestamp))
    }

    /// Windows over its starts: a middle third, the second half (open end), the first half
    /// (open start), and one after every request. Bounds fall between starts, so that their
    /// text form cannot move a request across them.
    fn windows(&self) -> Vec<Window> {
        let mut starts: Vec<f64> = self.requests.iter().filter_map(Case::start).collect();
        starts.sort_by(f64::total_cmp);
        starts.dedup();
        assert!(starts.len() >= 6, "{}: {} starts", self.name, starts.len());
        let between = |i: usize| (starts[i - 1] + starts[i]) / 2.0;
        let n = starts.len();
        let last = starts[n - 1];
        vec![
            Window {
                from: Some(between(n / 3)),
                to: Some(between(2 * n / 3)),
            },
            Window {
                from: Some(between(n / 2)),
                to: None,
            },
            Window {
                from: None,
                to: Some(between(n / 2)),
            },
            Window {
                from: Some(last + 1.0),
                to: Some(last + 2.0),
            },
        ]
    }

    /// Its requests in the profiler form, numbers kept: all of them, or a window's.
    fn document(&self, window: &Window) -> Vec<u8> {
        let items: Vec<Value> = self
            .requests
            .iter()
            .filter(|r| window.holds(Case::start(r)))
            .map(|r| json!({"request_number": r.number, "intermediate_steps": r.steps}))
            .collect();
        serde_json::to_vec(&items).unwrap()
    }

    fn held(&self, window: &Window) -> usize {
        let held = self.requests.iter();
        held.filter(|r| window.holds(Case::start(r))).count()
    }
}

/// The query string of a window: one bound as Unix seconds, the other as RFC 3339.
fn query(window: &Window) -> String {
    let mut q = Vec::new();
    if let Some(f) = window.from {
        q.push(format!("from={f}"));
    }
    if let Some(t) = window.to {
        q.push(format!("to={}", rfc3339(t).replace('+', "%2B")));
    }
    q.join("&")
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn analyze_writes_a_window_as_the_run_of_its_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for name in CASES {
        let case = Case::load(name);
        let config = ProfilerConfig::from_json(case.config.clone()).unwrap();
        let whole = tmp.path().join(format!("{name}.json"));
        std::fs::write(&whole, case.document(&Window::ALL)).unwrap();
        // The case as it came: an eval form keeps its eval fields, which only ATIF shows.
        let original = tmp.path().join(format!("{name}-original.json"));
        std::fs::write(&original, &case.input).unwrap();
        for dialect in [Dialect::Aiq11, Dialect::Nat19] {
            for (i, window) in case.windows().iter().enumerate() {
                let part = tmp.path().join(format!("{name}-{i}.json"));
                std::fs::write(&part, case.document(window)).unwrap();
                let run = |input: &Path, window: Window, out: &str| {
                    let out = tmp.path().join(out);
                    let options = AnalyzeOptions {
                        prices: Default::default(),
                        config: config.clone(),
                        dialect: Some(dialect),
                        window,
                    };
                    let summary = analyze_file(input, &out, &options)
                        .unwrap_or_else(|e| panic!("{name} {window:?}: {e}"));
                    (summary.requests, files_of(&out))
                };
                let (n, windowed) = run(&whole, *window, &format!("{name}-{dialect}-{i}-w"));
                let (m, alone) = run(&part, Window::ALL, &format!("{name}-{dialect}-{i}-a"));
                let (_, from_original) =
                    run(&original, *window, &format!("{name}-{dialect}-{i}-o"));
                assert_eq!((n, m), (case.held(window), case.held(window)), "{name}");
                assert_eq!(
                    windowed.keys().collect::<Vec<_>>(),
                    alone.keys().collect::<Vec<_>>(),
                    "{name} [{dialect}] {window:?}: the same files"
                );
                for (file, bytes) in &windowed {
                    assert!(
                        *bytes == alone[file],
                        "{name} [{dialect}] {window:?}: {file} differs from the run of the \
                         window's requests"
                    );
                    if !file.contains("atif") {
                        assert!(from_original[file] == *bytes, "{name} {window:?}: {file}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 200, "{checked} files compared");
}

/// Creates a run of `toolkit` from a document, returning its id.
async fn post_run(app: &TestApp, config: &Value, toolkit: Dialect, body: Vec<u8>) -> String {
    let id = app
        .create_run(&json!({"profiler_config": config, "toolkit": toolkit.as_str()}))
        .await;
    let r = app.post_json(&format!("/v1/runs/{id}/steps"), body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    id
}

on_both_backends!(a_window_is_the_run_of_its_requests, |backend| async move {
    let app = TestApp::new(backend).await;
    let mut compared = 0;
    for name in CASES {
        let case = Case::load(name);
        for dialect in [Dialect::Aiq11, Dialect::Nat19] {
            let whole = post_run(&app, &case.config, dialect, case.document(&Window::ALL)).await;
            // The case as it came (an eval form keeps its eval fields, which only ATIF shows).
            let original = post_run(&app, &case.config, dialect, case.input.clone()).await;
            for window in case.windows() {
                let alone = post_run(&app, &case.config, dialect, case.document(&window)).await;
                let q = query(&window);
                let what = format!("{name} [{dialect}] {q}");
                let mut paths: Vec<String> = OUTPUTS
                    .iter()
                    .filter(|o| o.offered_in(dialect))
                    .map(|o| o.path.to_owned())
                    .collect();
                paths.push("timeline?offset=0&limit=200".to_owned());
                for path in &paths {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    let expected = app.get(&format!("/v1/runs/{alone}/{path}")).await;
                    assert_eq!(expected.status, StatusCode::OK, "{what} {path}");
                    let windowed = app.get(&format!("/v1/runs/{whole}/{path}{sep}{q}")).await;
                    assert_eq!(windowed.status, StatusCode::OK, "{what} {path}");
                    assert!(
                        windowed.body == expected.body,
                        "{what}: {path} differs from the run of the window's requests"
                    );
                    if path != "atif" {
                        let from_original = app
                            .get(&format!("/v1/runs/{original}/{path}{sep}{q}"))
                            .await;
                        assert!(from_original.body == expected.body, "{what}: {path}");
                    }
                    compared += 1;
                }
                // A window has its own validator, and it revalidates.
                let metrics = app.get(&format!("/v1/runs/{whole}/metrics?{q}")).await;
                let tag = metrics.header("etag").unwrap().to_owned();
                let all = app.get(&format!("/v1/runs/{whole}/metrics")).await;
                assert_ne!(all.header("etag"), Some(tag.as_str()), "{what}");
                let again = app
                    .request(
                        axum::http::Method::GET,
                        &format!("/v1/runs/{whole}/metrics?{q}"),
                        &[("if-none-match", &tag)],
                        axum::body::Body::empty(),
                    )
                    .await;
                assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{what}");
                // Comparing two windows is comparing the two runs of their requests.
                let (f, t) = (window.from, window.to);
                let windowed = app
                    .post_json(
                        "/v1/compare",
                        json!({"baseline": whole, "candidate": whole, "baseline_from": f,
                               "baseline_to": t, "candidate_from": f, "candidate_to": t})
                        .to_string(),
                    )
                    .await;
                let expected = app
                    .post_json(
                        "/v1/compare",
                        json!({"baseline": alone, "candidate": alone}).to_string(),
                    )
                    .await;
                assert_eq!(
                    windowed.status,
                    StatusCode::OK,
                    "{what}: {}",
                    windowed.text()
                );
                let strip = |mut v: Value| {
                    v.as_object_mut().unwrap().remove("baseline");
                    v.as_object_mut().unwrap().remove("candidate");
                    v
                };
                assert_eq!(strip(windowed.json()), strip(expected.json()), "{what}");
            }
        }
    }
    assert!(compared > 400, "{compared} outputs compared");
});

on_both_backends!(
    a_window_past_the_budget_is_refused_with_one_that_fits,
    |backend| async move {
        // medium_50's /metrics is estimated at over 1 MiB: a 1 MiB budget takes a part of it.
        let app = TestApp::with(
            backend,
            Options {
                analysis_memory: 1 << 20,
                ..Options::default()
            },
        )
        .await;
        let case = Case::load("medium_50");
        let id = post_run(&app, &case.config, Dialect::Nat19, case.input.clone()).await;
        let r = app.get(&format!("/v1/runs/{id}/metrics")).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let problem = r.json();
        assert_eq!(problem["code"], "window-too-large", "{problem}");
        assert_eq!(problem["memory"]["budget_bytes"], 1 << 20);
        assert!(problem["memory"]["estimated_bytes"].as_u64().unwrap() > 1 << 20);
        let from = problem["memory"]["fits"]["from"]
            .as_f64()
            .unwrap_or_else(|| panic!("a window that fits: {problem}"));
        assert!(problem["memory"]["fits"]["to"].is_null());
        assert!(
            problem["detail"].as_str().unwrap().contains("from="),
            "{problem}"
        );
        // The window named fits, and holds the latest requests.
        let fits = app.get(&format!("/v1/runs/{id}/metrics?from={from}")).await;
        assert_eq!(fits.status, StatusCode::OK, "{}", fits.text());
        let window = Window {
            from: Some(from),
            to: None,
        };
        let held = case.held(&window);
        assert!(held > 0 && held < case.requests.len(), "{held} requests");
        let latest = case
            .requests
            .iter()
            .filter_map(Case::start)
            .fold(f64::MIN, f64::max);
        assert!(window.holds(Some(latest)));
        // A smaller output of the whole run still fits.
        let small = app.get(&format!("/v1/runs/{id}/forecast")).await;
        assert_eq!(small.status, StatusCode::OK, "{}", small.text());

        // Under a budget that not even the latest request fits, no window is offered.
        let tiny = TestApp::with(
            backend,
            Options {
                analysis_memory: 64 << 10,
                ..Options::default()
            },
        )
        .await;
        let id = post_run(&tiny, &case.config, Dialect::Nat19, case.input.clone()).await;
        let r = tiny.get(&format!("/v1/runs/{id}/metrics")).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.json()["memory"]["fits"].is_null(), "{}", r.text());
        // Streaming the steps takes no analysis, so it is never refused.
        let steps = tiny.get(&format!("/v1/runs/{id}/requests")).await;
        assert_eq!(steps.status, StatusCode::OK);
    }
);

on_both_backends!(
    bounds_that_are_not_times_name_their_parameter,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let id = app.create_run(&json!({})).await;
        for (query, param) in [
            ("from=yesterday", "from"),
            ("to=NaN", "to"),
            ("from=1&to=2024-13-01T00:00:00Z", "to"),
        ] {
            for path in ["metrics", "requests", "timeline"] {
                let r = app.get(&format!("/v1/runs/{id}/{path}?{query}")).await;
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}?{query}");
                let p = r.json();
                assert_eq!(p["code"], "invalid-query", "{p}");
                assert_eq!(p["errors"][0]["path"], format!("/{param}"), "{p}");
            }
        }
        let r = app
            .post_json(
                "/v1/compare",
                json!({"baseline": id, "candidate": id, "candidate_to": "soon"}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert_eq!(r.json()["errors"][0]["path"], "/candidate_to");
    }
);

/// SQLite reads a window's requests by the index on their start, and its steps by the steps'
/// primary key: no table scan. (PostgreSQL's plan, on a run of millions of steps, is in
/// BENCHMARKS.md#windows-on-a-2m-step-run.)
#[tokio::test]
async fn sqlite_reads_a_window_through_its_index() {
    let store = agentprof::store::sqlite::SqliteStore::connect("sqlite::memory:")
        .await
        .unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    let sql = format!("EXPLAIN QUERY PLAN {}", agentprof::store::WINDOW_STEPS_SQL);
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(uuid::Uuid::nil())
        .bind(0.0)
        .bind(1.0)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert!(
        plan.iter().any(|d| d.contains("requests_by_start")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|d| d.starts_with("SCAN")), "{plan:?}");
}
