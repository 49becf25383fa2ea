//! `agentprof serve`: choose the store, build the application, listen, and shut down gracefully.

mod connections;

pub use connections::ConnectionLimits;

use crate::api::{self, ApiSettings, AppState};
use crate::config::{DatabaseUrl, ServeConfig};
use crate::store::packed::Schedule;
use crate::store::postgres::{self, PgStore};
use crate::store::{ReadPolicy, Store, StoreError, sqlite::SqliteStore};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without API keys: set AGENTPROF_API_KEYS (e.g. \"write:$(openssl rand -hex 16)\"), \
         bind to 127.0.0.1, or pass --allow-unauthenticated"
    )]
    UnauthenticatedPublicBind(SocketAddr),
    #[error("--read-database-url needs a postgres:// DATABASE_URL and postgres:// standbys: {0}")]
    Standbys(String),
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Streams (exports in flight) one OTLP/gRPC connection may have at once.
const GRPC_STREAMS_PER_CONNECTION: u32 = 8;

/// Opens the configured store: PostgreSQL or SQLite by URL, the embedded SQLite file otherwise.
pub async fn open_store(config: &ServeConfig) -> Result<Arc<dyn Store>, ServeError> {
    match &config.database_url {
        Some(url) if url.is_postgres() => {
            let store = PgStore::connect_lazy(url.expose())?.with_standbys(
                standby_pools(&config.read_database_urls)?,
                ReadPolicy {
                    wait: Duration::from_millis(config.read_wait_ms),
                    max_lag_bytes: config.read_max_lag.as_u64(),
                    ..ReadPolicy::default()
                },
            );
            // Apply migrations now if the database is up; otherwise keep retrying in the
            // background while the server answers 503 (readiness tells).
            store.migrate_with_retry(Duration::from_secs(10)).await?;
            Ok(Arc::new(store))
        }
        _ if !config.read_database_urls.is_empty() => Err(ServeError::Standbys(
            "the primary is SQLite, which has no standbys".to_owned(),
        )),
        Some(url) => Ok(Arc::new(SqliteStore::connect(url.expose()).await?)),
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
            let path = config.data_dir.join("agentprof.db");
            tracing::info!(path = %path.display(), "no DATABASE_URL: using the embedded SQLite store");
            Ok(Arc::new(SqliteStore::open(&path).await?))
        }
    }
}

/// A lazily connecting pool per standby, named `host:port/database` (never with its password).
fn standby_pools(urls: &[DatabaseUrl]) -> Result<Vec<(String, PgPool)>, ServeError> {
    urls.iter()
        .map(|url| {
            if !url.is_postgres() {
                return Err(ServeError::Standbys(format!("{url} is not postgres://")));
            }
            let opts = PgConnectOptions::from_str(url.expose()).map_err(StoreError::Database)?;
            let name = format!(
                "{}:{}/{}",
                opts.get_host(),
                opts.get_port(),
                opts.get_database().unwrap_or("")
            );
            // A standby that is down must cost a read little before it goes to the primary.
            let pool = postgres::pool_options()
                .acquire_timeout(Duration::from_secs(1))
                .connect_lazy_with(opts);
            Ok((name, pool))
        })
        .collect()
}

/// The whole application: the API and the dashboard's pages, under one middleware stack.
pub fn app(state: AppState) -> axum::Router {
    api::app(state, crate::ui::router())
}

