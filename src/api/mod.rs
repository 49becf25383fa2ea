//! The HTTP API (axum): one router per resource, utoipa annotations on every handler, one
//! error type rendered as problem+json, and the middleware stack.
//!
//! Middleware, outermost first (the order of the `ServiceBuilder` in [`app`]): a request id (set
//! from `x-request-id` or generated), a tracing span per request that records it, the id echoed
//! on the response, request metrics, a panic catcher (a 500 problem, never a dropped
//! connection), API-key checks, a timeout (503 when a response has not started in time), and
//! response compression.

pub mod auth;
pub mod body;
pub mod compare;
pub mod docs;
pub mod error;
pub mod ops;
pub mod otlp;
pub mod otlp_grpc;
pub mod outputs;
pub mod runs;
pub mod schema;
pub mod series;
pub mod timeline;

use crate::compute::RunCache;
use crate::config::{ApiKeys, ServeConfig};
use crate::ingest::Ingest;
use crate::store::Store;
use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use body::BodyLimits;
use error::ApiError;
use error::ApiResult;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The HTTP layer's settings, from [`ServeConfig`] or a test.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub limits: BodyLimits,
    /// Bytes a batch's steps may take once read and prepared (413 beyond: split the batch).
    pub max_batch_memory: usize,
    pub keys: Option<ApiKeys>,
    /// Memory for cached frames and outputs.
    pub cache_bytes: u64,
    /// Bounds on the size of outputs.
    pub output_limits: crate::profiler::core::config::OutputLimits,
    /// A response that has not started by then becomes a 503.
    pub request_timeout: Duration,
    /// Bytes analyses in flight may take in all, and how long one waits for its share.
    pub analysis_memory: u64,
    pub analysis_wait: Duration,
    /// Ingests at once, and how long one waits for a slot before a 503.
    pub max_concurrent_ingests: usize,
    pub ingest_wait: Duration,
    /// The retention of the runs OTLP exports create (seconds; `None` keeps everything).
    pub otlp_retention: Option<i64>,
    /// What new runs are costed with (`--prices`).
    pub prices: crate::profiler::statistics::cost::PriceTable,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            limits: BodyLimits {
                max_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
                max_decompressed: 4 * crate::config::DEFAULT_MAX_BODY_BYTES,
            },
            max_batch_memory: crate::config::DEFAULT_MAX_BATCH_MEMORY,
            keys: None,
            cache_bytes: 256 * 1024 * 1024,
            output_limits: Default::default(),
            request_timeout: Duration::from_secs(120),
            analysis_memory: 1 << 30,
            analysis_wait: Duration::from_secs(30),
            max_concurrent_ingests: crate::config::default_concurrent_ingests(
                crate::config::DEFAULT_INGEST_MEMORY,
                crate::config::DEFAULT_MAX_BODY_BYTES,
                crate::config::DEFAULT_MAX_BATCH_MEMORY,
            ),
            ingest_wait: Duration::from_secs(10),
            otlp_retention: Some(crate::ingest::DEFAULT_OTLP_RETENTION_SECONDS),
            prices: Default::default(),
        }
    }
}

impl ApiSettings {
    pub fn from_config(config: &ServeConfig) -> ApiSettings {
        ApiSettings {
            limits: BodyLimits {
                max_bytes: config.max_body_bytes,
                max_decompressed: config.max_decompressed(),
            },
            max_batch_memory: config.max_batch_memory,
            keys: config.api_keys.clone().filter(|k| !k.is_empty()),
            cache_bytes: config.cache_bytes,
            output_limits: crate::profiler::core::config::OutputLimits {
                spike_uuid_bytes: config.max_spike_uuid_bytes,
            },
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            analysis_memory: config.max_analysis_memory.as_u64(),
            analysis_wait: Duration::from_secs(config.analysis_wait_secs),
            max_concurrent_ingests: config.concurrent_ingests(),
            ingest_wait: Duration::from_secs(config.ingest_wait_secs),
            otlp_retention: config.otlp_retention.0,
            prices: config.prices.clone().map(|p| p.0).unwrap_or_default(),
        }
    }
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cache: Arc<RunCache>,
    pub limits: BodyLimits,
    pub keys: Option<Arc<ApiKeys>>,
    pub prometheus: PrometheusHandle,
    pub request_timeout: Duration,
    pub ingest: Arc<Ingest>,
}

