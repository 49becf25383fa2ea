//! `GET /v1/runs/{run_id}/timeline`: the data the dashboard's charts draw that no toolkit output
//! holds (see `profiler::timeline`). Its run-wide parts are computed once per run version (and
//! window) and kept; a page computes the calls of its own requests from the cached frame.

use super::AppState;
use super::body::{RunId, WindowQuery};
use super::error::{AnalysisProblems, ApiError, ApiResult, ReadProblems, RunProblems};
use crate::profiler::timeline::{MAX_WINDOW, Timeline};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
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
    /// Only the requests that started at or after this time (Unix seconds or RFC 3339).
    #[param(value_type = Option<super::schema::TimeBound>, example = "2026-12-06T10:00:00Z")]
    pub from: Option<String>,
    /// Only the requests that started before this time (Unix seconds or RFC 3339).
    #[param(value_type = Option<super::schema::TimeBound>, example = "2026-12-06T11:00:00Z")]
    pub to: Option<String>,
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
        (status = 400, description = "Bad offset, limit, from or to", body = super::error::Problem, content_type = "application/problem+json"),
        ReadProblems, RunProblems, AnalysisProblems,
    ),
    security(("bearer" = []))
)]
pub async fn timeline(
    State(st): State<AppState>,
    RunId(id): RunId,
    WindowQuery(window): WindowQuery,
    query: Result<Query<TimelineParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
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
    let page = st
        .cache
        .timeline(&run, window, offset, limit as usize)
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], page).into_response())
}
