//! The OpenAPI 3.1 document (generated from the handlers' annotations) and Swagger UI, whose
//! assets are compiled into the binary (no CDN).

use axum::Router;
use axum::http::header;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "agentprof",
        description = "Profiles agent workflow runs: POST the IntermediateStep events of NVIDIA AgentIQ / NeMo Agent \
Toolkit workflows, fetch the toolkit profiler's outputs per run.\n\n\
Outputs under `/v1/runs/{run_id}/...` reproduce the toolkit profiler number for number, quirks included, in the \
version each run follows (its `toolkit`: `nat-1.9` for nvidia-nat 1.9, `aiq-1.1` for aiqtoolkit 1.1), so they can \
be compared with what the toolkit wrote. (`/v1/runs/{run_id}/metrics` is the toolkit's \
`inference_optimization.json`; the server's own Prometheus metrics are at `/metrics`.) Errors are RFC 9457 problem documents whose \
`errors[].path` is a JSON pointer into the request body.\n\n\
When the server has API keys, send `Authorization: Bearer KEY` (use **Authorize** above): a read key reads, a \
write key also creates, changes and deletes.",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "runs", description = "Create runs and append step batches"),
        (name = "outputs", description = "The toolkit profiler's outputs, computed on demand and cached per run version"),
        (name = "statistics", description = "Sound statistics and run-vs-run significance tests, next to the toolkit-compatible outputs"),
        (name = "otlp", description = "OpenTelemetry traces over OTLP, stored as the toolkit's steps"),
        (name = "operations", description = "Probes and Prometheus metrics"),
    ),
    components(schemas(
        crate::trace::schema::UsageInfoDoc,
        crate::trace::schema::TokenUsageDoc,
        // The trie's node type refers to itself, so its parts are listed here.
        crate::profiler::toolkit::prediction_trie::Prediction,
        crate::profiler::toolkit::prediction_trie::SampleStats,
    )),
    modifiers(&BearerScheme),
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some("An API key from AGENTPROF_API_KEYS (read or write).".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Final touches once every route is in: the crate version as the document version.
pub fn finish(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// The document as served and as checked in (pretty-printed, trailing newline).
pub fn to_json(api: &utoipa::openapi::OpenApi) -> String {
    let mut s = api.to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    s.push('\n');
    s
}

/// `GET /openapi.json` and Swagger UI at `/docs`.
pub fn router<S: Clone + Send + Sync + 'static>(api: &utoipa::openapi::OpenApi) -> Router<S> {
    let json = bytes::Bytes::from(to_json(api));
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .merge(
            SwaggerUi::new("/docs")
                .config(Config::new(["/openapi.json"]).persist_authorization(true)),
        )
}