/// Runs the server until SIGINT or SIGTERM; requests in flight (a batch being stored) finish
/// before the process exits.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let settings = ApiSettings::from_config(&config);
    let public = std::iter::once(config.bind)
        .chain(config.otlp_grpc_bind)
        .find(|a| !a.ip().is_loopback());
    if let Some(addr) = public
        && settings.keys.is_none()
        && !config.allow_unauthenticated
    {
        return Err(ServeError::UnauthenticatedPublicBind(addr));
    }
    let store = open_store(&config).await?;
    let state = AppState::new(store.clone(), &settings);
    api::spawn_metrics_upkeep(state.prometheus.clone());
    spawn_key_purge(
        store.clone(),
        Duration::from_secs(config.idempotency_window_secs),
    );
    spawn_rollup_builds(store.clone());
    spawn_dictionary_training(
        store.clone(),
        Schedule {
            first: config.dictionary_after_steps,
        },
    );
    spawn_retention_sweeps(
        store,
        Duration::from_secs(config.retention_sweep_secs.max(1)),
    );
    let grpc_listener = match config.otlp_grpc_bind {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?,
        ),
        None => None,
    };
    let grpc_state = state.clone();
    let app = app(state);
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.bind);
    let database = match &config.database_url {
        Some(url) => url.to_string(),
        None => format!("sqlite {}", config.data_dir.join("agentprof.db").display()),
    };
    match &settings.keys {
        Some(k) => {
            tracing::info!(%addr, %database, keys = ?k, "agentprof listening; API keys required")
        }
        None => tracing::warn!(
            %addr, %database,
            "agentprof listening WITHOUT API keys: anyone who can reach {addr} can read and write runs"
        ),
    }
    eprintln!(
        "agentprof listening on http://{addr} (dashboard at http://{addr}/ui, Swagger UI at http://{addr}/docs), database: {database}"
    );
    let limits = connection_limits(&config);
    // One signal stops both listeners; each finishes the requests it has in flight.
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    });
    let grpc = grpc_listener.map(|listener| {
        let addr = listener.local_addr().ok();
        eprintln!(
            "agentprof receiving OTLP over gRPC on {}",
            addr.map_or_else(|| "?".to_owned(), |a| a.to_string())
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .timeout(Duration::from_secs(config.request_timeout_secs.max(1)))
                // Streams one connection may have open, and requests it may run, at once: the
                // ingest gate bounds the work, these what one client holds while waiting for it.
                .max_concurrent_streams(GRPC_STREAMS_PER_CONNECTION)
                .concurrency_limit_per_connection(GRPC_STREAMS_PER_CONNECTION as usize)
                .tcp_keepalive(Some(Duration::from_secs(60)))
                .add_service(api::otlp_grpc::TraceService::new(grpc_state))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    stop.clone().cancelled_owned(),
                ),
        )
    });
    connections::serve(listener, app, limits, stop.clone().cancelled_owned()).await;
    if let Some(grpc) = grpc {
        match grpc.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the OTLP/gRPC server failed"),
            Err(e) => tracing::error!(error = %e, "the OTLP/gRPC server panicked"),
        }
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// The configured connection bounds, with the cap lowered to fit the open-files limit (raised to
/// its hard maximum first: the default soft limit of 1024 is meant for interactive shells).
fn connection_limits(config: &ServeConfig) -> ConnectionLimits {
    // Descriptors the server needs besides client sockets: database connections, SQLite's
    // files, the listener, logs.
    const RESERVED_FDS: u64 = 64;
    let mut max_connections = config.max_connections.max(1);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let fits = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
            if fits < max_connections {
                tracing::warn!(
                    configured = max_connections,
                    open_files_limit = limit,
                    using = fits.max(1),
                    "--max-connections lowered to fit the open-files limit"
                );
                max_connections = fits.max(1);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-files limit"),
    }
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
        max_connections,
        drain_timeout: Duration::from_secs(config.request_timeout_secs.saturating_add(5)),
    }
}

/// Forgets Idempotency-Keys older than `window`, every few minutes.
fn spawn_key_purge(store: Arc<dyn Store>, window: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            let cutoff = time::OffsetDateTime::now_utc() - window;
            match store.purge_idempotency_keys(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "forgot expired Idempotency-Keys"),
                Err(e) => tracing::warn!(error = %e, "could not purge Idempotency-Keys"),
            }
        }
    });
}

/// Builds the rollups of runs stored before rollups existed (or found stale), one run at a
/// time, then every few minutes looks again (a stale run is rare).
fn spawn_rollup_builds(store: Arc<dyn Store>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            crate::live::build_pending_rollups(store.as_ref()).await;
        }
    });
}

/// Trains the database's next step dictionary when `schedule` says one is due, looking once a
/// minute (the training itself takes a second or two of one core, once per eightfold growth).
fn spawn_dictionary_training(store: Arc<dyn Store>, schedule: Schedule) {
    if schedule.first == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = store.train_step_dictionary(schedule).await {
                tracing::warn!(error = %e, "could not train a step dictionary; trying again later");
            }
        }
    });
}

/// Deletes expired requests of runs with a retention every `every`.
fn spawn_retention_sweeps(store: Arc<dyn Store>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            crate::live::sweep_expired(store.as_ref(), time::OffsetDateTime::now_utc()).await;
        }
    });
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}

/// A minimal `GET /healthz` over plain TCP, so that a container image needs no HTTP client.
/// An unspecified bind address (0.0.0.0, ::) is probed on loopback.
pub fn probe(bind: SocketAddr, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| format!("read: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    if line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer: {}",
            line.lines().next().unwrap_or("")
        ))
    }
}
