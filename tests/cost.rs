//! Cost: a run's LLM calls priced by the table it was created with, on both backends. The
//! expected figures are computed here from the input's own LLM_END steps, apart from the
//! server's code.

mod common;

use agentprof::profiler::statistics::cost::PriceTable;
use axum::http::Method;
use common::app::{Backend, Options, TestApp};
use common::*;
use serde_json::{Value, json};

/// A real nvidia-nat 1.9 eval (a ReAct agent), whose LLM_END steps report cached tokens.
fn react_case() -> Value {
    let case = fixtures().join("cases/realnat_react_12");
    serde_json::from_slice(&read_maybe_gz(&case, "input.json").unwrap()).unwrap()
}

fn table(v: Value) -> PriceTable {
    serde_json::from_value(v).unwrap()
}

/// USD for `[calls, prompt, cached, completion]` at per-million prices.
fn usd(
    [_, prompt, cached, completion]: [i64; 4],
    input: f64,
    cached_input: f64,
    output: f64,
) -> f64 {
    ((prompt - cached) as f64 * input + cached as f64 * cached_input + completion as f64 * output)
        / 1e6
}

async fn stats(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/v1/runs/{id}/stats")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn patch(app: &TestApp, id: &str, body: Value) -> common::app::Reply {
    app.request(
        Method::PATCH,
        &format!("/v1/runs/{id}"),
        &[("content-type", "application/merge-patch+json")],
        body.to_string(),
    )
    .await
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

on_both_backends!(
    a_runs_cost_is_its_tokens_times_its_prices,
    |backend| async move {
        let prices = table(json!({"models": {
        "canned-react-1": {"input": 2.5, "output": 10.0, "cached_input": 1.25}}}));
        let app = TestApp::with(
            backend,
            Options {
                prices,
                ..Options::default()
            },
        )
        .await;
        let doc = react_case();
        let tokens = tokens_by_model(&doc);
        let t = tokens["canned-react-1"];
        assert!(t[2] > 0, "the case reports cached tokens");
        let id = app.create_run(&json!({"requests": doc})).await;
        let cost = &stats(&app, &id).await["cost"];
        assert_eq!(cost["currency"], "USD");
        assert_eq!(cost["complete"], true);
        let model = &cost["by_model"]["canned-react-1"];
        assert_eq!(model["calls"], t[0]);
        assert_eq!(
            [
                &model["prompt_tokens"],
                &model["cached_tokens"],
                &model["completion_tokens"]
            ],
            [t[1], t[2], t[3]]
        );
        let expected = usd(t, 2.5, 1.25, 10.0);
        assert!(
            close(model["cost"].as_f64().unwrap(), expected),
            "{model} vs {expected}"
        );
        assert!(close(cost["total"].as_f64().unwrap(), expected));
        // Per request: the 12 requests' costs sum to the total, with an interval for the mean.
        let per = &cost["per_request"];
        assert_eq!(per["n"], 12);
        assert!(close(per["mean"].as_f64().unwrap() * 12.0, expected));
        let [lo, hi] =
            [&per["mean_ci95"]["t"][0], &per["mean_ci95"]["t"][1]].map(|v| v.as_f64().unwrap());
        assert!(lo <= per["mean"].as_f64().unwrap() && per["mean"].as_f64().unwrap() <= hi);
        assert_eq!(cost["requests_unpriced"], 0);
        // The run shows the prices it was costed with.
        let run = app.get(&format!("/v1/runs/{id}")).await.json();
        assert_eq!(
            run["prices"]["models"]["canned-react-1"]["cached_input"],
            1.25
        );
    }
);

on_both_backends!(
    a_model_without_a_price_is_listed_not_free,
    |backend| async move {
        let app = TestApp::with(
            backend,
            Options {
                prices: table(json!({"models": {"other": {"input": 1, "output": 1}}})),
                ..Options::default()
            },
        )
        .await;
        let id = app.create_run(&json!({"requests": react_case()})).await;
        let cost = &stats(&app, &id).await["cost"];
        assert_eq!(cost["complete"], false);
        assert_eq!(cost["total"], 0.0);
        assert_eq!(cost["by_model"], json!({}));
        assert_eq!(cost["unpriced_models"]["canned-react-1"]["calls"], 26);
        assert_eq!(cost["per_request"]["n"], 0);
        assert_eq!(cost["requests_unpriced"], 12);
    }
);

on_both_backends!(
    a_run_keeps_its_prices_until_repriced,
    |backend| async move {
        let first = table(json!({"models": {"canned-react-1": {"input": 1, "output": 2}}}));
        let app = TestApp::with(
            backend,
            Options {
                prices: first,
                ..Options::default()
            },
        )
        .await;
        let doc = react_case();
        let t = tokens_by_model(&doc)["canned-react-1"];
        let id = app.create_run(&json!({"requests": doc})).await;
        let total = |s: &Value| s["cost"]["total"].as_f64().unwrap();
        assert!(close(total(&stats(&app, &id).await), usd(t, 1.0, 1.0, 2.0)));

        // The server restarts with another table: the old run's cost stays as it was.
        let later = TestApp::on_store(
            backend,
            app.state.store.clone(),
            None,
            Options {
                prices: table(json!({"models": {"canned-react-1": {"input": 3, "output": 4}}})),
                ..Options::default()
            },
        );
        let before = later.get(&format!("/v1/runs/{id}/stats")).await;
        assert!(close(total(&before.json()), usd(t, 1.0, 1.0, 2.0)));
        // PATCH null takes the server's table as it is now, and the ETag changes with it.
        let r = patch(&later, &id, json!({"prices": null})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["prices"]["models"]["canned-react-1"]["input"], 3.0);
        let after = later.get(&format!("/v1/runs/{id}/stats")).await;
        assert!(close(total(&after.json()), usd(t, 3.0, 3.0, 4.0)));
        assert_ne!(before.header("etag"), after.header("etag"));
        // A table of the run's own.
        let own = json!({"models": {"canned-react-1": {"input": 0.5, "output": 1.5, "cached_input": 0.05}}});
        let r = patch(&later, &id, json!({"prices": own})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(close(
            total(&stats(&later, &id).await),
            usd(t, 0.5, 0.05, 1.5)
        ));
        // And one given when the run is created.
        let mine = later
            .create_run(&json!({"prices": own, "requests": react_case()}))
            .await;
        assert!(close(
            total(&stats(&later, &mine).await),
            usd(t, 0.5, 0.05, 1.5)
        ));
    }
);

on_both_backends!(
    bad_prices_are_refused_where_they_are,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let r = app
            .post_json(
                "/v1/runs",
                json!({"prices": {"models": {"m/x": {"input": -1, "output": 1}}}}).to_string(),
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(r.json()["errors"][0]["path"], "/prices/models/m~1x/input");
        let r = app
            .post_json(
                "/v1/runs",
                json!({"prices": {"models": {"m": {"input": 1}}}}).to_string(),
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains("output"), "{}", r.text());
        let list = app.get("/v1/runs").await.json();
        assert_eq!(list["items"], json!([]), "nothing was stored");

        let id = app.create_run(&json!({"requests": react_case()})).await;
        let before = app.get(&format!("/v1/runs/{id}")).await.json();
        let r = patch(
            &app,
            &id,
            json!({"prices": {"models": {"m": {"input": 1, "output": 2, "cached_input": -3}}}}),
        )
        .await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(
            r.json()["errors"][0]["path"],
            "/prices/models/m/cached_input"
        );
        let r = patch(&app, &id, json!({"prices": {"model": {}}})).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(app.get(&format!("/v1/runs/{id}")).await.json(), before);
    }
);

on_both_backends!(cost_is_compared_and_gated, |backend| async move {
    let prices = json!({"models": {"canned-react-1": {"input": 2.5, "output": 10.0}}});
    let app = TestApp::with(
        backend,
        Options {
            prices: table(prices.clone()),
            ..Options::default()
        },
    )
    .await;
    let a = app.create_run(&json!({"requests": react_case()})).await;
    let b = app.create_run(&json!({"requests": react_case()})).await;
    let compare = |gate: Value| {
        let body = json!({"baseline": a, "candidate": b, "gate": gate}).to_string();
        async { app.post_json("/v1/compare", body).await }
    };
    let same = compare(json!({})).await;
    assert_eq!(same.status, 200, "{}", same.text());
    let m = &same.json()["metrics"]["cost"];
    assert_eq!(m["unit"], "USD per request");
    assert_eq!(m["difference_of_means"], 0.0);
    assert_eq!(same.json()["gate"]["exit_code"], 0);

    // The candidate's model got dearer: each request costs twice as much.
    let dearer = json!({"models": {"canned-react-1": {"input": 5.0, "output": 20.0}}});
    assert_eq!(patch(&app, &b, json!({"prices": dearer})).await.status, 200);
    let r = compare(json!({"max_regression": {"cost": 10}})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let m = &body["metrics"]["cost"];
    assert_eq!(m["significant"], true, "{m}");
    let base_mean = m["baseline"]["mean"].as_f64().unwrap();
    assert!(close(m["difference_of_means"].as_f64().unwrap(), base_mean));
    assert_eq!(body["gate"]["exit_code"], 1);
    assert!(body["gate"]["markdown"].as_str().unwrap().contains("cost"));

    // Without a price for every model there is no cost to compare, the comparison says which
    // model lacks one, and a gate on the cost is refused with that reason.
    let other = json!({"prices": {"models": {"other": {"input": 1, "output": 1}}}});
    assert_eq!(patch(&app, &b, other).await.status, 200);
    let r = compare(json!({})).await;
    assert!(r.json()["metrics"].get("cost").is_none());
    assert_eq!(r.json()["unpriced_models"], json!(["canned-react-1"]));
    let r = compare(json!({"max_regression": {"cost": 10}})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["path"], "/gate/max_regression/cost");
    assert!(
        r.text().contains("no price for canned-react-1"),
        "{}",
        r.text()
    );
    // Named among the metrics to compare, it is refused too (no silent pass).
    let body =
        json!({"baseline": a, "candidate": b, "metrics": ["llm_latency", "cost"], "gate": {}});
    let r = app.post_json("/v1/compare", body.to_string()).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["path"], "/metrics/1");
    // An empty table is no prices at all: no cost, and no model to name.
    assert_eq!(
        patch(&app, &b, json!({"prices": {"models": {}}}))
            .await
            .status,
        200
    );
    let r = compare(json!({})).await;
    assert!(r.json()["metrics"].get("cost").is_none());
    assert!(r.json().get("unpriced_models").is_none());
});

/// A database reached with plain SQL beside the store.
enum Sql {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

impl Sql {
    async fn execute(&self, sql: String) {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Sql::Pg(p) => sqlx::query(sql).execute(p).await.map(drop),
            Sql::Lite(p) => sqlx::query(sql).execute(p).await.map(drop),
        }
        .unwrap();
    }

    async fn cached_tokens(&self) -> Vec<Option<i64>> {
        const Q: &str = "SELECT cached_tokens FROM steps ORDER BY request_number, seq";
        match self {
            Sql::Pg(p) => sqlx::query_scalar(Q).fetch_all(p).await,
            Sql::Lite(p) => sqlx::query_scalar(Q).fetch_all(p).await,
        }
        .unwrap()
    }
}

// The migration that added `cached_tokens` fills it in from the bodies of the steps already
// stored: its statement, run on steps whose column was emptied, gives back what ingest wrote.
on_both_backends!(
    cached_tokens_of_stored_steps_are_backfilled,
    |backend| async move {
        use agentprof::store::{Store, postgres::PgStore, sqlite::SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let (store, pg, sql, folder): (std::sync::Arc<dyn Store>, _, Sql, &str) = match backend {
            Backend::Postgres => {
                let db = common::app::PgTestDb::create().await;
                let store = PgStore::connect(&db.url).await.unwrap();
                let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                (
                    std::sync::Arc::new(store),
                    Some(db),
                    Sql::Pg(pool),
                    "postgres",
                )
            }
            Backend::Sqlite => {
                let path = dir.path().join("agentprof.db");
                let store = SqliteStore::open(&path).await.unwrap();
                let url = format!("sqlite://{}", path.display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                (std::sync::Arc::new(store), None, Sql::Lite(pool), "sqlite")
            }
        };
        let app = TestApp::on_store(backend, store, pg, Options::default());
        // One call more, whose output holds a NUL: PostgreSQL's json operators refuse such a body.
        let mut doc = react_case();
        doc.as_array_mut().unwrap().push(json!({"request_number": 12, "intermediate_steps": [
            {"payload": {"event_type": "LLM_START", "event_timestamp": 1.0, "name": "m", "UUID": "n"}},
            {"payload": {"event_type": "LLM_END", "event_timestamp": 2.0, "name": "m", "UUID": "n",
                         "data": {"output": "a\u{0}b"},
                         "usage_info": {"token_usage": {"prompt_tokens": 9, "completion_tokens": 1,
                                                        "cached_tokens": 7, "total_tokens": 10}}}}]}));
        app.create_run(&json!({"requests": doc})).await;
        // The steps as they were when the migration ran: in the old columns.
        match &sql {
            Sql::Pg(p) => unpack_all!(p),
            Sql::Lite(p) => unpack_all!(p),
        };
        let written = sql.cached_tokens().await;
        assert!(
            written.contains(&Some(7)),
            "the call with a NUL in its output"
        );
        let llm_ends = written.iter().flatten().count();
        assert!(llm_ends > 0 && llm_ends < written.len(), "{written:?}");
        sql.execute("UPDATE steps SET cached_tokens = NULL".to_owned())
            .await;
        let migration =
            std::fs::read_to_string(format!("migrations/{folder}/20261207000002_cost.sql"))
                .unwrap();
        let backfill = migration
            .split(';')
            .map(|s| {
                s.lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .map(|s| s.trim().to_owned())
            .filter(|s| s.starts_with("UPDATE steps"))
            .collect::<Vec<_>>();
        assert!(!backfill.is_empty(), "the migration fills the column in");
        for statement in backfill {
            sql.execute(statement).await;
        }
        assert_eq!(sql.cached_tokens().await, written);
    }
);
