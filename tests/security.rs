//! API keys and hostile input: every malformed body gets a 4xx problem and stores nothing.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::app::{Backend, Options, TestApp};
use serde_json::{Value, json};

const READ: &str = "reader-key-0123456789";
const WRITE: &str = "writer-key-0123456789";

async fn keyed_app() -> TestApp {
    let keys = format!("read:{READ},write:{WRITE}").parse().unwrap();
    TestApp::with(
        Backend::Sqlite,
        Options {
            keys: Some(keys),
            ..Options::default()
        },
    )
    .await
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn keys_gate_reads_and_writes() {
    let app = keyed_app().await;
    let create = |key: Option<&'static str>| {
        let app = &app;
        async move {
            let auth = key.map(bearer);
            let mut headers = vec![("content-type", "application/json")];
            if let Some(a) = auth.as_deref() {
                headers.push(("authorization", a));
            }
            app.request(Method::POST, "/v1/runs", &headers, "{}").await
        }
    };
    let none = create(None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_eq!(none.json()["code"], "unauthorized");
    assert_eq!(
        create(Some("wrong-key-0123456789")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let read = create(Some(READ)).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    assert_eq!(read.json()["code"], "forbidden");
    let ok = create(Some(WRITE)).await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let id = ok.json()["id"].as_str().unwrap().to_owned();

    // Reads: a read key and a write key both work; no key does not.
    let get = |key: Option<&'static str>, uri: String| {
        let app = &app;
        async move {
            let auth = key.map(bearer);
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            app.request(Method::GET, &uri, &headers, Body::empty())
                .await
                .status
        }
    };
    assert_eq!(
        get(Some(READ), format!("/v1/runs/{id}/metrics")).await,
        StatusCode::OK
    );
    assert_eq!(
        get(Some(WRITE), format!("/v1/runs/{id}")).await,
        StatusCode::OK
    );
    assert_eq!(
        get(None, format!("/v1/runs/{id}")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(None, "/metrics".to_owned()).await,
        StatusCode::UNAUTHORIZED
    );
    // Open paths stay open.
    for open in ["/healthz", "/readyz", "/openapi.json", "/docs/"] {
        assert_eq!(get(None, open.to_owned()).await, StatusCode::OK, "{open}");
    }
    // A read key cannot delete or patch.
    let auth = bearer(READ);
    let del = app
        .request(
            Method::DELETE,
            &format!("/v1/runs/{id}"),
            &[("authorization", &auth)],
            Body::empty(),
        )
        .await;
    assert_eq!(del.status, StatusCode::FORBIDDEN);
    // Lowercase scheme and surrounding spaces are tolerated; other schemes are not.
    let lower = format!("bearer  {WRITE} ");
    assert_eq!(
        app.request(
            Method::GET,
            "/v1/runs",
            &[("authorization", &lower)],
            Body::empty()
        )
        .await
        .status,
        StatusCode::OK
    );
    let basic = format!("Basic {WRITE}");
    assert_eq!(
        app.request(
            Method::GET,
            "/v1/runs",
            &[("authorization", &basic)],
            Body::empty()
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn openapi_declares_the_bearer_scheme() {
    let app = keyed_app().await;
    let doc = app.get("/openapi.json").await.json();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/v1/runs"]["post"]["security"][0]["bearer"],
        json!([])
    );
}

/// Posts `body` as a batch and checks: a 4xx problem document, and the run unchanged.
async fn rejected(
    app: &TestApp,
    id: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Value {
    let r = app
        .request(Method::POST, &format!("/v1/runs/{id}/steps"), headers, body)
        .await;
    assert!(
        r.status.is_client_error(),
        "expected 4xx, got {}: {}",
        r.status,
        r.text()
    );
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let run = app.get(&format!("/v1/runs/{id}")).await.json();
    assert_eq!(
        (run["step_count"].clone(), run["version"].clone()),
        (json!(0), json!(0)),
        "nothing stored"
    );
    let p = r.json();
    assert_eq!(p["status"], r.status.as_u16());
    p
}

#[tokio::test]
async fn hostile_bodies_are_rejected_whole() {
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            max_bytes: 1024 * 1024,
            ..Options::default()
        },
    )
    .await;
    let id = app.create_run(&json!({})).await;
    let json_ct = [("content-type", "application/json")];
    let ok = json!({"payload": {"event_type": "LLM_START", "event_timestamp": 1.0, "UUID": "a"}});
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "this is not json".to_owned(), "malformed-request"),
        ("truncated", "[[{\"payload\": ".to_owned(), "malformed-request"),
        ("top-level number", "42".to_owned(), "validation-error"),
        ("object without steps", json!({"a": 1}).to_string(), "validation-error"),
        ("step is a string", json!([["step"]]).to_string(), "validation-error"),
        ("unknown event type", json!([[ok.clone(), {"payload": {"event_type": "LLM_MIDDLE"}}]]).to_string(), "validation-error"),
        ("span timestamp on START", json!([[{"payload": {"event_type": "TOOL_START", "span_event_timestamp": 1.0}}]]).to_string(), "validation-error"),
        ("negative request number", json!([{"request_number": -3, "intermediate_steps": [ok.clone()]}]).to_string(), "validation-error"),
        ("huge request number", json!([{"request_number": 1e300, "intermediate_steps": []}]).to_string(), "validation-error"),
        ("request number 2^31", json!([{"request_number": 2147483648u64, "intermediate_steps": []}]).to_string(), "validation-error"),
        ("timestamp NaN string", json!([[{"payload": {"event_type": "LLM_START", "event_timestamp": "NaN"}}]]).to_string(), "validation-error"),
        ("tokens too big", json!([[{"payload": {"event_type": "LLM_END", "usage_info": {"token_usage": {"prompt_tokens": 1e20}}}}]]).to_string(), "validation-error"),
        ("wrong types everywhere", json!([[{"payload": {"event_type": 5, "name": [], "tags": "x", "data": 3}}]]).to_string(), "validation-error"),
        ("deeply nested", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), "malformed-request"),
        ("deeply nested input", format!("[[{{\"payload\": {{\"event_type\": \"LLM_START\", \"data\": {{\"input\": {}{}}}}}}}]]", "[".repeat(5000), "]".repeat(5000)), "malformed-request"),
        ("raw NUL byte", "[[\u{0}]]".to_owned(), "malformed-request"),
        ("too large", format!("[[{}]]", vec![ok.to_string(); 20_000].join(",")), "body-too-large"),
    ];
    for (what, body, code) in cases {
        let p = rejected(&app, &id, &json_ct, body).await;
        assert_eq!(p["code"], code, "{what}: {p}");
    }
    // Bytes that are not UTF-8 at all.
    let p = rejected(&app, &id, &json_ct, b"[[\"\xff\xfe\"]]".to_vec()).await;
    assert_eq!(p["code"], "malformed-request");
    // Wrong or missing content type: 415.
    for ct in [
        vec![("content-type", "text/csv")],
        vec![],
        vec![("content-type", "multipart/form-data; boundary=x")],
    ] {
        let p = rejected(&app, &id, &ct, "[]").await;
        assert_eq!(p["status"], 415);
    }
    // One bad step among many good ones: nothing stored, and the pointer names the bad one.
    let mut steps: Vec<Value> = (0..500).map(|i| json!({"payload": {"event_type": "TOOL_START", "event_timestamp": i, "UUID": format!("t{i}")}})).collect();
    steps[377] =
        json!({"payload": {"event_type": "TOOL_START", "event_timestamp": {"when": "now"}}});
    let p = rejected(&app, &id, &json_ct, json!([steps]).to_string()).await;
    assert_eq!(p["errors"][0]["path"], "/0/377/payload/event_timestamp");
}

#[tokio::test]
async fn many_errors_are_listed_with_a_cap() {
    let app = TestApp::new(Backend::Sqlite).await;
    let id = app.create_run(&json!({})).await;
    let steps: Vec<Value> = (0..200)
        .map(|_| json!({"payload": {"event_type": "NOPE"}}))
        .collect();
    let p = rejected(
        &app,
        &id,
        &[("content-type", "application/json")],
        json!([steps]).to_string(),
    )
    .await;
    assert_eq!(
        p["errors"].as_array().unwrap().len(),
        agentprof::trace::MAX_FIELD_ERRORS
    );
    assert!(
        p["detail"].as_str().unwrap().contains("and 199 more"),
        "{}",
        p["detail"]
    );
}

#[tokio::test]
async fn invented_methods_share_one_metric_label() {
    // Any token is a valid HTTP method; were each one its own label value, a client without a
    // key could grow the server and its Prometheus text without bound.
    let app = TestApp::new(Backend::Sqlite).await;
    let invented: Vec<String> = (0..20)
        .map(|i| format!("X{i}{}", "M".repeat(2_000)))
        .collect();
    for m in &invented {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        app.request(method, "/healthz", &[], Body::empty()).await;
    }
    let text = app.get("/metrics").await.text();
    assert!(
        !text.contains("MMMMMMMM"),
        "an invented method became a label value"
    );
    assert!(
        text.contains("method=\"OTHER\",route=\"/healthz\""),
        "{}",
        text.lines()
            .filter(|l| l.contains("healthz"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(text.len() < 200_000, "the scrape is {} bytes", text.len());
}
