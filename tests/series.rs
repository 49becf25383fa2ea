//! Rollups and `/series`: on both backends, the buckets of a run's series are what its steps
//! say, counted here from the steps directly (requests by the minute of their first step,
//! calls by the minute of their END step, tokens, and latency percentiles within the sketch's
//! 1% of the exact ones), however the steps arrived: whole, in batches that split requests,
//! partly duplicated, with a request's earliest step last. Retention deletes what is older than
//! a run keeps and takes it back out of the rollups; runs stored before rollups existed get
//! theirs built from their steps.

mod common;

use agentprof::trace::{EventType, IntermediateStep, NumberedRequest, ParseOptions, parse};
use axum::http::{Method, StatusCode};
use common::app::{Backend, TestApp};
use common::{case_input, fixtures};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const CASES: [&str; 5] = [
    "busy_40",
    "large_500",
    "nat_chat_8",
    "realnat_concurrent_16",
    "eval_all_12",
];

fn requests_of(name: &str) -> Vec<NumberedRequest> {
    let input = case_input(&fixtures().join("cases").join(name));
    parse(&input, &ParseOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_numbered()
}

/// What one bucket should hold, counted from the steps.
#[derive(Debug, Default)]
struct Expected {
    requests: i64,
    llm_calls: i64,
    tool_calls: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    llm_latencies: Vec<f64>,
    tool_latencies: Vec<f64>,
}

fn bucket_of(t: f64, step: i64) -> i64 {
    (t / step as f64).floor() as i64 * step
}

/// The buckets of `step` seconds the steps of `requests` fill.
fn expected(requests: &[NumberedRequest], step: i64) -> BTreeMap<i64, Expected> {
    let mut out: BTreeMap<i64, Expected> = BTreeMap::new();
    for r in requests {
        let start = r
            .steps
            .iter()
            .map(|s| s.payload.event_timestamp)
            .min_by(f64::total_cmp);
        if let Some(start) = start {
            out.entry(bucket_of(start, step)).or_default().requests += 1;
        }
        for s in &r.steps {
            let p = &s.payload;
            let e = out.entry(bucket_of(p.event_timestamp, step)).or_default();
            let latency = p.span_event_timestamp.map(|t| p.event_timestamp - t);
            match p.event_type {
                EventType::LlmEnd => {
                    e.llm_calls += 1;
                    if let Some(u) = &p.usage_info {
                        e.prompt_tokens += u.token_usage.prompt_tokens;
                        e.completion_tokens += u.token_usage.completion_tokens;
                    }
                    e.llm_latencies.extend(latency);
                }
                EventType::ToolEnd => {
                    e.tool_calls += 1;
                    e.tool_latencies.extend(latency);
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether a sketch's quantile is within 1% (and the half microsecond it rounds to) of the
/// value of that rank. The rank is `ceil(q * n)`, or the one below when the float product
/// lands a hair above a whole number.
fn close_to_rank(got: f64, values: &mut [f64], q: f64) -> bool {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    [rank, rank.saturating_sub(1).max(1)].iter().any(|&r| {
        let want = values[r - 1].max(0.0);
        (got - want).abs() <= want * 0.01 + 1e-6
    })
}

/// Checks a `/series` answer against the steps, bucket by bucket; returns the buckets with
/// something in them and the latency percentiles compared.
fn check(series: &Value, requests: &[NumberedRequest], what: &str) -> (usize, usize) {
    let step = series["step"].as_i64().unwrap();
    let mut want = expected(requests, step);
    let (mut seen, mut percentiles) = (0, 0);
    for b in series["buckets"].as_array().unwrap() {
        let start = b["start"].as_i64().unwrap();
        let e = want.remove(&start).unwrap_or_default();
        let at = format!("{what}: bucket {start}");
        assert_eq!(b["requests"], e.requests, "{at}: requests");
        assert_eq!(b["llm_calls"], e.llm_calls, "{at}: llm_calls");
        assert_eq!(b["tool_calls"], e.tool_calls, "{at}: tool_calls");
        assert_eq!(b["prompt_tokens"], e.prompt_tokens, "{at}: prompt_tokens");
        assert_eq!(
            b["completion_tokens"], e.completion_tokens,
            "{at}: completion_tokens"
        );
        for (field, mut values) in [
            ("llm_latency", e.llm_latencies),
            ("tool_latency", e.tool_latencies),
        ] {
            let q = &b[field];
            if values.is_empty() {
                assert!(q.is_null(), "{at}: {field} {q}");
                continue;
            }
            assert_eq!(q["count"], values.len(), "{at}: {field} count");
            for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
                let got = q[name].as_f64().unwrap();
                assert!(
                    close_to_rank(got, &mut values, p),
                    "{at}: {field}.{name} {got} vs {values:?}"
                );
                percentiles += 1;
            }
        }
        if e.requests + e.llm_calls + e.tool_calls > 0 {
            seen += 1;
        }
    }
    let left: Vec<_> = want
        .iter()
        .filter(|(_, e)| e.requests + e.llm_calls + e.tool_calls > 0)
        .collect();
    assert!(
        left.is_empty(),
        "{what}: buckets missing from the series: {left:?}"
    );
    (seen, percentiles)
}

/// The run's series over its whole range, checked against its own counts.
async fn series_of(app: &TestApp, id: &str, step: i64) -> Value {
    let r = app.get(&format!("/v1/runs/{id}/series?step={step}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let series = r.json();
    let run = app.get(&format!("/v1/runs/{id}")).await.json();
    let total = |f: &str| -> i64 {
        series["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[f].as_i64().unwrap())
            .sum()
    };
    assert_eq!(total("requests"), run["request_count"].as_i64().unwrap());
    assert_eq!(
        total("llm_calls"),
        run["summary"]["llm_calls"].as_i64().unwrap()
    );
    series
}

fn document(requests: &[NumberedRequest]) -> String {
    let items: Vec<Value> = requests
        .iter()
        .map(|r| json!({"request_number": r.number, "intermediate_steps": r.steps}))
        .collect();
    serde_json::to_string(&items).unwrap()
}

async fn append(app: &TestApp, id: &str, requests: &[NumberedRequest]) -> Value {
    let r = app
        .post_json(&format!("/v1/runs/{id}/steps"), document(requests))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

on_both_backends!(series_are_what_the_steps_say, |backend| async move {
    let app = TestApp::new(backend).await;
    let (mut buckets, mut percentiles) = (0, 0);
    for name in CASES {
        let requests = requests_of(name);
        let id = app.create_run(&json!({"name": name})).await;
        append(&app, &id, &requests).await;
        for step in [60, 300] {
            let series = series_of(&app, &id, step).await;
            let (b, p) = check(&series, &requests, &format!("{name} step {step}"));
            buckets += b;
            percentiles += p;
        }
    }
    assert!(buckets >= 10, "{buckets} buckets compared");
    assert!(percentiles >= 30, "{percentiles} percentiles compared");
});

on_both_backends!(
    partial_duplicates_and_late_steps_count_once,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let requests = requests_of("busy_40");
        let id = app.create_run(&json!({})).await;
        // Every request's later half first, then everything (the first halves are new, the rest
        // already stored): each request's start moves to its earliest step, minutes earlier.
        let later: Vec<NumberedRequest> = requests
            .iter()
            .map(|r| NumberedRequest {
                steps: r.steps[r.steps.len() / 2..].to_vec(),
                ..r.clone()
            })
            .collect();
        append(&app, &id, &later).await;
        check(&series_of(&app, &id, 60).await, &later, "later halves");
        let outcome = append(&app, &id, &requests).await;
        assert!(outcome["steps"]["skipped_duplicate"].as_i64().unwrap() > 0);
        assert!(outcome["steps"]["stored"].as_i64().unwrap() > 0);
        check(&series_of(&app, &id, 60).await, &requests, "then all");
        // The same again changes nothing.
        append(&app, &id, &requests).await;
        check(&series_of(&app, &id, 60).await, &requests, "retried");
    }
);

/// `case` with its times moved so that its last step is `ago` seconds before now.
fn recent(name: &str, ago: f64) -> Vec<NumberedRequest> {
    let mut requests = requests_of(name);
    let last = requests
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.payload.event_timestamp))
        .fold(f64::MIN, f64::max);
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let shift = now - ago - last;
    let move_step = |s: &mut IntermediateStep| {
        s.payload.event_timestamp += shift;
        if let Some(t) = s.payload.span_event_timestamp.as_mut() {
            *t += shift;
        }
    };
    for r in &mut requests {
        r.steps.iter_mut().for_each(move_step);
    }
    requests
}

on_both_backends!(
    retention_deletes_what_is_older_than_the_run_keeps,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let day = 86_400.0;
        // Requests that ended three days ago, and the same requests (renumbered) a minute ago.
        let old = recent("busy_40", 3.0 * day);
        let mut new = recent("busy_40", 60.0);
        let offset = old.len() as i64;
        for r in &mut new {
            r.number += offset;
        }
        let id = app
            .create_run(&json!({"name": "live", "retention_seconds": 86_400}))
            .await;
        append(&app, &id, &old).await;
        append(&app, &id, &new).await;
        let before = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(before["retention_seconds"], 86_400);
        assert_eq!(before["request_count"], 2 * old.len());

        let swept = agentprof::live::sweep_expired(
            app.state.store.as_ref(),
            time::OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(swept.requests, old.len() as u64);
        let after = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(after["request_count"], new.len());
        let steps: usize = new.iter().map(|r| r.steps.len()).sum();
        assert_eq!(after["step_count"], steps);
        assert!(after["version"].as_i64() > before["version"].as_i64());
        assert!(after["summary"]["first_event_at"].as_f64() > Some(before_time(&new)));
        // The series and the outputs are those of the requests kept.
        check(&series_of(&app, &id, 60).await, &new, "after the sweep");
        // No rollup row is left of the deleted requests (read from the store, in buckets of one
        // minute: the API's range starts at the run's first step).
        let from = (before_time(&old) / 60.0).floor() as i64;
        let run_id: uuid::Uuid = id.parse().unwrap();
        let buckets = app
            .state
            .store
            .series(run_id, from, from + 4 * 24 * 60, 1)
            .await
            .unwrap()
            .unwrap();
        let new_start = (before_time(&new) / 60.0).floor() as i64 * 60;
        let old_left: i64 = buckets
            .iter()
            .filter(|b| b.start < new_start)
            .map(|b| b.requests + b.llm_calls + b.tool_calls)
            .sum();
        assert_eq!(old_left, 0);
        let requests: i64 = buckets.iter().map(|b| b.requests).sum();
        assert_eq!(requests, new.len() as i64);
        let kept = app.get(&format!("/v1/runs/{id}/requests")).await;
        assert_eq!(kept.status, StatusCode::OK);
        // A second sweep finds nothing.
        let again = agentprof::live::sweep_expired(
            app.state.store.as_ref(),
            time::OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(again.requests, 0);

        // PATCH sets and clears the retention; bad values name the field.
        let patch = |body: Value| {
            let app = &app;
            let id = id.clone();
            async move {
                app.request(
                    Method::PATCH,
                    &format!("/v1/runs/{id}"),
                    &[("content-type", "application/merge-patch+json")],
                    axum::body::Body::from(body.to_string()),
                )
                .await
            }
        };
        let r = patch(json!({"retention_seconds": null})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.json()["retention_seconds"].is_null());
        let r = patch(json!({"retention_seconds": 5})).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert!(r.text().contains("/retention_seconds"), "{}", r.text());
        let r = app
            .post_json(
                "/v1/runs",
                json!({"retention_seconds": "a day"}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert!(r.text().contains("/retention_seconds"), "{}", r.text());
    }
);

/// The earliest step time of `requests`, less a little: what the run's first step must now
/// be after.
fn before_time(requests: &[NumberedRequest]) -> f64 {
    requests
        .iter()
        .flat_map(|r| r.steps.iter().map(|s| s.payload.event_timestamp))
        .fold(f64::MAX, f64::min)
        - 1.0
}

on_both_backends!(bad_series_queries_are_400s, |backend| async move {
    let app = TestApp::new(backend).await;
    let requests = requests_of("small_5");
    let id = app.create_run(&json!({})).await;
    append(&app, &id, &requests).await;
    for (q, at) in [
        ("step=59", "/step"),
        ("step=90", "/step"),
        ("step=abc", "/step"),
        ("from=yesterday", "/from"),
    ] {
        let r = app.get(&format!("/v1/runs/{id}/series?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text());
        assert_eq!(r.json()["errors"][0]["path"], at, "{q}: {}", r.text());
    }
    // A range of more than 10,080 buckets: its latest 10,080, marked.
    let long = app
        .get(&format!(
            "/v1/runs/{id}/series?from=-62135596800&to=253402300799&step=60"
        ))
        .await;
    assert_eq!(long.status, StatusCode::OK, "{}", long.text());
    // Within the run's own steps (a few minutes), not truncated.
    assert_eq!(long.json()["truncated"], false);
    let r = app
        .create_run(&json!({"requests": [[
            {"payload": {"event_type": "LLM_END", "event_timestamp": 1.0e9, "UUID": "a"}},
            {"payload": {"event_type": "LLM_END", "event_timestamp": 1.1e9, "UUID": "b"}}
        ]]}))
        .await;
    let wide = app
        .get(&format!("/v1/runs/{r}/series?step=60"))
        .await
        .json();
    assert_eq!(wide["truncated"], true);
    assert_eq!(wide["buckets"].as_array().unwrap().len(), 10_080);
    assert_eq!(
        wide["to"].as_i64().unwrap() - wide["from"].as_i64().unwrap(),
        10_080 * 60
    );
    // Retention given as a number with no fraction is an integer, as JSON Schema says.
    let r = app
        .post_json("/v1/runs", json!({"retention_seconds": 3600.0}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["retention_seconds"], 3600);
    // Without a step, the server picks one that fits.
    let r = app.get(&format!("/v1/runs/{id}/series")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["step"], 60);
    let missing = app
        .get(&format!("/v1/runs/{}/series", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // An empty run has no buckets.
    let empty = app.create_run(&json!({})).await;
    let r = app.get(&format!("/v1/runs/{empty}/series")).await.json();
    assert_eq!(r["buckets"], json!([]));
});

// Runs stored before rollups existed: the migration marks them, and the server builds their
// rollups from their steps (here: one whose rows were dropped and marked, as the migration
// leaves every older run).
on_both_backends!(rollups_are_built_for_older_runs, |backend| async move {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let (app, url) = match backend {
        Backend::Postgres => {
            let db = common::app::PgTestDb::create().await;
            let store = agentprof::store::postgres::PgStore::connect(&db.url)
                .await
                .unwrap();
            let url = db.url.clone();
            let app = TestApp::on_store(
                backend,
                std::sync::Arc::new(store),
                Some(db),
                Default::default(),
            );
            (app, url)
        }
        Backend::Sqlite => {
            let path = dir.path().join("a.db");
            let store = agentprof::store::sqlite::SqliteStore::open(&path)
                .await
                .unwrap();
            let app = TestApp::on_store(
                backend,
                std::sync::Arc::new(store),
                None,
                Default::default(),
            );
            (app, format!("sqlite://{}", path.display()))
        }
    };
    let requests = requests_of("realnat_concurrent_16");
    let id = app.create_run(&json!({})).await;
    append(&app, &id, &requests).await;
    let forget = "UPDATE runs SET rollups_ready = false";
    match backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(forget).execute(&mut c).await.unwrap();
            sqlx::query("DELETE FROM rollups")
                .execute(&mut c)
                .await
                .unwrap();
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(forget).execute(&mut c).await.unwrap();
            sqlx::query("DELETE FROM rollups")
                .execute(&mut c)
                .await
                .unwrap();
        }
    }
    let r = app.get(&format!("/v1/runs/{id}/series")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    // A batch into a run whose rollups are pending is stored (and counted by the build).
    let more = requests
        .clone()
        .into_iter()
        .map(|r| NumberedRequest {
            number: r.number + 100,
            ..r
        })
        .collect::<Vec<_>>();
    append(&app, &id, &more).await;
    let built = agentprof::live::build_pending_rollups(app.state.store.as_ref()).await;
    assert_eq!(built, 1);
    let all: Vec<NumberedRequest> = requests.into_iter().chain(more).collect();
    check(&series_of(&app, &id, 60).await, &all, "built");
    assert_eq!(
        agentprof::live::build_pending_rollups(app.state.store.as_ref()).await,
        0
    );
});

/// The server's own sweep, every second here: a run that keeps a day loses its requests from
/// three days ago and keeps those from a minute ago, within a few sweeps.
#[tokio::test]
async fn the_server_sweeps_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = common::process::Server::spawn(&[
        ("AGENTPROF_DATA_DIR", data),
        ("AGENTPROF_RETENTION_SWEEP_SECS", "1"),
    ]);
    let client = reqwest::Client::new();
    server.ready(&client).await;
    let old = recent("small_5", 3.0 * 86_400.0);
    let mut new = recent("small_5", 60.0);
    for r in &mut new {
        r.number += 100;
    }
    let all: Vec<NumberedRequest> = old.iter().chain(&new).cloned().collect();
    let body = json!({"retention_seconds": 86_400, "requests": serde_json::from_str::<Value>(&document(&all)).unwrap()});
    let run = common::process::post_run(&client, &server.base, body.to_string()).await;
    let url = format!("{}/v1/runs/{}", server.base, run["id"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = common::process::get_json(&client, &url).await;
        if now["request_count"] == new.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not swept within 20 one-second sweeps: {now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let numbers = common::process::get_json(&client, &format!("{url}/series?step=60")).await;
    let requests: i64 = numbers["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(requests, new.len() as i64);
    server.stop();
}

// A client that names every call's model differently grows a minute's rollups by at most
// MAX_NAMES_PER_MINUTE rows per kind (the rest count as "(other)"), the totals stay exact, and
// retention takes them all back out.
on_both_backends!(invented_names_are_bounded, |backend| async move {
    let app = TestApp::new(backend).await;
    let mut requests = recent("busy_40", 3.0 * 86_400.0);
    let mut n = 0;
    for r in &mut requests {
        for s in &mut r.steps {
            if s.payload.event_type == EventType::LlmEnd {
                s.payload.name = Some(format!("invented-model-{n}"));
                n += 1;
            }
        }
    }
    assert!(n > agentprof::rollup::MAX_NAMES_PER_MINUTE as usize);
    let id = app.create_run(&json!({"retention_seconds": 86_400})).await;
    append(&app, &id, &requests).await;
    let series = series_of(&app, &id, 60).await;
    let models: usize = series["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["models"].as_object().unwrap().len())
        .max()
        .unwrap();
    assert!(
        models <= agentprof::rollup::MAX_NAMES_PER_MINUTE as usize + 1,
        "{models}"
    );
    let llm: i64 = series["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["llm_calls"].as_i64().unwrap())
        .sum();
    assert_eq!(llm, n as i64);
    agentprof::live::sweep_expired(app.state.store.as_ref(), time::OffsetDateTime::now_utc()).await;
    let after = app
        .get(&format!("/v1/runs/{id}/series?step=60&from=0"))
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
    assert_eq!(after.json()["buckets"], json!([]));
});

// Batches into one run at once, their calls in the same minutes: every call counted once, on
// both backends (PostgreSQL lets them run concurrently; they meet at the rollup rows).
on_both_backends!(concurrent_batches_count_once, |backend| async move {
    let app = std::sync::Arc::new(TestApp::new(backend).await);
    let requests = requests_of("busy_40");
    let id = app.create_run(&json!({})).await;
    let mut tasks = Vec::new();
    for chunk in requests.chunks(5) {
        let (app, id, chunk) = (app.clone(), id.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move { append(&app, &id, &chunk).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    check(&series_of(&app, &id, 60).await, &requests, "concurrent");
});

// Two sweeps at once (two replicas' upkeep): together they delete each expired request once,
// and the run's counters and rollups end as one sweep leaves them.
on_both_backends!(
    two_sweeps_at_once_delete_each_request_once,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let old = recent("large_500", 3.0 * 86_400.0);
        let id = app.create_run(&json!({"retention_seconds": 86_400})).await;
        append(&app, &id, &old).await;
        let now = time::OffsetDateTime::now_utc();
        let store = app.state.store.clone();
        let (a, b) = tokio::join!(
            agentprof::live::sweep_expired(store.as_ref(), now),
            agentprof::live::sweep_expired(store.as_ref(), now),
        );
        assert_eq!(a.requests + b.requests, old.len() as u64);
        let steps: usize = old.iter().map(|r| r.steps.len()).sum();
        assert_eq!(a.steps + b.steps, steps as u64);
        let run = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(run["request_count"], 0);
        assert_eq!(run["step_count"], 0);
        assert_eq!(run["summary"]["llm_calls"], 0);
        let r = app
            .get(&format!("/v1/runs/{id}/series?from=0&to=2e9&step=604800"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let left: i64 = r.json()["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["requests"].as_i64().unwrap() + b["llm_calls"].as_i64().unwrap())
            .sum();
        let busy: Vec<Value> = r.json()["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["requests"] != 0 || b["llm_calls"] != 0)
            .cloned()
            .collect();
        assert_eq!(left, 0, "{busy:?}");
    }
);
