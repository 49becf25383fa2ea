//! `GET /v1/runs/{run_id}/timeline`: the data the dashboard's charts draw that no toolkit output
//! holds (see `profiler::timeline`). Computed from the cached frame on each request, as its
//! window varies; the frame itself is loaded once per run version.

use super::body::RunId;
use super::error::{ApiError, ApiResult, ReadProblems, RunProblems};
use super::{AppState, blocking};
use crate::profiler::timeline::{self, MAX_WINDOW, Timeline};
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineParams {
    /// The first request (0-based, in request order) whose calls to list.
    #[param(minimum = 0, example = 0)]
    pub offset: Option<i64>,
    /// How many requests' calls to list, 1 to 200 (default 20).
    #[param(minimum = 1, maximum = 200, example = 20)]
    pub limit: Option<i64>,
}

/// Timeline
///
/// What the dashboard draws: the nested calls of a window of requests (name, kind, start, end,
/// tokens, the first 200 characters of an LLM call's prompt and answer), the peak number of calls
/// in flight over the whole run in up to 600 time buckets, every LLM call's latency per model
/// (paired by UUID, as `/stats` pairs them) and each request's tokens. Times are seconds since the
/// run's first call.
#[utoipa::path(
    get, path = "/v1/runs/{run_id}/timeline", tag = "outputs",
    params(("run_id" = uuid::Uuid, Path, description = "Run id"), TimelineParams),
    responses(
        (status = 200, description = "The timeline", body = Timeline),
        (status = 400, description = "Bad offset or limit", body = super::error::Problem, content_type = "application/problem+json"),
        ReadProblems, RunProblems,
    ),
    security(("bearer" = []))
)]
pub async fn timeline(
    State(st): State<AppState>,
    RunId(id): RunId,
    query: Result<Query<TimelineParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Timeline>> {
    let Query(p) =
        query.map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))?;
    let limit = p.limit.unwrap_or(20);
    if !(1..=MAX_WINDOW as i64).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_WINDOW}"
        )));
    }
    let offset = p.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::BadRequest(
            "offset must not be negative".to_owned(),
        ));
    }
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let run = st.cache.snapshot(id).await?;
    let dialect = run.dialect;
    let frame = st.cache.frame(id, run.record.version).await?;
    let built = blocking(move || {
        Ok(timeline::build(
            &frame.frame,
            dialect,
            offset,
            limit as usize,
        ))
    })
    .await?;
    Ok(Json(built))
}
