//! The embedded default: `agentprof serve` with no DATABASE_URL keeps runs in SQLite under the
//! data directory, gives the reference's metrics, and still has them after a restart.

mod common;

use common::process::{Server, get_json, post_run};
use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "agentprof-embedded-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let client = reqwest::Client::new();
    let case = fixtures().join("cases/eval_all_12");
    let expected = expected_json(&case, "inference_optimization.json").unwrap();

    let server = Server::spawn(&[("AGENTPROF_DATA_DIR", dir.to_str().unwrap())]);
    server.ready(&client).await;
    let probe = Command::new(env!("CARGO_BIN_EXE_agentprof"))
        .args(["probe", "--bind", &format!("0.0.0.0:{}", server.port)])
        .status()
        .unwrap();
    assert!(
        probe.success(),
        "agentprof probe reports the server healthy"
    );
    let created = post_run(&client, &server.base, case_input(&case)).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let metrics = get_json(&client, &format!("{}/v1/runs/{id}/metrics", server.base)).await;
    assert_json_matches("eval_all_12", "metrics (embedded)", &expected, &metrics);
    server.stop();
    assert!(
        dir.join("agentprof.db").exists(),
        "the database file is in the data directory"
    );

    let server = Server::spawn(&[("AGENTPROF_DATA_DIR", dir.to_str().unwrap())]);
    server.ready(&client).await;
    let run = get_json(&client, &format!("{}/v1/runs/{id}", server.base)).await;
    assert_eq!(run["step_count"], created["step_count"]);
    let metrics = get_json(&client, &format!("{}/v1/runs/{id}/metrics", server.base)).await;
    assert_json_matches("eval_all_12", "metrics after restart", &expected, &metrics);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_public_bind_without_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentprof"))
        .args(["serve", "--bind", "0.0.0.0:0"])
        .env_remove("AGENTPROF_API_KEYS")
        .env_remove("AGENTPROF_ALLOW_UNAUTHENTICATED")
        .env("AGENTPROF_DATA_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without API keys"),
        "{err}"
    );
}
