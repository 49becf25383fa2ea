//! The toolkit profiler's outputs for a run, computed on demand and cached per (run version,
//! profiler config). Each carries a strong ETag; `If-None-Match` answers 304 without computing.

use super::AppState;
use super::body::RunId;
use super::error::{ApiResult, ReadProblems, RunProblems};
use crate::compute::{Artifact, etag};
use crate::profiler::statistics::stats::RunStats;
use crate::profiler::toolkit::atif::AtifSample;
use crate::profiler::toolkit::forecast::Forecast;
use crate::profiler::toolkit::prediction_trie::PredictionTrie;
use crate::profiler::{InferenceOptimization, ProfilerResults, WorkflowProfiling};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

/// Whether an `If-None-Match` header matches `tag` (weak comparison, `*` matches anything).
pub fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

async fn output(st: AppState, id: Uuid, headers: HeaderMap, kind: Artifact) -> ApiResult<Response> {
    let run = st.cache.snapshot(id).await?;
    // Before If-None-Match: `*` must not turn a missing output into a 304.
    run.offers(kind)?;
    let current = etag(id, run.record.version, &run.fingerprint(kind), kind);
    let cache_headers = |tag: &str| {
        [
            (
                header::ETAG,
                HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"\"")),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            ),
        ]
    };
    if if_none_match(&headers, &current) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers(&current)).into_response());
    }
    let rendered = st.cache.render(&run, kind).await?;
    Ok((
        StatusCode::OK,
        cache_headers(&rendered.etag),
        [(header::CONTENT_TYPE, kind.content_type())],
        rendered.bytes.clone(),
    )
        .into_response())
}

/// An output endpoint: `GET /v1/runs/{run_id}/<name>` serving one [`Artifact`], with its
/// OpenAPI description. The doc comment becomes the operation's summary and description.
macro_rules! output_endpoint {
    ($(#[doc = $doc:tt])* $name:ident, $path:tt, $kind:expr, body = $body:ty, content_type = $ct:tt, $what:tt) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            get, path = $path, tag = "outputs",
            params(("run_id" = uuid::Uuid, Path, description = "Run id"),
                   ("If-None-Match" = Option<String>, Header, description = "ETag of a copy you hold")),
            responses(
                (status = 200, description = $what, body = $body, content_type = $ct,
                    headers(("ETag" = String, description = "Changes with the run's data and config"))),
                (status = 304, description = "Not modified"),
                ReadProblems, RunProblems,
            ),
            security(("bearer" = []))
        )]
        pub async fn $name(State(st): State<AppState>, RunId(id): RunId, headers: HeaderMap) -> ApiResult<Response> {
            output(st, id, headers, $kind).await
        }
    };
}

output_endpoint!(
    /// Inference metrics
    ///
    /// `inference_optimization.json`: confidence intervals of workflow run time, LLM latency and
    /// throughput, common prompt prefixes, token uniqueness and runtime percentiles, with the
    /// toolkit's numbers (and quirks: time-ordered latency pairing, population-stdev z-intervals).
    metrics, "/v1/runs/{run_id}/metrics", Artifact::Metrics,
    body = InferenceOptimization, content_type = "application/json", "inference_optimization.json"
);

output_endpoint!(
    /// Workflow profiling metrics
    ///
    /// `workflow_profiling_metrics.json`: simple and nested stack bottleneck analyses, concurrency
    /// spikes and PrefixSpan sub-workflow patterns.
    profiling, "/v1/runs/{run_id}/profiling", Artifact::Profiling,
    body = WorkflowProfiling, content_type = "application/json", "workflow_profiling_metrics.json"
);

output_endpoint!(
    /// Profiling report
    ///
    /// `workflow_profiling_report.txt`, the toolkit's text report, byte for byte.
    report, "/v1/runs/{run_id}/report", Artifact::Report,
    body = String, content_type = "text/plain", "workflow_profiling_report.txt"
);

output_endpoint!(
    /// Standardized CSV
    ///
    /// `standardized_data_all.csv`: one row per step, with the six NOVA columns when
    /// `compute_llm_metrics` is on and without the text columns when `csv_exclude_io_text` is.
    csv, "/v1/runs/{run_id}/standardized.csv", Artifact::Csv,
    body = String, content_type = "text/csv", "standardized_data_all.csv"
);

