//! `POST /v1/compare`: is the candidate run different from the baseline?

use super::body::JsonBody;
use super::error::{ApiError, ApiResult, BodyProblems, Problem, ReadProblems};
use super::schema::{CompareRequest, ComparisonResponse, RunRef};
use super::{AppState, blocking};
use crate::profiler::statistics::{compare, scores};
use axum::Json;
use axum::extract::State;
use serde_json::Value;
use uuid::Uuid;

fn run_field(body: &Value, field: &str) -> ApiResult<Uuid> {
    match body.get(field) {
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| ApiError::invalid_at(format!("/{field}"), "expected a run id (a UUID)")),
        Some(_) => Err(ApiError::invalid_at(
            format!("/{field}"),
            "expected a run id (a UUID)",
        )),
        None => Err(ApiError::invalid_at(format!("/{field}"), "field required")),
    }
}

/// Compare two runs
///
/// Compares per metric: `llm_latency`, `workflow_run_time`, `total_tokens`, `prompt_tokens`,
/// `completion_tokens` and `tool_latency` (LLM and tool calls paired by UUID).
///
/// **Paired** when both runs hold the same requests (every request has an eval id and the ids
/// match, or else the request numbers match): each metric is reduced to one value per request
/// (the mean over its calls for latencies, the sum for tokens) and the per-request differences
/// are tested with a **paired t-test** (assumes roughly normal differences) and a **Wilcoxon
/// signed-rank test** (no normality assumption; exact for up to 25 non-zero differences without
/// ties, normal approximation with tie correction otherwise). **Unpaired** otherwise: **Welch's
/// t-test** on the observations (per call for latencies, per request otherwise), which allows
/// unequal variances but assumes independent observations; calls of one request are not quite
/// independent, so treat borderline p-values with care.
///
/// `difference_of_means` is candidate minus baseline, with a 95% t interval. p-values are
/// reported raw and **Holm-adjusted** across the metrics; `significant` uses the adjusted value
/// at 0.05. When every pair differs by exactly the same amount the interval collapses to that
/// amount and the p-value is 0 (or 1 for no difference).
#[utoipa::path(
    post, path = "/v1/compare", tag = "statistics",
    request_body(content = CompareRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Per-metric comparison", body = ComparisonResponse),
        (status = 404, description = "A run does not exist", body = Problem, content_type = "application/problem+json"),
        BodyProblems, ReadProblems,
    ),
    security(("bearer" = []))
)]
pub async fn compare_runs(
    State(st): State<AppState>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<ComparisonResponse>> {
    if !body.is_object() {
        return Err(ApiError::invalid_at(
            "",
            "expected an object {baseline, candidate}",
        ));
    }
    if let Some(key) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "baseline" && *k != "candidate"))
    {
        return Err(ApiError::invalid_at(
            crate::trace::pointer_segment(key),
            "unknown field: only baseline and candidate",
        ));
    }
    let (a, b) = (
        run_field(&body, "baseline")?,
        run_field(&body, "candidate")?,
    );
    let (ra, rb) = tokio::try_join!(
        async { st.cache.snapshot(a).await.map_err(ApiError::from) },
        async { st.cache.snapshot(b).await.map_err(ApiError::from) },
    )?;
    let (fa, fb) = tokio::try_join!(
        async {
            let frame = st.cache.frame(a, ra.record.version).await;
            frame.map_err(ApiError::from)
        },
        async {
            let frame = st.cache.frame(b, rb.record.version).await;
            frame.map_err(ApiError::from)
        },
    )?;
    let (va, vb) = (fa.version, fb.version);
    let (ma, mb) = (ra.record.metadata.clone(), rb.record.metadata.clone());
    let comparison = blocking(move || {
        let (sa, sb) = (
            scores::from_metadata(&ma, &fa.frame),
            scores::from_metadata(&mb, &fb.frame),
        );
        Ok(compare::compare_with_scores(&fa.frame, &fb.frame, &sa, &sb))
    })
    .await?;
    Ok(Json(ComparisonResponse {
        comparison,
        baseline: RunRef {
            run_id: a,
            version: va,
        },
        candidate: RunRef {
            run_id: b,
            version: vb,
        },
    }))
}
