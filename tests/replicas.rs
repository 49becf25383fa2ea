//! Two real server processes on one PostgreSQL database behave as one: a write acknowledged by
//! either is seen by the very next read on the other, ETags included, while writers and readers
//! work on both at once.

mod common;

use common::app::PgTestDb;
use common::process::{Server, new_run};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn batch(i: usize) -> Value {
    json!([{
        "request_number": i,
        "intermediate_steps": [
            {"function_ancestry": {"function_id": "f", "function_name": "agent"},
             "payload": {"event_type": "LLM_START", "event_timestamp": i as f64, "UUID": format!("c{i}"), "name": "m",
                         "data": {"input": format!("prompt {i}")}}},
            {"function_ancestry": {"function_id": "f", "function_name": "agent"},
             "payload": {"event_type": "LLM_END", "event_timestamp": i as f64 + 0.5, "UUID": format!("c{i}"), "name": "m",
                         "usage_info": {"token_usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}}}
        ]
    }])
}

async fn get(client: &reqwest::Client, url: String) -> (Value, Option<String>) {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.json().await.unwrap(), etag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_read_each_others_writes_at_once() {
    require_postgres!();
    let db = PgTestDb::create().await;
    let client = reqwest::Client::new();
    let servers = [
        Server::spawn(&[("DATABASE_URL", &db.url)]),
        Server::spawn(&[("DATABASE_URL", &db.url)]),
    ];
    for s in &servers {
        s.ready(&client).await;
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let run = new_run(&client, &bases[0]).await;

    // Readers on both replicas poll the run's outputs the whole time, warming and re-warming
    // their caches while the writes land.
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for base in bases.clone() {
        let (client, run, done, reads) = (client.clone(), run.clone(), done.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                for path in ["", "/metrics", "/profiling"] {
                    let r = client
                        .get(format!("{base}/v1/runs/{run}{path}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }

    // Writers on both replicas; after each acknowledged batch, the other replica is read at once.
    let mut writers = Vec::new();
    for w in 0..2usize {
        let (client, run, bases) = (client.clone(), run.clone(), bases.clone());
        writers.push(tokio::spawn(async move {
            for k in 0..15usize {
                let i = w * 100 + k;
                let (mine, other) = (&bases[w], &bases[1 - w]);
                let r = client
                    .post(format!("{mine}/v1/runs/{run}/steps"))
                    .header("content-type", "application/json")
                    .body(batch(i).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let acked: Value = r.json().await.unwrap();
                let version = acked["version"].as_i64().unwrap();
                let (seen, _) = get(&client, format!("{other}/v1/runs/{run}")).await;
                assert!(
                    seen["version"].as_i64().unwrap() >= version,
                    "replica {} served version {} after version {version} was acknowledged",
                    1 - w,
                    seen["version"]
                );
                let (requests, _) = get(&client, format!("{other}/v1/runs/{run}/requests")).await;
                let numbers: Vec<i64> = requests
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["request_number"].as_i64().unwrap())
                    .collect();
                assert!(
                    numbers.contains(&(i as i64)),
                    "request {i} missing on the other replica"
                );
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    assert!(reads.load(Ordering::SeqCst) > 0);

    // Quiet now: both replicas serve the same version, the same bytes and the same ETags.
    for path in ["", "/metrics", "/profiling", "/standardized.csv"] {
        let urls: Vec<String> = bases
            .iter()
            .map(|b| format!("{b}/v1/runs/{run}{path}"))
            .collect();
        let a = client.get(&urls[0]).send().await.unwrap();
        let b = client.get(&urls[1]).send().await.unwrap();
        assert_eq!(a.headers().get("etag"), b.headers().get("etag"), "{path}");
        assert_eq!(a.bytes().await.unwrap(), b.bytes().await.unwrap(), "{path}");
    }
    let (run_view, _) = get(&client, format!("{}/v1/runs/{run}", bases[1])).await;
    assert_eq!(run_view["step_count"], 60);
    assert_eq!(run_view["request_count"], 30);
}
