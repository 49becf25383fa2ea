//! The schema stays shardable by run: every table that grows with a run's steps (requests,
//! steps, rollups) has every unique index (its primary key included) led by `run_id`, so that
//! Citus can distribute those tables by `run_id` with their uniqueness checked on one shard.
//! Checked on a freshly migrated PostgreSQL and SQLite.

mod common;

use common::app::PgTestDb;
use sqlx::Connection;

/// The tables whose rows grow with the steps of a run.
const PER_RUN: [&str; 3] = ["requests", "steps", "rollups"];

#[tokio::test]
async fn postgres_unique_indexes_lead_with_run_id() {
    require_postgres!();
    let db = PgTestDb::create().await;
    let _store = agentprof::store::postgres::PgStore::connect(&db.url)
        .await
        .expect("migrate");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, a.attname::text
         FROM pg_index x
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
         WHERE x.indisunique AND t.relname = ANY($1)",
    )
    .bind(PER_RUN.map(str::to_owned).to_vec())
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for table in PER_RUN {
        assert!(
            rows.iter().any(|r| r.0 == table),
            "{table} has no unique index"
        );
    }
    for (table, index, first) in &rows {
        assert_eq!(first, "run_id", "{table}.{index} is led by {first}");
    }
}

#[tokio::test]
async fn sqlite_unique_indexes_lead_with_run_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let _store = agentprof::store::sqlite::SqliteStore::open(&path)
        .await
        .expect("migrate");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for table in PER_RUN {
        let indexes: Vec<(i64, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT seq, name, \"unique\" FROM pragma_index_list('{table}')"
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let unique: Vec<&String> = indexes.iter().filter(|i| i.2 == 1).map(|i| &i.1).collect();
        assert!(!unique.is_empty(), "{table} has no unique index");
        for index in unique {
            let first: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_index_info('{index}') WHERE seqno = 0"
            )))
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(first, "run_id", "{table}.{index} is led by {first}");
        }
    }
}
