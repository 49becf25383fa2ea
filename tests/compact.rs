//! Compact steps (`store::packed`): steps stored before them are packed when a server starts,
//! with every output unchanged, and real steps the dictionary never saw pack small.

mod common;

use agentprof::profiler::StepColumns;
use agentprof::store::packed::{self, Schedule};
use agentprof::store::{Store, postgres::PgStore, sqlite::SqliteStore};
use agentprof::trace::{ParseOptions, parse, render_step};
use common::app::{Backend, Options, PgTestDb, TestApp};
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A real nvidia-nat eval the shipped dictionary was not trained on (docs/storage.md).
const HELD_OUT: &str = "realnat_concurrent_16";

/// Steps in the old columns, and steps packed.
macro_rules! formats {
    ($pool:expr) => {{
        let (old, packed): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE body IS NOT NULL), COUNT(*) FILTER (WHERE packed IS NOT NULL) FROM steps",
        )
        .fetch_one($pool)
        .await
        .unwrap();
        (old, packed)
    }};
}

/// Every output of every run, by run and path.
async fn outputs(app: &TestApp, runs: &[String]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for id in runs {
        let paths = OUTPUT_FILES
            .iter()
            .map(|(_, path)| path.to_string())
            .chain(["stats".into(), "series?step=60".into()]);
        for path in paths {
            let uri = format!("/v1/runs/{id}/{path}");
            let r = app.get(&uri).await;
            if r.status == axum::http::StatusCode::NOT_FOUND {
                continue;
            }
            assert!(r.status.is_success(), "{uri}: {} {}", r.status, r.text());
            out.insert(uri, r.body.to_vec());
        }
    }
    out
}

async fn post_cases(app: &TestApp) -> Vec<String> {
    let mut runs = Vec::new();
    for case in ["chat_6", "nat_eval_all_10", "realnat_react_12", HELD_OUT] {
        runs.push(post_case(app, case).await);
    }
    runs
}

on_both_backends!(
    steps_stored_before_compact_steps_are_packed_at_start,
    |backend| async move {
        let dir = tempfile::tempdir().unwrap();
        let sqlite_path = dir.path().join("agentprof.db");
        let pg = match backend {
            Backend::Postgres => Some(PgTestDb::create().await),
            Backend::Sqlite => None,
        };
        let open = || async {
            let store: Arc<dyn Store> = match &pg {
                Some(db) => Arc::new(PgStore::connect(&db.url).await.unwrap()),
                None => Arc::new(SqliteStore::open(&sqlite_path).await.unwrap()),
            };
            store
        };
        let first = TestApp::on_store(backend, open().await, None, Options::default());
        let runs = post_cases(&first).await;
        let before = outputs(&first, &runs).await;
        drop(first);

        // The database as the previous release left it.
        let stored = match &pg {
            Some(db) => {
                let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                let n = unpack_all!(&pool);
                assert_eq!(formats!(&pool), (n as i64, 0));
                n
            }
            None => {
                let pool =
                    sqlx::SqlitePool::connect(&format!("sqlite://{}", sqlite_path.display()))
                        .await
                        .unwrap();
                let n = unpack_all!(&pool);
                assert_eq!(formats!(&pool), (n as i64, 0));
                pool.close().await;
                n
            }
        };
        assert!(stored > 1000, "{stored} steps");

        // The next start packs them, and every output reads as before.
        let second = TestApp::on_store(backend, open().await, None, Options::default());
        let after = outputs(&second, &runs).await;
        assert_eq!(before.len(), after.len());
        for (uri, body) in &before {
            assert!(after[uri] == *body, "{uri} changed");
        }
        let formats = match &pg {
            Some(db) => formats!(&sqlx::PgPool::connect(&db.url).await.unwrap()),
            None => formats!(
                &sqlx::SqlitePool::connect(&format!("sqlite://{}", sqlite_path.display()))
                    .await
                    .unwrap()
            ),
        };
        assert_eq!(formats, (0, stored as i64));
    }
);

#[test]
fn real_steps_the_dictionary_never_saw_pack_small() {
    let dir = fixtures().join("cases").join(HELD_OUT);
    let batch = parse(&case_input(&dir), &ParseOptions::default()).unwrap();
    let (mut json, mut stored, mut steps) = (0usize, 0usize, 0usize);
    for step in batch.steps() {
        let body = String::from_utf8(render_step(step)).unwrap();
        let value = packed::pack(
            &StepColumns::from_step(step),
            &body,
            packed::Dictionary::builtin(),
        );
        json += body.len();
        stored += value.len();
        steps += 1;
    }
    let (json, stored) = (json / steps, stored / steps);
    // BENCHMARKS.md ("Compact steps") has the figures; this bound catches a dictionary that
    // stopped applying (more than twice as large without one).
    assert!(
        stored < 400,
        "{steps} steps: {stored} bytes packed from {json} bytes of JSON on average"
    );
    assert!(json > 1500, "{json} bytes of JSON");
}

/// Each step's format byte, in key order.
macro_rules! formats_of {
    ($pool:expr, $run:expr) => {{
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
            "SELECT packed FROM steps WHERE run_id = $1 ORDER BY request_number, seq",
        )
        .bind($run)
        .fetch_all($pool)
        .await
        .unwrap();
        rows.into_iter().map(|(p,)| p).collect::<Vec<_>>()
    }};
}