impl AppState {
    /// The one way to assemble the state, for the server and the tests alike.
    pub fn new(store: Arc<dyn Store>, settings: &ApiSettings) -> AppState {
        let cache = Arc::new(RunCache::new(
            store.clone(),
            settings.cache_bytes,
            settings.output_limits,
            crate::compute::AnalysisGate::new(settings.analysis_memory, settings.analysis_wait),
        ));
        AppState {
            ingest: Arc::new(
                Ingest::new(
                    store.clone(),
                    cache.clone(),
                    settings.max_concurrent_ingests,
                    settings.ingest_wait,
                    settings.max_batch_memory,
                )
                .with_otlp_retention(settings.otlp_retention)
                .with_prices(settings.prices.clone()),
            ),
            cache,
            store,
            limits: settings.limits,
            keys: settings.keys.clone().map(Arc::new),
            prometheus: prometheus_handle(),
            request_timeout: settings.request_timeout,
        }
    }
}

impl FromRef<AppState> for BodyLimits {
    fn from_ref(st: &AppState) -> BodyLimits {
        st.limits
    }
}

impl FromRef<AppState> for Arc<Ingest> {
    fn from_ref(st: &AppState) -> Arc<Ingest> {
        st.ingest.clone()
    }
}

/// The process-wide Prometheus recorder (the `metrics` facade allows only one).
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()
                .and_then(|b| b.install_recorder().ok())
                // Someone else installed a global recorder (only in unusual embeddings): keep a
                // private one so /metrics still renders.
                .unwrap_or_else(|| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// The routes and their OpenAPI description, before state and middleware.
fn routes() -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(runs::create_run, runs::list_runs))
        .routes(routes!(runs::get_run, runs::patch_run, runs::delete_run))
        .routes(routes!(runs::append_steps));
    outputs::routes(router)
        .routes(routes!(timeline::timeline))
        .routes(routes!(series::series))
        .routes(routes!(compare::compare_runs))
        .routes(routes!(otlp::export_traces))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::prometheus))
}

/// The OpenAPI document, as served at `/openapi.json` and checked in as `openapi/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = routes().split_for_parts();
    docs::finish(api)
}

/// The complete application: routes, docs and middleware over `state`.
///
/// `pages` are routes served beside the API under the same middleware (the dashboard's, which
/// the server passes in: the API knows nothing of them).
pub fn app(state: AppState, pages: Router<AppState>) -> Router {
    let (router, api) = routes().split_for_parts();
    let api = docs::finish(api);
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(middleware::from_fn(record_request))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(
            state.request_timeout,
            time_limit,
        ))
        .layer(CompressionLayer::new());
    router
        .merge(docs::router(&api))
        .merge(pages)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

/// The span every log line of a request is recorded in; it carries the request id, so the
/// lines of one request can be found together (and matched to the client's `x-request-id`).
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        uri = %req.uri(),
        request_id = %id,
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /docs".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Answers 503 with a problem document when a handler takes longer than `limit` (until the
/// response headers; a streamed body is not cut off).
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Busy(format!(
            "the request did not complete within {} s; retry later",
            limit.as_secs()
        ))
        .into_response(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal("handler panicked").into_response()
}

/// Counts requests and records latencies per route template (not per concrete URL, which would
/// give every run its own time series).
async fn record_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("agentprof_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("agentprof_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp.headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    resp
}

/// A request method as a metric label: the standard methods by name and every other one as
/// `OTHER`. A label value is a time series the recorder keeps for the life of the process, so
/// values a client can invent (any token is a valid HTTP method) would let it grow the server's
/// memory and the Prometheus text without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("OTHER", Method::as_str)
}

/// Spawns the periodic upkeep the Prometheus recorder needs (it drains histogram buffers).
pub fn spawn_metrics_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Runs CPU-heavy work (JSON parsing, validation, gunzip, comparisons) off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
}
