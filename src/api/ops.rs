//! Liveness, readiness and Prometheus metrics.

use super::AppState;
use super::error::{ApiError, ApiResult, Problem};
use super::schema::{Health, Readiness};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

/// Liveness
///
/// The process is up and serving. Never touches the database.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// Readiness
///
/// Ready when the database answers; 503 with `Retry-After` otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(st): State<AppState>) -> ApiResult<Json<Readiness>> {
    st.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::Unavailable
    })?;
    Ok(Json(Readiness {
        status: "ready".to_owned(),
        database: st.store.backend().to_owned(),
        standbys: st.store.standbys(),
    }))
}

/// Prometheus metrics
///
/// Request counts and latencies per route, steps received/stored/skipped, output computations
/// and cache hits, in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn prometheus(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.prometheus.render(),
    )
}
