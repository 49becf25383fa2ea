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
        ("/v1/runs/{run_id}/prediction_trie", &["get"]),
        ("/v1/runs/{run_id}/profiler_results", &["get"]),
        ("/v1/runs/{run_id}/atif", &["get"]),
        ("/v1/runs/{run_id}/timeline", &["get"]),
        ("/v1/runs/{run_id}/series", &["get"]),
        ("/v1/compare", &["post"]),
        ("/v1/traces", &["post"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ];
    assert_eq!(
        paths.len(),
        expected.len(),
        "every documented path is listed here"
    );
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
    assert!(
        served.text() == std::fs::read_to_string(checked_in()).unwrap(),
        "the served document differs from openapi/openapi.json"
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

/// The documented response schemas describe the bytes the service really sends: every JSON
/// output of real runs, in both dialects, validates against its operation's 200 schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_outputs_validate_against_their_schemas() {
    let doc: Value =
        serde_json::from_str(&agentprof::api::docs::to_json(&agentprof::api::openapi())).unwrap();
    let app = TestApp::new(Backend::Sqlite).await;
    let mut validated = 0;
    for case in ["small_5", "realnat_react_12", "edge_8"] {
        let dir = common::fixtures().join("cases").join(case);
        let id = app
            .create_run(&serde_json::json!({"profiler_config": common::case_config(&dir)}))
            .await;
        let r = app
            .request(
                axum::http::Method::POST,
                &format!("/v1/runs/{id}/steps"),
                &[("content-type", "application/json")],
                common::case_input(&dir),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        for toolkit in ["aiq-1.1", "nat-1.9"] {
            let r = app
                .request(
                    axum::http::Method::PATCH,
                    &format!("/v1/runs/{id}"),
                    &[("content-type", "application/merge-patch+json")],
                    serde_json::json!({"toolkit": toolkit}).to_string(),
                )
                .await;
            assert_eq!(r.status, 200);
            for path in [
                "",
                "metrics",
                "profiling",
                "forecast",
                "stats",
                "prediction_trie",
                "profiler_results",
                "atif",
                "timeline",
            ] {
                let (uri, template) = if path.is_empty() {
                    (format!("/v1/runs/{id}"), "/v1/runs/{run_id}".to_owned())
                } else {
                    (
                        format!("/v1/runs/{id}/{path}"),
                        format!("/v1/runs/{{run_id}}/{path}"),
                    )
                };
                let r = app.get(&uri).await;
                if r.status == 404 && toolkit == "aiq-1.1" {
                    continue;
                }
                assert_eq!(r.status, 200, "{case} {toolkit} {path}: {}", r.text());
                let schema = &doc["paths"][&template]["get"]["responses"]["200"]["content"]["application/json"]
                    ["schema"];
                assert!(schema.is_object(), "{template} has no JSON schema");
                let mut root = schema.clone();
                root["components"] = doc["components"].clone();
                let validator = jsonschema::validator_for(&root)
                    .unwrap_or_else(|e| panic!("{template}: schema does not compile: {e}"));
                let body = r.json();
                let errors: Vec<String> = validator
                    .iter_errors(&body)
                    .take(5)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{case} {toolkit} {path}: {}",
                    errors.join("\n")
                );
                validated += 1;
            }
        }
    }
    assert!(validated >= 40, "validated only {validated} documents");
}

/// The Python client ships the server's list of outputs (`agentprof outputs`); it must be the
/// server's own.
#[test]
fn the_python_clients_list_of_outputs_is_the_registry() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/python/src/agentprof_client/outputs.json"
    );
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        shipped,
        agentprof::outputs::listing(),
        "run `cargo run -- outputs > clients/python/src/agentprof_client/outputs.json`"
    );
}

/// The step documents' schemas are written out (they describe what the parser takes, wider than
/// any type): every fixture input of the profiler, eval and step-list forms validates against
/// the documented body of `POST /v1/runs/{run_id}/steps`.
#[test]
fn every_fixture_input_validates_against_the_step_document_schema() {
    let doc: Value =
        serde_json::from_str(&agentprof::api::docs::to_json(&agentprof::api::openapi())).unwrap();
    let mut root = doc["paths"]["/v1/runs/{run_id}/steps"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]
        .clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).expect("the schema compiles");
    let mut validated = 0;
    for case in common::cases() {
        let bytes = common::case_input(&case);
        let bytes = if agentprof::trace::is_gzip(&bytes) {
            agentprof::trace::gunzip(&bytes, None).unwrap()
        } else {
            bytes
        };
        let input: Value = serde_json::from_slice(&bytes).unwrap();
        if input.is_object() {
            continue; // the EvalInput dump, accepted but not described
        }
        let errors: Vec<String> = validator
            .iter_errors(&input)
            .take(3)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}: {}",
            case.display(),
            errors.join("\n")
        );
        validated += 1;
    }
    assert!(validated >= 20, "validated only {validated} inputs");
}

/// The documented profiler config patch names exactly the fields `ProfilerConfig` reads.
#[test]
fn the_profiler_config_schema_names_the_configs_fields() {
    let doc: Value =
        serde_json::from_str(&agentprof::api::docs::to_json(&agentprof::api::openapi())).unwrap();
    let schemas = &doc["components"]["schemas"];
    let config = serde_json::to_value(agentprof::profiler::ProfilerConfig::default()).unwrap();
    let fields = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let documented = fields(&schemas["ProfilerConfigPatch"]["properties"]);
    let mut read = fields(&config);
    // Read from a request, never written back (it sets another field).
    read.push("base_metrics".to_owned());
    read.sort();
    assert_eq!(documented, read);
    // And so does each section's patch, with the section's own fields.
    for (section, patch) in [
        ("prompt_caching_prefixes", "PromptCachingPatch"),
        ("bottleneck_analysis", "BottleneckPatch"),
        ("concurrency_spike_analysis", "SpikeConfigPatch"),
        ("prefix_span_analysis", "PrefixSpanConfigPatch"),
        ("prediction_trie", "PredictionTriePatch"),
        ("dynamo_metrics", "DynamoMetricsPatch"),
    ] {
        assert_eq!(
            fields(&schemas[patch]["properties"]),
            fields(&config[section]),
            "{patch} against {section}"
        );
    }
    // The trie's file name is refused where the server refuses it: another output's name, a
    // directory, or a path.
    let pattern = schemas["PredictionTriePatch"]["properties"]["output_filename"]["pattern"]
        .as_str()
        .unwrap();
    for name in agentprof::profiler::core::config::OTHER_OUTPUT_FILES {
        assert!(
            pattern.contains(&format!("|{}", name.replace('.', r"\."))),
            "{name} is not in {pattern}"
        );
    }
    assert!(pattern.contains(r"(?:\.|\.\.|") && pattern.ends_with(r"[^/\\\x00]+$"));
    // Every documented field is one the config accepts.
    for field in documented {
        let sample = match field.as_str() {
            "prompt_caching_prefixes"
            | "bottleneck_analysis"
            | "concurrency_spike_analysis"
            | "prefix_span_analysis"
            | "prediction_trie"
            | "dynamo_metrics" => {
                serde_json::json!({})
            }
            _ => serde_json::json!(true),
        };
        agentprof::profiler::ProfilerConfig::from_json(
            serde_json::json!({ field.clone(): sample }),
        )
        .unwrap_or_else(|e| panic!("{field}: {e}"));
    }
}