output_endpoint!(
    /// Gantt chart
    ///
    /// One bar per LLM or tool call, sorted by start (blue: LLM, green: tool), as a standalone SVG.
    gantt, "/v1/runs/{run_id}/gantt.svg", Artifact::Gantt,
    body = String, content_type = "image/svg+xml", "The chart"
);

output_endpoint!(
    /// Token-usage forecast
    ///
    /// The toolkit fits a random forest to predict the next calls' token usage and pickles it; we
    /// fit the same shape of model on the same windows, seeded, and serve its description,
    /// in-sample error and each request's predicted next calls. `status: skipped` says why the
    /// toolkit's fit would fail on this run (a request without LLM_END, an LLM_END without its
    /// LLM_START).
    forecast, "/v1/runs/{run_id}/forecast", Artifact::Forecast,
    body = Forecast, content_type = "application/json", "Forecast model summary and predictions"
);

output_endpoint!(
    /// Sound statistics
    ///
    /// What a careful statistician would report, next to the toolkit-compatible numbers:
    ///
    /// - `llm_latency`: LLM calls paired START -> END **by UUID** within their request (the toolkit
    ///   pairs by time order, which mismeasures overlapping calls), overall and per model, with the
    ///   unmatched STARTs and ENDs counted;
    /// - `workflow_run_time`: seconds from a request's first to its last step;
    /// - `time_to_first_token`: from an LLM_START to its first LLM_NEW_TOKEN (null when nothing streamed);
    /// - `tokens`: per model, prompt/completion/total tokens per call;
    /// - `throughput`: requests per second with an **exact Poisson (Garwood) 95% interval**, which
    ///   assumes arrivals independent of each other (not true of a fixed-concurrency eval, where it
    ///   is conservative);
    /// - `tool_latency`: per tool, by UUID;
    /// - `prefix_cache`: per model, the longest **whitespace-token** prefix each prompt shares with an
    ///   earlier prompt of the model, and the share of prompt tokens a prefix cache could serve.
    ///
    /// Every `Summary` has `n`, mean, the **sample** standard deviation (n-1), min, max,
    /// p50/p75/p90/p95/p99 (linear interpolation) and two 95% intervals for the mean: Student-t
    /// (assumes the mean is roughly normal; check the skew for small n) and a seeded percentile
    /// bootstrap of 2,000 resamples (distribution-free; null below 10 values, where it is far
    /// too narrow, and above 2,000, where the t interval is as good). Statistics that need more
    /// data than there is are null, never a zero-width interval.
    stats, "/v1/runs/{run_id}/stats", Artifact::Stats,
    body = RunStats, content_type = "application/json", "Statistics of the run"
);

output_endpoint!(
    /// Prediction trie
    ///
    /// `prediction_trie.json` (nvidia-nat 1.9 only; a 404 `not-in-dialect` problem for aiq-1.1
    /// runs): per calling function and call index, the remaining LLM calls, the time to the next
    /// call, the output tokens and a latency-sensitivity level. `generated_at` is the time of the
    /// run's last step (the toolkit writes the wall clock).
    prediction_trie, "/v1/runs/{run_id}/prediction_trie", Artifact::PredictionTrie,
    body = PredictionTrie, content_type = "application/json", "prediction_trie.json"
);

output_endpoint!(
    /// Profiler results
    ///
    /// `profiler_results.json` (nvidia-nat 1.9 only): what the toolkit's profiler run returns, the
    /// workflow runtime percentiles and the LLM latency interval, or both null when its
    /// token-usage forecast fails (a request without LLM_END, an LLM_END without its START).
    profiler_results, "/v1/runs/{run_id}/profiler_results", Artifact::ProfilerResults,
    body = ProfilerResults, content_type = "application/json", "profiler_results.json"
);

output_endpoint!(
    /// ATIF trajectories
    ///
    /// `workflow_output_atif.json`: each request as an ATIF v1.7 trajectory, as nvidia-nat 1.9's
    /// `nat eval` converts its steps (the user's input, one agent step per LLM call with the tool
    /// calls and observations that followed, the final answer, token totals). Eval items keep their
    /// dataset id, answer and generated answer; other requests are identified by their number.
    atif, "/v1/runs/{run_id}/atif", Artifact::Atif,
    body = Vec<AtifSample>, content_type = "application/json", "workflow_output_atif.json"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h, "\"a\""));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"a\""),
        );
        assert!(if_none_match(&h, "\"a\""));
        assert!(!if_none_match(&h, "\"b\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"b\""));
    }
}
