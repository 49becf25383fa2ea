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

/// A database written before run names and eval ids were kept as bytes: after the migration its
/// eval ids are still found (a batch naming one appends to its request instead of creating
/// another) and its names still read and match a search.
#[tokio::test]
async fn text_names_and_eval_ids_from_before_bytes_are_still_found() {
    use agentprof::store::{PreparedBatch, Store, sqlite::SqliteStore};
    use agentprof::trace::{ParseOptions, parse_value};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agentprof.db");
    // The schema as it was: every migration before the one that turned text into bytes.
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    let mut files: Vec<_> = std::fs::read_dir("migrations/sqlite")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.file_name().unwrap().to_str().unwrap() < "20261206000001")
    {
        std::fs::copy(f, old.join(f.file_name().unwrap())).unwrap();
    }
    let url = format!("sqlite://{}?mode=rwc", db.display());
    {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        let id = uuid::Uuid::from_u128(7);
        sqlx::query("INSERT INTO runs (id, name, created_at, updated_at, request_count) VALUES (?1, 'Nightly Eval', 1, 1, 1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO requests (run_id, request_number, external_id) VALUES (?1, 0, 'q-1')",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::open(&db).await.unwrap();
    let id = uuid::Uuid::from_u128(7);
    let doc = json!([{"id": "q-1", "question": "?", "answer": "a", "generated_answer": "a",
                      "intermediate_steps": [step("LLM_START", 1.0, "u1")]}]);
    let batch = PreparedBatch::prepare(parse_value(doc, &ParseOptions::default()).unwrap());
    let outcome = store
        .append(id, batch, None)
        .await
        .unwrap()
        .outcome
        .unwrap();
    assert_eq!(outcome.requests_created, 0, "the stored eval id was found");
    let run = store.get_run(id).await.unwrap();
    assert_eq!((run.name.as_str(), run.request_count), ("Nightly Eval", 1));
    let found = store.list_runs(10, None, Some("nightly")).await.unwrap();
    assert_eq!(found.items.len(), 1);
}
