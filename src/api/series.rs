//! `GET /v1/runs/{run_id}/series`: a run's trends per time bucket, read from the rollups that
//! ingest keeps (see `crate::rollup`) without loading a step, so it answers on a run of any
//! size in the time it takes to read one row per minute, kind and name.

use super::AppState;
use super::body::{RunId, WindowQuery};
use super::error::{ApiError, ApiResult, ReadProblems, RunProblems};
use crate::rollup::{Bucket, MINUTE};
use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The most buckets one series holds (a week of minutes): past it, the latest of them.
pub const MAX_BUCKETS: i64 = 10_080;

/// The bucket widths chosen when none is asked for: the first that fits the range in
/// [`DEFAULT_BUCKETS`] buckets.
const STEPS: [i64; 9] = [
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
];

/// The most buckets a series has when the client leaves the width to the server: about one per
/// two pixels of a wide chart.
const DEFAULT_BUCKETS: i64 = 720;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// From this time (Unix seconds or RFC 3339), rounded down to a whole bucket; default (and
    /// at the earliest) the run's first step.
    #[param(value_type = Option<super::schema::TimeBound>, example = "2026-12-06T10:00:00Z")]
    pub from: Option<String>,
    /// Up to this time, rounded up to a whole bucket; default (and at the latest) just after
    /// the run's last step.
    #[param(value_type = Option<super::schema::TimeBound>, example = "2026-12-06T11:00:00Z")]
    pub to: Option<String>,
    /// Bucket width in seconds, a multiple of 60; default the narrowest of 1, 5, 15 and 30
    /// minutes, 1, 3, 6 and 12 hours and 1 day that gives at most 720 buckets.
    #[param(minimum = 60, multiple_of = 60, example = 60)]
    pub step: Option<i64>,
}

/// The parameter the window leaves: read on its own, so that an unknown or bad `from` is
/// reported by the window's reader and only `step` here.
#[derive(Debug, Deserialize)]
pub struct StepParam {
    pub step: Option<i64>,
}

/// A run's trends: one bucket per `step` seconds from `from` to `to`, empty ones included.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    /// Bucket width in seconds.
    pub step: i64,
    /// Start of the first bucket (Unix seconds); null when the run has no steps.
    pub from: Option<i64>,
    /// End of the last bucket (Unix seconds).
    pub to: Option<i64>,
    /// Whether the range held more than 10,080 buckets of `step`: then the series is its latest
    /// 10,080 (and `from` says where they start).
    pub truncated: bool,
    pub buckets: Vec<Bucket>,
}

/// Series
///
/// Requests (by the minute of their first step), LLM, tool and workflow calls (by the minute
/// their END step happened), tokens per model, calls per tool and latency percentiles (p50, p90,
/// p99 within 1% of exact: HdrHistograms), per bucket of `step` seconds. Read from per-minute
/// rollups kept at ingest, never from the steps: over the whole run, the buckets add up to the
/// run's `request_count` (requests with steps) and `summary.llm_calls`.
#[utoipa::path(
    get, path = "/v1/runs/{run_id}/series", tag = "outputs",
    params(("run_id" = uuid::Uuid, Path, description = "Run id"), SeriesParams),
    responses(
        (status = 200, description = "The series", body = Series),
        (status = 400, description = "Bad from, to or step", body = super::error::Problem, content_type = "application/problem+json"),
        ReadProblems, RunProblems,
    ),
    security(("bearer" = []))
)]
pub async fn series(
    State(st): State<AppState>,
    RunId(id): RunId,
    WindowQuery(window): WindowQuery,
    query: Result<Query<StepParam>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Series>> {
    let Query(p) = query.map_err(|e| ApiError::invalid_query("step", e.body_text()))?;
    if let Some(step) = p.step
        && (step < MINUTE || step % MINUTE != 0)
    {
        return Err(ApiError::invalid_query(
            "step",
            format!("a whole number of minutes in seconds (60, 120, ...), not {step}"),
        ));
    }
    let run = st.store.get_run(id).await?;
    let data = run
        .summary
        .first_event_at
        .zip(run.summary.last_event_at.map(|t| t + 1.0));
    // The range asked for, within the run's own steps (outside them every bucket is empty).
    let (Some(first), Some(last)) = (
        window
            .from
            .or(data.map(|d| d.0))
            .map(|f| data.map_or(f, |d| f.max(d.0))),
        window
            .to
            .or(data.map(|d| d.1))
            .map(|t| data.map_or(t, |d| t.min(d.1))),
    ) else {
        return Ok(Json(Series {
            step: p.step.unwrap_or(MINUTE),
            from: None,
            to: None,
            truncated: false,
            buckets: Vec::new(),
        }));
    };
    let span = (last - first).max(0.0);
    let step = match p.step {
        Some(s) => s,
        None => STEPS
            .into_iter()
            .find(|s| span / *s as f64 <= DEFAULT_BUCKETS as f64)
            .unwrap_or_else(|| {
                let days = (span / (DEFAULT_BUCKETS * 86_400) as f64).ceil().max(1.0);
                days as i64 * 86_400
            }),
    };
    let mut from = (first / step as f64).floor() * step as f64;
    let to = ((last / step as f64).ceil() * step as f64).max(from + step as f64);
    // Past the most buckets a series holds, the latest of them.
    let truncated = (to - from) / step as f64 > MAX_BUCKETS as f64;
    if truncated {
        from = to - MAX_BUCKETS as f64 * step as f64;
    }
    let (from, to) = (from as i64, to as i64);
    let found = st
        .store
        .series(id, from / MINUTE, to / MINUTE, step / MINUTE)
        .await?;
    let Some(buckets) = found else {
        return Err(ApiError::Busy(
            "this run's rollups are being built from its steps; retry shortly".to_owned(),
        ));
    };
    Ok(Json(Series {
        step,
        from: Some(from),
        to: Some(to),
        truncated,
        buckets,
    }))
}
