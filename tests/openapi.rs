//! The checked-in OpenAPI document must equal the one generated from the code, and the served
//! one. After changing an endpoint, regenerate it with
//! `cargo run -- openapi > openapi/openapi.json` (or run this test with `UPDATE_OPENAPI=1`).

mod common;

use common::app::{Backend, TestApp};
use serde_json::Value;
use std::path::Path;

fn checked_in() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json")
}

#[test]
fn checked_in_document_is_current() {
    let generated = agentprof::api::docs::to_json(&agentprof::api::openapi());
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(checked_in(), &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(checked_in()).unwrap_or_default();
    assert!(
        on_disk == generated,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}

#[test]
fn every_endpoint_is_documented() {
    let doc: Value =
        serde_json::from_str(&agentprof::api::docs::to_json(&agentprof::api::openapi())).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/v1/runs", &["get", "post"][..]),
        ("/v1/runs/{run_id}", &["get", "patch", "delete"]),
        ("/v1/runs/{run_id}/steps", &["post"]),
        ("/v1/runs/{run_id}/requests", &["get"]),
        ("/v1/runs/{run_id}/metrics", &["get"]),
        ("/v1/runs/{run_id}/profiling", &["get"]),
        ("/v1/runs/{run_id}/report", &["get"]),
        ("/v1/runs/{run_id}/standardized.csv", &["get"]),
        ("/v1/runs/{run_id}/gantt.svg", &["get"]),
        ("/v1/runs/{run_id}/forecast", &["get"]),
        ("/v1/runs/{run_id}/stats", &["get"]),
        ("/v1/compare", &["post"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ];
    for (path, methods) in expected {
        for m in methods {
            let op = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} undocumented"))[*m];
            assert!(op.is_object(), "{m} {path} undocumented");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {path} has no responses"
            );
            assert!(op["summary"].is_string(), "{m} {path} has no summary");
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn served_document_equals_checked_in_and_swagger_ui_is_served() {
    let app = TestApp::new(Backend::Sqlite).await;
    let served = app.get("/openapi.json").await;
    assert_eq!(
        served.text(),
        std::fs::read_to_string(checked_in()).unwrap()
    );
    let ui = app.get("/docs/").await;
    assert_eq!(ui.status, 200);
    assert!(ui.text().contains("swagger-ui"), "Swagger UI page");
    let init = app.get("/docs/swagger-initializer.js").await;
    assert!(
        init.text().contains("/openapi.json"),
        "the UI loads our document"
    );
    assert!(
        app.get("/docs/swagger-ui-bundle.js").await.body.len() > 100_000,
        "assets are bundled, no CDN"
    );
}
