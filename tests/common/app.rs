//! A test application on a fresh, isolated database: PostgreSQL (a new database per test, dropped
//! afterwards) or SQLite (in memory). Requests go through the router in-process (`oneshot`) or,
//! with [`TestApp::serve`], over a real socket.

use agentprof::api::{ApiSettings, AppState, body::BodyLimits};
use agentprof::config::ApiKeys;
use agentprof::store::{Store, postgres::PgStore, sqlite::SqliteStore};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::Connection;
use std::sync::Arc;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Whether the PostgreSQL tests can run. `scripts/test` sets `TEST_DATABASE_URL` (starting a
/// server if need be), and then an unreachable server fails the tests. A plain `cargo test`
/// without it runs them only when a server answers at the default address, and otherwise skips
/// them with one line that says how to run them.
pub async fn postgres_available() -> bool {
    static AVAILABLE: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    *AVAILABLE
        .get_or_init(|| async {
            if std::env::var_os("TEST_DATABASE_URL").is_some() {
                return true;
            }
            let url = admin_url();
            let reachable = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                sqlx::PgConnection::connect(&url),
            )
            .await
            .is_ok_and(|c| c.is_ok());
            if !reachable {
                // Straight to stderr: the test harness captures `eprintln!` of passing tests.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping the PostgreSQL tests: nothing answers at {url}; run scripts/test, which starts one"
                );
            }
            reachable
        })
        .await
}

/// Returns from the calling test when PostgreSQL is not available (see [`postgres_available`]).
#[macro_export]
macro_rules! require_postgres {
    () => {
        if !$crate::common::app::postgres_available().await {
            return;
        }
    };
}

/// The server's address for tests: `TEST_DATABASE_URL`, set by `scripts/test`.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn url_with_database(admin: &str, db: &str) -> String {
    let (base, query) = admin
        .split_once('?')
        .map_or((admin, None), |(b, q)| (b, Some(q)));
    let cut = base
        .rfind('/')
        .filter(|i| *i > base.find("://").map_or(0, |s| s + 2))
        .unwrap_or(base.len());
    let mut url = format!("{}/{db}", &base[..cut]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// A PostgreSQL database that exists for one test.
pub struct PgTestDb {
    pub name: String,
    pub url: String,
}

impl PgTestDb {
    pub async fn create() -> PgTestDb {
        let name = format!("agentprof_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("tests need PostgreSQL at {admin} (run scripts/test): {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        PgTestDb {
            url: url_with_database(&admin, &name),
            name,
        }
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context we can await in; use a short-lived runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url()).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub backend: Backend,
    /// Keeps the PostgreSQL database alive for the test.
    pub pg: Option<PgTestDb>,
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Options {
    pub keys: Option<ApiKeys>,
    pub max_bytes: usize,
    pub max_decompressed: usize,
    pub max_batch_memory: usize,
    /// `--max-analysis-memory`.
    pub analysis_memory: u64,
    /// The server's price table (`--prices`).
    pub prices: agentprof::profiler::statistics::cost::PriceTable,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keys: None,
            max_bytes: 64 * 1024 * 1024,
            max_decompressed: 256 * 1024 * 1024,
            max_batch_memory: agentprof::config::DEFAULT_MAX_BATCH_MEMORY,
            analysis_memory: 1 << 30,
            prices: Default::default(),
        }
    }
}

impl TestApp {
    pub async fn new(backend: Backend) -> TestApp {
        TestApp::with(backend, Options::default()).await
    }

    pub async fn with(backend: Backend, opts: Options) -> TestApp {
        let (store, pg): (Arc<dyn Store>, Option<PgTestDb>) = match backend {
            Backend::Postgres => {
                let db = PgTestDb::create().await;
                let store = PgStore::connect(&db.url)
                    .await
                    .expect("connect and migrate");
                (Arc::new(store), Some(db))
            }
            Backend::Sqlite => (
                Arc::new(
                    SqliteStore::connect("sqlite::memory:")
                        .await
                        .expect("sqlite"),
                ),
                None,
            ),
        };
        TestApp::on_store(backend, store, pg, opts)
    }

    pub fn on_store(
        backend: Backend,
        store: Arc<dyn Store>,
        pg: Option<PgTestDb>,
        opts: Options,
    ) -> TestApp {
        let settings = ApiSettings {
            limits: BodyLimits {
                max_bytes: opts.max_bytes,
                max_decompressed: opts.max_decompressed,
            },
            max_batch_memory: opts.max_batch_memory,
            keys: opts.keys,
            cache_bytes: 64 * 1024 * 1024,
            analysis_memory: opts.analysis_memory,
            analysis_wait: std::time::Duration::from_secs(5),
            prices: opts.prices,
            ..ApiSettings::default()
        };
        let state = AppState::new(store, &settings);
        TestApp {
            router: agentprof::server::app(state.clone()),
            state,
            backend,
            pg,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.into()).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.request(Method::GET, uri, &[], Body::empty()).await
    }

    pub async fn post_json(&self, uri: &str, body: impl Into<Body>) -> Reply {
        self.request(
            Method::POST,
            uri,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// The app's state with an ingest service of `slots` turns, each waited for up to `wait`.
    pub fn state_with_ingest_slots(&self, slots: usize, wait: std::time::Duration) -> AppState {
        let mut state = self.state.clone();
        state.ingest = Arc::new(agentprof::ingest::Ingest::new(
            state.store.clone(),
            state.cache.clone(),
            slots,
            wait,
            agentprof::config::DEFAULT_MAX_BATCH_MEMORY,
        ));
        state
    }

    /// Creates a run from a JSON value and returns its id.
    pub async fn create_run(&self, body: &Value) -> String {
        let r = self.post_json("/v1/runs", body.to_string()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r.json()["id"].as_str().expect("id").to_owned()
    }

    /// Serves the app on an ephemeral loopback port; returns its base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = self.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}")
    }
}

/// Generates one test per backend from an async test body taking a `Backend`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::require_postgres!();
                ($body)(Backend::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)(Backend::Sqlite).await
            }
        }
    };
}
