//! Faults: the database going away and coming back, SIGTERM and kill -9 during ingest (a real
//! server process), and concurrent appends to one run.

mod common;

use agentprof::store::Store;
use agentprof::store::postgres::PgStore;
use agentprof::window::Window;
use axum::http::{Method, StatusCode};
use common::app::{Backend, Options, PgTestDb, TestApp};
use common::process::{Server, new_run};
use serde_json::{Value, json};
use sqlx::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A TCP proxy in front of PostgreSQL that can be switched off (dropping every connection and
/// refusing new ones) and on again, to simulate an outage.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links2.lock().await.push(link);
            }
        });
        Proxy { port, up, links }
    }

    async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `host:port` of the test PostgreSQL server.
fn pg_host_port() -> String {
    let url = common::app::admin_url();
    let after = url.split("://").nth(1).unwrap_or("");
    let authority = after.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("127.0.0.1:5432");
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

fn via_proxy(db: &PgTestDb, port: u16) -> String {
    let host = pg_host_port();
    db.url.replacen(&host, &format!("127.0.0.1:{port}"), 1)
}

fn store_via(url: &str) -> PgStore {
    let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(800))
        .max_connections(4)
        .connect_lazy_with(opts);
    PgStore::from_pool(pool)
}

async fn until<F: AsyncFnMut() -> bool>(what: &str, secs: u64, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_gives_503_and_recovers() {
    require_postgres!();
    let db = PgTestDb::create().await;
    let proxy = Proxy::start(pg_host_port()).await;
    let store = store_via(&via_proxy(&db, proxy.port));
    store.migrate().await.unwrap();
    let app = TestApp::on_store(Backend::Postgres, Arc::new(store), None, Options::default());
    let id = app.create_run(&json!({"name": "outage"})).await;
    let batch =
        json!([[{"payload": {"event_type": "TOOL_START", "event_timestamp": 1.0, "UUID": "t"}}]])
            .to_string();

    proxy.down().await;
    let r = app.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.json()["code"], "database-unavailable");
    assert!(
        !r.text().to_lowercase().contains("sqlx"),
        "no internal error text: {}",
        r.text()
    );
    assert_eq!(
        app.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let r = app
        .post_json(&format!("/v1/runs/{id}/steps"), batch.clone())
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.get("/healthz").await.status,
        StatusCode::OK,
        "liveness does not depend on the database"
    );

    proxy.up();
    until("readiness after the outage", 20, async || {
        app.get("/readyz").await.status == StatusCode::OK
    })
    .await;
    let r = app.post_json(&format!("/v1/runs/{id}/steps"), batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        app.get(&format!("/v1/runs/{id}")).await.json()["step_count"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_while_the_database_is_down() {
    require_postgres!();
    let db = PgTestDb::create().await;
    let proxy = Proxy::start(pg_host_port()).await;
    proxy.down().await;
    let store = store_via(&via_proxy(&db, proxy.port));
    store
        .migrate_with_retry(Duration::ZERO)
        .await
        .expect("an unreachable database is retried, not a failed migration");
    let store: Arc<dyn Store> = Arc::new(store);
    let app = TestApp::on_store(Backend::Postgres, store, None, Options::default());
    assert_eq!(
        app.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.post_json("/v1/runs", "{}").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    proxy.up();
    until("migrations in the background", 20, async || {
        app.get("/readyz").await.status == StatusCode::OK
    })
    .await;
    assert_eq!(
        app.post_json("/v1/runs", "{}").await.status,
        StatusCode::CREATED
    );
}

async fn concurrent_appends(backend: Backend) {
    let app = Arc::new(TestApp::new(backend).await);
    let id = app.create_run(&json!({})).await;
    let mut tasks = Vec::new();
    for client in 0..2 {
        let app = app.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for batch in 0..15 {
                // Both clients append to the same three requests.
                let reqs: Vec<Value> = (0..3)
                    .map(|r| {
                        let steps: Vec<Value> = (0..10)
                            .map(|s| json!({"payload": {"event_type": "TOOL_START", "event_timestamp": f64::from(batch * 100 + s),
                                "UUID": format!("c{client}-b{batch}-r{r}-s{s}")}}))
                            .collect();
                        json!({"request_number": r, "intermediate_steps": steps})
                    })
                    .collect();
                let r = app.post_json(&format!("/v1/runs/{id}/steps"), Value::Array(reqs).to_string()).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                assert_eq!(r.json()["steps"]["stored"], 30);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let run = app.get(&format!("/v1/runs/{id}")).await.json();
    assert_eq!(run["step_count"], 2 * 15 * 30);
    assert_eq!(run["request_count"], 3);
    assert_eq!(run["version"], 30);
    let traces = app.get(&format!("/v1/runs/{id}/requests")).await.json();
    let traces = traces
        .as_array()
        .expect("the combined requests file is an array");
    assert_eq!(traces.len(), 3);
    for r in traces {
        assert_eq!(r["intermediate_steps"].as_array().unwrap().len(), 300);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_lose_nothing_postgres() {
    require_postgres!();
    concurrent_appends(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_lose_nothing_sqlite() {
    concurrent_appends(Backend::Sqlite).await;
}

// ----- a real server process -------------------------------------------------------------------

/// A batch of `requests` requests with 20 steps each and long-ish prompts (about 5 KB a step).
fn big_batch(requests: usize, tag: &str) -> (String, usize) {
    let prompt = "lorem ipsum dolor sit amet ".repeat(200);
    let reqs: Vec<Value> = (0..requests)
        .map(|r| {
            let steps: Vec<Value> = (0..20)
                .map(|s| json!({"payload": {"event_type": if s % 2 == 0 { "LLM_START" } else { "LLM_END" }, "event_timestamp": (r * 100 + s) as f64,
                    "UUID": format!("{tag}-{r}-{}", s / 2), "name": "m", "data": {"input": prompt, "output": "ok"}}}))
                .collect();
            json!({"request_number": r, "intermediate_steps": steps})
        })
        .collect();
    (Value::Array(reqs).to_string(), requests * 20)
}

async fn stored_steps(url: &str, run: &str) -> (i64, i64) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let run_id: uuid::Uuid = run.parse().unwrap();
    let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM steps WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let recorded: i64 = sqlx::query_scalar("SELECT step_count FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (counted, recorded)
}

/// A transaction that holds a lock on `steps` which every INSERT into it waits for: a batch's
/// transaction stops at its steps and stays there, whatever the machine's speed, until
/// [`release`] (a batch that may finish before a poll sees it would make the tests below race).
async fn hold_step_inserts(db: &PgTestDb) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE steps IN SHARE MODE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn release(mut held: sqlx::PgConnection) {
    sqlx::raw_sql("ROLLBACK").execute(&mut held).await.unwrap();
}

/// Waits until the server's batch INSERT is executing (or waiting, see [`hold_step_inserts`])
/// in PostgreSQL, so that a signal sent next lands in the middle of the batch's transaction.
async fn wait_for_insert_in_flight(db: &PgTestDb) {
    let mut conn = sqlx::PgConnection::connect(&common::app::admin_url())
        .await
        .unwrap();
    until("the batch INSERT to start", 60, async || {
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query LIKE '%INSERT INTO steps%'",
        )
        .bind(&db.name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        active > 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_ingest_finishes_the_batch() {
    require_postgres!();
    let db = PgTestDb::create().await;
    let server = Server::spawn(&[("DATABASE_URL", &db.url)]);
    let client = reqwest::Client::new();
    server.ready(&client).await;
    let run = new_run(&client, &server.base).await;
    let (body, n) = big_batch(500, "term");
    let url = format!("{}/v1/runs/{run}/steps", server.base);
    let held = hold_step_inserts(&db).await;
    let post = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        }
    });
    wait_for_insert_in_flight(&db).await;
    server.signal("-TERM");
    release(held).await;
    // The batch was in its transaction when the signal came: it is finished and acknowledged.
    let resp = post
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["steps"]["stored"], n);
    assert_eq!(stored_steps(&db.url, &run).await, (n as i64, n as i64));
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful exit, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_leaves_no_partial_batch() {
    require_postgres!();
    let db = PgTestDb::create().await;
    let client = reqwest::Client::new();
    let server = Server::spawn(&[("DATABASE_URL", &db.url)]);
    server.ready(&client).await;
    let run = new_run(&client, &server.base).await;
    let (body, n) = big_batch(500, "kill");
    let url = format!("{}/v1/runs/{run}/steps", server.base);
    let held = hold_step_inserts(&db).await;
    let post = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        }
    });
    wait_for_insert_in_flight(&db).await;
    server.signal("-KILL");
    let acknowledged = matches!(post.await.unwrap(), Ok(r) if r.status() == 200);
    assert!(!acknowledged, "a killed server acknowledged the batch");
    drop(server);
    release(held).await;
    // PostgreSQL rolls the dead connection's transaction back; wait for its backend to go.
    let mut conn = sqlx::PgConnection::connect(&common::app::admin_url())
        .await
        .unwrap();
    until("the dead connection's backend to exit", 30, async || {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%INSERT INTO steps%'")
            .bind(&db.name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        n == 0
    })
    .await;
    assert_eq!(
        stored_steps(&db.url, &run).await,
        (0, 0),
        "no partial batch of {n} steps"
    );
    // The run is intact: a restarted server takes the same batch whole.
    let server = Server::spawn(&[("DATABASE_URL", &db.url)]);
    server.ready(&client).await;
    let (body, _) = big_batch(500, "kill");
    let r = client
        .post(format!("{}/v1/runs/{run}/steps", server.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(stored_steps(&db.url, &run).await, (n as i64, n as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_data_route_is_a_503_problem_during_an_outage() {
    require_postgres!();
    let db = PgTestDb::create().await;
    let proxy = Proxy::start(pg_host_port()).await;
    let store = store_via(&via_proxy(&db, proxy.port));
    store.migrate().await.unwrap();
    let app = TestApp::on_store(Backend::Postgres, Arc::new(store), None, Options::default());
    let id = app.create_run(&json!({})).await;
    proxy.down().await;
    for (method, path) in [
        (Method::GET, format!("/v1/runs/{id}/metrics")),
        (Method::GET, format!("/v1/runs/{id}/requests")),
        (Method::GET, "/v1/runs".to_owned()),
        (Method::DELETE, format!("/v1/runs/{id}")),
    ] {
        let r = app
            .request(method.clone(), &path, &[], axum::body::Body::empty())
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.header("retry-after"), Some("5"), "{method} {path}");
        assert_eq!(r.json()["code"], "database-unavailable", "{method} {path}");
    }
}

/// The SQLite store, except that one chosen `get_run` reads the record and then waits for a
/// signal before returning it: a slow read that a write overtakes.
struct SlowRead {
    inner: agentprof::store::sqlite::SqliteStore,
    hold_next: AtomicBool,
    release: tokio::sync::Notify,
    holding: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Store for SlowRead {
    fn backend(&self) -> &'static str {
        "slow-sqlite"
    }
    async fn ping(&self) -> Result<(), agentprof::store::StoreError> {
        self.inner.ping().await
    }
    async fn create_run(
        &self,
        run: agentprof::store::NewRun,
        batch: Option<agentprof::store::PreparedBatch>,
        key: Option<&agentprof::store::IdempotencyKey>,
    ) -> Result<agentprof::store::Written, agentprof::store::StoreError> {
        self.inner.create_run(run, batch, key).await
    }
    async fn run_stamp(
        &self,
        id: uuid::Uuid,
    ) -> Result<agentprof::store::RunStamp, agentprof::store::StoreError> {
        self.inner.run_stamp(id).await
    }
    async fn ensure_run(
        &self,
        id: uuid::Uuid,
        run: agentprof::store::NewRun,
    ) -> Result<bool, agentprof::store::StoreError> {
        self.inner.ensure_run(id, run).await
    }
    async fn purge_idempotency_keys(
        &self,
        cutoff: time::OffsetDateTime,
    ) -> Result<u64, agentprof::store::StoreError> {
        self.inner.purge_idempotency_keys(cutoff).await
    }
    async fn get_run(
        &self,
        id: uuid::Uuid,
    ) -> Result<agentprof::store::RunRecord, agentprof::store::StoreError> {
        let record = self.inner.get_run(id).await;
        if self.hold_next.swap(false, Ordering::SeqCst) {
            self.holding.notify_one();
            self.release.notified().await;
        }
        record
    }
    async fn list_runs(
        &self,
        limit: i64,
        after: Option<agentprof::store::RunCursor>,
        name: Option<&str>,
    ) -> Result<agentprof::store::RunPage, agentprof::store::StoreError> {
        self.inner.list_runs(limit, after, name).await
    }
    async fn update_run(
        &self,
        id: uuid::Uuid,
        changes: agentprof::store::RunChanges,
    ) -> Result<agentprof::store::RunRecord, agentprof::store::StoreError> {
        self.inner.update_run(id, changes).await
    }
    async fn delete_run(&self, id: uuid::Uuid) -> Result<(), agentprof::store::StoreError> {
        self.inner.delete_run(id).await
    }
    async fn append(
        &self,
        id: uuid::Uuid,
        batch: agentprof::store::PreparedBatch,
        key: Option<&agentprof::store::IdempotencyKey>,
    ) -> Result<agentprof::store::Written, agentprof::store::StoreError> {
        self.inner.append(id, batch, key).await
    }
    async fn load(
        &self,
        id: uuid::Uuid,
        window: &Window,
    ) -> Result<agentprof::store::LoadedRun, agentprof::store::StoreError> {
        self.inner.load(id, window).await
    }
    async fn load_steps(
        &self,
        id: uuid::Uuid,
        window: &Window,
    ) -> Result<agentprof::store::LoadedSteps, agentprof::store::StoreError> {
        self.inner.load_steps(id, window).await
    }
    async fn stream_requests(
        &self,
        id: uuid::Uuid,
        schema: Option<agentprof::trace::StepSchema>,
        window: &Window,
    ) -> Result<agentprof::store::ByteStream, agentprof::store::StoreError> {
        self.inner.stream_requests(id, schema, window).await
    }
    async fn size(
        &self,
        id: uuid::Uuid,
        window: &Window,
    ) -> Result<agentprof::store::WindowSize, agentprof::store::StoreError> {
        self.inner.size(id, window).await
    }
    async fn fitting_start(
        &self,
        id: uuid::Uuid,
        window: &Window,
        cost: [f64; 3],
        budget: f64,
    ) -> Result<Option<f64>, agentprof::store::StoreError> {
        self.inner.fitting_start(id, window, cost, budget).await
    }
    async fn series(
        &self,
        id: uuid::Uuid,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Option<Vec<agentprof::rollup::Bucket>>, agentprof::store::StoreError> {
        self.inner.series(id, from, to, step).await
    }
    async fn rollups_pending(&self) -> Result<Vec<uuid::Uuid>, agentprof::store::StoreError> {
        self.inner.rollups_pending().await
    }
    async fn rebuild_rollups(&self, id: uuid::Uuid) -> Result<(), agentprof::store::StoreError> {
        self.inner.rebuild_rollups(id).await
    }
    async fn retained_runs(&self) -> Result<Vec<(uuid::Uuid, i64)>, agentprof::store::StoreError> {
        self.inner.retained_runs().await
    }
    async fn sweep(
        &self,
        id: uuid::Uuid,
        cutoff: f64,
        limit: i64,
    ) -> Result<agentprof::store::Swept, agentprof::store::StoreError> {
        self.inner.sweep(id, cutoff, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_never_hides_a_later_local_write() {
    let store = Arc::new(SlowRead {
        inner: agentprof::store::sqlite::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap(),
        hold_next: AtomicBool::new(false),
        release: tokio::sync::Notify::new(),
        holding: tokio::sync::Notify::new(),
    });
    let cache = Arc::new(agentprof::compute::RunCache::new(
        store.clone(),
        1 << 20,
        Default::default(),
        agentprof::compute::AnalysisGate::new(1 << 30, std::time::Duration::from_secs(30)),
    ));
    let new_run = agentprof::store::NewRun {
        name: String::new(),
        profiler_config: json!({}),
        metadata: Default::default(),
        toolkit: None,
        retention_seconds: None,
        prices: Default::default(),
    };
    let id = store
        .create_run(new_run, None, None)
        .await
        .unwrap()
        .record
        .id;

    // A reader fetches version 0 and stalls before caching it...
    store.hold_next.store(true, Ordering::SeqCst);
    let reader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.snapshot(id).await.map(|s| s.record.version) }
    });
    store.holding.notified().await;
    // ...while a batch is stored...
    let doc =
        json!([[{"payload": {"event_type": "LLM_START", "event_timestamp": 1.0, "UUID": "a"}}]]);
    let batch = agentprof::store::PreparedBatch::prepare(
        agentprof::trace::parse_value(doc, &Default::default()).unwrap(),
    );
    assert_eq!(
        store.append(id, batch, None).await.unwrap().record.version,
        1
    );
    // ...then the stale read completes and lands in the cache.
    store.release.notify_one();
    assert_eq!(reader.await.unwrap().unwrap(), 0);
    // A read after the write must see it, not the stale cached record.
    assert_eq!(cache.snapshot(id).await.unwrap().record.version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_downloads_cannot_take_every_connection() {
    require_postgres!();
    use tower::ServiceExt;
    let app = TestApp::new(Backend::Postgres).await;
    let id = app
        .create_run(&json!({"requests": [[{"payload": {"event_type": "LLM_START", "event_timestamp": 1.0, "UUID": "a"}}]]}))
        .await;
    let uri = format!("/v1/runs/{id}/requests");
    let download = || {
        let req = axum::http::Request::get(&uri)
            .body(axum::body::Body::empty())
            .unwrap();
        app.router.clone().oneshot(req)
    };
    // Half the pool of 16 may stream; these clients never read their bodies.
    let mut held = Vec::new();
    for _ in 0..8 {
        let r = download().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        held.push(r);
    }
    let refused = download().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    // Everything else still has connections.
    let run = app.get(&format!("/v1/runs/{id}")).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text());
    let m = app.get(&format!("/v1/runs/{id}/metrics")).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());
    drop(held);
    assert_eq!(app.get(&uri).await.status, StatusCode::OK);
}