on_both_backends!(
    a_database_trains_a_dictionary_on_its_own_steps,
    |backend| async move {
        let dir = tempfile::tempdir().unwrap();
        let sqlite_path = dir.path().join("agentprof.db");
        let pg = match backend {
            Backend::Postgres => Some(PgTestDb::create().await),
            Backend::Sqlite => None,
        };
        let open = || async {
            let store: Arc<dyn Store> = match &pg {
                Some(db) => Arc::new(PgStore::connect(&db.url).await.unwrap()),
                None => Arc::new(SqliteStore::open(&sqlite_path).await.unwrap()),
            };
            store
        };
        let (one, two) = (open().await, open().await);
        let app = TestApp::on_store(backend, one.clone(), None, Options::default());
        let schedule = Schedule { first: 500 };
        assert_eq!(
            one.train_step_dictionary(schedule).await.unwrap(),
            None,
            "nothing stored yet"
        );

        // The same agent's earlier eval, packed with the built-in dictionary, then two replicas
        // racing to train on it: one stores dictionary 1, and both use it from then on.
        let trained_on = post_case(&app, "realnat_react_12").await;
        let (a, b) = tokio::join!(
            one.train_step_dictionary(schedule),
            two.train_step_dictionary(schedule)
        );
        let mut ids = [a.unwrap(), b.unwrap()];
        ids.sort();
        assert_eq!(ids, [None, Some(1)]);
        assert_eq!(
            (one.step_dictionary().id(), two.step_dictionary().id()),
            (1, 1)
        );
        assert_eq!(
            one.train_step_dictionary(schedule).await.unwrap(),
            None,
            "not due again yet"
        );

        // A new eval, through the replica that did not necessarily train.
        let other = TestApp::on_store(backend, two.clone(), None, Options::default());
        let held_out = post_case(&other, HELD_OUT).await;
        let runs = [trained_on.clone(), held_out.clone()];
        let before = outputs(&app, &runs).await;

        let (old, new) = match &pg {
            Some(db) => {
                let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                (
                    formats_of!(&pool, uuid::Uuid::parse_str(&trained_on).unwrap()),
                    formats_of!(&pool, uuid::Uuid::parse_str(&held_out).unwrap()),
                )
            }
            None => {
                let pool =
                    sqlx::SqlitePool::connect(&format!("sqlite://{}", sqlite_path.display()))
                        .await
                        .unwrap();
                (
                    formats_of!(&pool, uuid::Uuid::parse_str(&trained_on).unwrap()),
                    formats_of!(&pool, uuid::Uuid::parse_str(&held_out).unwrap()),
                )
            }
        };
        assert!(
            old.iter().all(|p| p[0] == 1),
            "the first eval keeps the built-in dictionary"
        );
        assert!(
            new.iter().all(|p| p[..2] == [2, 1]),
            "the new eval names dictionary 1"
        );
        let mean = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() / v.len();
        let builtin = {
            let dir = fixtures().join("cases").join(HELD_OUT);
            let batch = parse(&case_input(&dir), &ParseOptions::default()).unwrap();
            let packed: Vec<Vec<u8>> = batch
                .steps()
                .map(|s| {
                    let body = String::from_utf8(render_step(s)).unwrap();
                    packed::pack(
                        &StepColumns::from_step(s),
                        &body,
                        packed::Dictionary::builtin(),
                    )
                })
                .collect();
            mean(&packed)
        };
        assert!(
            mean(&new) < builtin,
            "trained {} bytes a step against {builtin} with the built-in dictionary",
            mean(&new)
        );

        // A server started later reads both runs as the first did.
        let third = TestApp::on_store(backend, open().await, None, Options::default());
        assert_eq!(outputs(&third, &runs).await, before);
    }
);

/// Runs posted one after another append at the right edge of the steps' primary key, because
/// their ids are UUID v7, so its leaf pages split at the 90% fillfactor: about 70 bytes an entry,
/// where random (v4) ids, splitting pages in half, gave about 110. (Inserting each batch in key
/// order adds only a few percent, which this bound does not tell apart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_written_one_after_another_fill_the_primary_key() {
    require_postgres!();
    let db = PgTestDb::create().await;
    let store = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let app = TestApp::on_store(Backend::Postgres, store, None, Options::default());
    let mut runs = Vec::new();
    for _ in 0..10 {
        runs.push(post_case(&app, HELD_OUT).await);
    }
    for id in &runs {
        let id = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(id.get_version_num(), 7, "{id}");
    }
    assert!(runs.is_sorted(), "run ids out of creation order: {runs:?}");

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("VACUUM ANALYZE steps")
        .execute(&pool)
        .await
        .unwrap();
    let (bytes, entries): (i64, i64) =
        sqlx::query_as("SELECT pg_relation_size('steps_identity'), (SELECT COUNT(*) FROM steps)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(entries > 7000, "{entries} steps");
    let per_entry = bytes as f64 / entries as f64;
    assert!(
        per_entry < 80.0,
        "the primary key takes {per_entry:.1} bytes an entry ({bytes} bytes, {entries} steps)"
    );
}

async fn post_case(app: &TestApp, case: &str) -> String {
    let dir = fixtures().join("cases").join(case);
    let id = app
        .create_run(&json!({"name": case, "profiler_config": case_config(&dir)}))
        .await;
    let raw = case_input(&dir);
    let mut headers = vec![("content-type", "application/json")];
    if raw.starts_with(&[0x1f, 0x8b]) {
        headers.push(("content-encoding", "gzip"));
    }
    let r = app
        .request(
            axum::http::Method::POST,
            &format!("/v1/runs/{id}/steps"),
            &headers,
            raw,
        )
        .await;
    assert!(r.status.is_success(), "{case}: {}", r.text());
    id
}
