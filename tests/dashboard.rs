//! What the dashboard needs from the server, on both backends: the run list's figures (kept on
//! the run row as batches land, right across retries), search by name, the timeline, the
//! pages and assets, and the key cookie (which reads and never writes). The pages themselves
//! are tested in a real browser (tests/ui).

mod common;

use axum::http::{Method, StatusCode};
use common::app::{Backend, Options, TestApp};
use common::*;
use serde_json::{Value, json};

/// Two requests: one with an LLM call (10 + 5 tokens), one with a tool call; steps span 1.0..4.5.
fn doc() -> Value {
    let mut end = step("LLM_END", 2.0, "a");
    end["payload"]["usage_info"] =
        json!({"token_usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}});
    json!([
        {"request_number": 0, "intermediate_steps": [step("LLM_START", 1.0, "a"), end]},
        {"request_number": 1, "intermediate_steps": [step("TOOL_START", 3.0, "t"), step("TOOL_END", 4.5, "t")]},
    ])
}

fn summary(view: &Value) -> (Value, Value, i64, i64) {
    let s = &view["summary"];
    (
        s["first_event_at"].clone(),
        s["wall_time_seconds"].clone(),
        s["llm_calls"].as_i64().expect("llm_calls"),
        s["llm_tokens"].as_i64().expect("llm_tokens"),
    )
}

on_both_backends!(run_list_figures_survive_retries, |backend| async move {
    let app = TestApp::new(backend).await;
    let id = app.create_run(&json!({"name": "figures"})).await;
    let view = app.get(&format!("/v1/runs/{id}")).await.json();
    assert_eq!(summary(&view), (Value::Null, Value::Null, 0, 0));

    let steps = format!("/v1/runs/{id}/steps");
    let first = app.post_json(&steps, doc().to_string()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let after = (json!(1.0), json!(3.5), 1, 15);
    assert_eq!(
        summary(&app.get(&format!("/v1/runs/{id}")).await.json()),
        after
    );

    // The same batch again stores nothing and counts nothing twice.
    let again = app.post_json(&steps, doc().to_string()).await;
    assert_eq!(again.json()["steps"]["stored"], 0);
    assert_eq!(
        summary(&app.get(&format!("/v1/runs/{id}")).await.json()),
        after
    );

    // Half new, half stored before: only the new half counts.
    let mut end = step("LLM_END", 9.0, "b");
    end["payload"]["usage_info"] =
        json!({"token_usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    let mixed = json!([{"request_number": 0, "intermediate_steps": [
        step("LLM_START", 1.0, "a"), step("LLM_START", 8.0, "b"), end]}]);
    let r = app.post_json(&steps, mixed.to_string()).await;
    assert_eq!(r.json()["steps"]["stored"], 2, "{}", r.text());
    assert_eq!(
        summary(&app.get(&format!("/v1/runs/{id}")).await.json()),
        (json!(1.0), json!(8.0), 2, 17)
    );
    // The list shows the same figures.
    let list = app.get("/v1/runs").await.json();
    assert_eq!(list["items"][0]["summary"]["llm_tokens"], 17);
});

on_both_backends!(runs_are_searched_by_name, |backend| async move {
    let app = TestApp::new(backend).await;
    for name in [
        "Nightly eval",
        "nightly-EVAL-2",
        "smoke",
        "100% done_x",
        "Ärger é\u{0}x",
    ] {
        app.create_run(&json!({ "name": name })).await;
    }
    let names = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|r| r["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let found = app.get("/v1/runs?name=EVAL").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text());
    assert_eq!(names(found.json()), ["nightly-EVAL-2", "Nightly eval"]);
    // LIKE's wildcards are plain characters here.
    assert_eq!(
        names(app.get("/v1/runs?name=%25%20done_").await.json()),
        ["100% done_x"]
    );
    assert!(names(app.get("/v1/runs?name=_").await.json()).len() == 1);
    assert!(names(app.get("/v1/runs?name=zzz").await.json()).is_empty());
    // Non-ASCII characters match themselves, never the escapes a backend may store them as.
    assert_eq!(
        names(app.get("/v1/runs?name=%C3%84rger").await.json()),
        ["Ärger é\u{0}x"]
    );
    for none in ["303", "000", "%C3%A4rger"] {
        assert!(
            names(app.get(&format!("/v1/runs?name={none}")).await.json()).is_empty(),
            "{none}"
        );
    }
    // Pages of a search continue the search.
    let page = app.get("/v1/runs?name=eval&limit=1").await.json();
    assert_eq!(names(page.clone()), ["nightly-EVAL-2"]);
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let next = app
        .get(&format!("/v1/runs?name=eval&limit=1&cursor={cursor}"))
        .await
        .json();
    assert_eq!(names(next.clone()), ["Nightly eval"]);
    assert!(next.get("next_cursor").is_none_or(Value::is_null));
    let bad = app.get("/v1/runs?name=%00").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let long = "x".repeat(201);
    assert_eq!(
        app.get(&format!("/v1/runs?name={long}")).await.status,
        StatusCode::BAD_REQUEST
    );
});

on_both_backends!(timeline_lists_a_window_of_calls, |backend| async move {
    let app = TestApp::new(backend).await;
    let id = app.create_run(&json!({ "requests": doc() })).await;
    let all = app.get(&format!("/v1/runs/{id}/timeline")).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    let t = all.json();
    assert_eq!(t["requests"], 2);
    assert_eq!(t["origin"], 1.0);
    let calls = t["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["kind"], "LLM");
    assert_eq!(
        (calls[0]["start"].clone(), calls[0]["end"].clone()),
        (json!(0.0), json!(1.0))
    );
    assert_eq!(calls[0]["tokens"]["total"], 15);
    assert_eq!(calls[1]["kind"], "TOOL");
    assert_eq!(t["tokens_per_request"][0]["total"], 15);
    // The latencies are the ones /stats summarises.
    let stats = app.get(&format!("/v1/runs/{id}/stats")).await.json();
    let n: usize = t["llm_latency"]
        .as_object()
        .expect("per model")
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(json!(n), stats["llm_latency"]["overall"]["n"]);

    let second = app
        .get(&format!("/v1/runs/{id}/timeline?offset=1&limit=1"))
        .await
        .json();
    assert_eq!(second["calls"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["calls"][0]["kind"], "TOOL");
    for bad in [
        "limit=0",
        "limit=201",
        "offset=-1",
        "limit=x",
        "offset=9223372036854775808",
    ] {
        let r = app.get(&format!("/v1/runs/{id}/timeline?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let missing = app
        .get("/v1/runs/00000000-0000-0000-0000-000000000000/timeline")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
});

#[tokio::test]
async fn pages_and_assets_are_served_from_the_binary() {
    let app = TestApp::new(Backend::Sqlite).await;
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/runs/00000000-0000-0000-0000-000000000000", "text/html"),
        ("/ui/compare?baseline=a&candidate=b", "text/html"),
        ("/ui/assets/run.js", "text/javascript"),
        ("/ui/assets/vendor/plot.umd.min.js", "text/javascript"),
        ("/ui/assets/app.css", "text/css"),
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with(kind)),
            "{path}"
        );
        if kind == "text/html" {
            let csp = r.header("content-security-policy").expect("CSP");
            assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
            // Nothing the page loads comes from elsewhere.
            assert!(!r.text().contains("http://") && !r.text().contains("https://"));
        }
    }
    assert_eq!(
        app.get("/ui/assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/ui/assets/../Cargo.toml").await.status,
        StatusCode::NOT_FOUND
    );
}

fn keyed() -> Options {
    Options {
        keys: Some(
            "read:reader-key-123,write:writer-key-456"
                .parse()
                .expect("keys"),
        ),
        ..Options::default()
    }
}

fn cookie_of(r: &common::app::Reply) -> String {
    let set = r.header("set-cookie").expect("set-cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().expect("pair").to_owned()
}

#[tokio::test]
async fn the_key_cookie_reads_and_never_writes() {
    let app = TestApp::with(Backend::Sqlite, keyed()).await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    // A wrong key: 401, no cookie.
    let wrong = app
        .request(Method::POST, "/ui/login", &form, "key=nope&next=/ui")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.header("set-cookie").is_none());
    // A write key, and an attempt to be sent elsewhere afterwards.
    let ok = app
        .request(
            Method::POST,
            "/ui/login",
            &form,
            "key=writer-key-456&next=https%3A%2F%2Fevil.example%2F",
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.header("location"), Some("/ui"));
    let cookie = cookie_of(&ok);
    // The cookie stands for the key without holding it.
    assert!(!cookie.contains("writer-key-456"), "{cookie}");
    let with_cookie = [("cookie", cookie.as_str())];
    assert_eq!(
        app.request(Method::GET, "/v1/runs", &with_cookie, "")
            .await
            .status,
        StatusCode::OK
    );
    let write = app
        .request(
            Method::POST,
            "/v1/runs",
            &[
                ("cookie", cookie.as_str()),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    // The comparison only reads, so the cookie may ask for it.
    let compare = app
        .request(
            Method::POST,
            "/v1/compare",
            &[("cookie", cookie.as_str()), ("content-type", "application/json")],
            r#"{"baseline": "00000000-0000-0000-0000-000000000000", "candidate": "00000000-0000-0000-0000-000000000000"}"#,
        )
        .await;
    assert_eq!(compare.status, StatusCode::NOT_FOUND);
    // No cookie, a stale cookie: 401.
    assert_eq!(app.get("/v1/runs").await.status, StatusCode::UNAUTHORIZED);
    let stale = app
        .request(
            Method::GET,
            "/v1/runs",
            &[("cookie", "agentprof_key=old")],
            "",
        )
        .await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    // Another site's page cannot log anyone in or out (login CSRF).
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let r = app
            .request(
                Method::POST,
                "/ui/login",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("host", "127.0.0.1:8080"),
                    (name, value),
                ],
                "key=reader-key-123&next=/ui",
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}");
        assert!(r.header("set-cookie").is_none());
    }
    // Behind a TLS proxy the cookie is Secure.
    let tls = app
        .request(
            Method::POST,
            "/ui/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-proto", "https"),
                ("sec-fetch-site", "same-origin"),
            ],
            "key=reader-key-123&next=/ui",
        )
        .await;
    assert!(
        tls.header("set-cookie")
            .is_some_and(|c| c.contains("Secure"))
    );
    // Logging out expires the cookie.
    let out = app.request(Method::POST, "/ui/logout", &[], "").await;
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
}

on_both_backends!(run_list_tokens_stay_within_64_bits, |backend| async move {
    let app = TestApp::new(backend).await;
    let id = app.create_run(&json!({"name": "huge"})).await;
    let end = |uuid: &str, t: f64, tokens: i64| {
        let mut s = step("LLM_END", t, uuid);
        s["payload"]["usage_info"] = json!({"token_usage": {"total_tokens": tokens}});
        s
    };
    let steps = format!("/v1/runs/{id}/steps");
    let max = i64::MAX;
    let first = json!([{"request_number": 0, "intermediate_steps": [end("a", 1.0, max), end("b", 2.0, max)]}]);
    let r = app.post_json(&steps, first.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let view = app.get(&format!("/v1/runs/{id}")).await.json();
    assert_eq!(view["summary"]["llm_tokens"], max);
    // Another batch adds to the clamped sum; a partial retry adds only what it stored.
    let second = json!([{"request_number": 1, "intermediate_steps": [end("c", 3.0, max)]}]);
    let r = app.post_json(&steps, second.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let retry = json!([{"request_number": 1, "intermediate_steps": [end("c", 3.0, max), end("d", 4.0, 1)]}]);
    let r = app.post_json(&steps, retry.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let view = app.get(&format!("/v1/runs/{id}")).await.json();
    assert_eq!(view["summary"]["llm_tokens"], max);
    assert_eq!(view["summary"]["llm_calls"], 4);
    assert_eq!(app.get("/v1/runs").await.status, StatusCode::OK);
});

/// The run page lists every output of the registry, marked when only nat 1.9 runs have it.
#[tokio::test]
async fn the_run_page_lists_every_output() {
    let app = TestApp::new(Backend::Sqlite).await;
    let page = app
        .get("/ui/runs/00000000-0000-0000-0000-000000000000")
        .await
        .text();
    assert!(!page.contains("{{files}}"));
    for output in &agentprof::outputs::OUTPUTS {
        let item = format!(
            "data-path=\"{}\" data-nat-only=\"{}\"",
            output.path, output.nat_only
        );
        assert!(page.contains(&item), "{item}");
    }
}
