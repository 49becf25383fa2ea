//! `POST /v1/compare`: is the candidate run different from the baseline?

use super::AppState;
use super::body::JsonBytes;
use super::error::{ApiError, ApiResult, BodyProblems, Problem, ReadProblems};
use super::schema::{CompareRequest, ComparisonResponse, GateAnswer, RunRef};
use crate::gate::ComparedRuns;
use crate::trace::{object_from_text_at, pointer_segment};
use axum::Json;
use axum::extract::State;

/// Compare two runs
///
/// Compares per metric: `llm_latency`, `workflow_run_time`, `total_tokens`, `prompt_tokens`,
/// `completion_tokens` and `tool_latency` (LLM and tool calls paired by UUID); `cost` (USD per
/// request) when each run's prices cover every model it called (else `unpriced_models` names
/// those left out); and `score:<evaluator>` for each evaluator that scored both runs.
///
/// **Paired** when both runs hold the same requests (every request has an eval id and the ids
/// match; or the eval's items in `metadata.eval.items` name every request and the two evals
/// cover the same dataset items; or else the request numbers match): each metric is reduced to one value per request
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
///
/// `alpha` sets the level (default 0.05) and `metrics` the family Holm's correction runs over
/// (default: every metric). Each metric's `detectable_difference` is the smallest difference of
/// means its test detects with 80% power at that level, given the spread the samples show.
///
/// With `gate`, the answer also says what `agentprof compare` would decide (`gate.worse`,
/// `gate.exit_code`, each metric's verdict) and holds its markdown report: latency, tokens and
/// cost are worse higher, evaluator scores lower unless named in `gate.lower_is_better`, and
/// `gate.max_regression` sets practical thresholds on top of significance. A gate on a metric
/// the comparison could not make (named in `metrics` or `gate.max_regression`) is a 422 that
/// says why, never a pass.
///
/// Each side may be a window of its run (`baseline_from`, `baseline_to`, `candidate_from`,
/// `candidate_to`: Unix seconds or RFC 3339): the requests that started in it, so that a run
/// can be compared with itself an hour earlier.
#[utoipa::path(
    post, path = "/v1/compare", tag = "statistics",
    request_body(content = CompareRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Per-metric comparison", body = ComparisonResponse),
        (status = 404, description = "A run does not exist", body = Problem, content_type = "application/problem+json"),
        BodyProblems, ReadProblems,
        (status = 413, description = "The body is too large, or (`window-too-large`) the two runs or windows would take more memory than analyses may: narrow the windows", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn compare_runs(
    State(st): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Json<ComparisonResponse>> {
    let request: CompareRequest =
        object_from_text_at(&body, "").map_err(|e| ApiError::from_trace(e, ""))?;
    let (a, b) = (request.baseline, request.candidate);
    let (wa, wb) = request.windows()?;
    let options = request.options()?;
    let gate = request.gate.as_ref().map(|g| g.options()).transpose()?;
    let (ra, rb) = tokio::try_join!(
        async { st.cache.snapshot(a).await.map_err(ApiError::from) },
        async { st.cache.snapshot(b).await.map_err(ApiError::from) },
    )?;
    let only = options.only.clone();
    let compared = st.cache.compare((&ra, wa), (&rb, wb), options).await?;
    let gate = match gate {
        Some(options) => {
            let runs = ComparedRuns::of(&compared.comparison)
                .map_err(|e| ApiError::Internal(Box::new(e)))?;
            // As `agentprof compare` does: a gate on a metric the comparison has not is a
            // mistake, not a pass.
            if let Some(missing) = runs.missing(only.as_deref(), &options) {
                let at = match missing.listed_at {
                    Some(i) => format!("/metrics/{i}"),
                    None => format!("/gate/max_regression{}", pointer_segment(&missing.metric)),
                };
                return Err(ApiError::invalid_at(at, missing.why));
            }
            let report = crate::gate::decide(&runs, &options);
            Some(GateAnswer {
                exit_code: report.exit_code(),
                markdown: report.markdown(),
                report,
            })
        }
        None => None,
    };
    Ok(Json(ComparisonResponse {
        gate,
        comparison: compared.comparison.clone(),
        baseline: RunRef {
            run_id: a,
            version: compared.baseline_version,
        },
        candidate: RunRef {
            run_id: b,
            version: compared.candidate_version,
        },
    }))
}
