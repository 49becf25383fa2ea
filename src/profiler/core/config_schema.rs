//! The schema of a profiler config as a request gives it: every field optional, merged over the
//! default. `ProfilerConfig::from_json` reads it (with pydantic's field names and checks); this
//! type only describes it, and a test holds its fields to `ProfilerConfig`'s.

#![allow(dead_code)] // the `*Patch` types exist for their schemas only

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The toolkit's `ProfilerConfig`. Every field is optional and merged over the default; `null`
/// also means "the default" (and, in a PATCH, removes an earlier setting).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilerConfigPatch {
    /// Fit the token-usage forecast (`GET .../forecast`).
    pub token_usage_forecast: Option<bool>,
    /// `token_uniqueness` in the metrics.
    pub token_uniqueness_forecast: Option<bool>,
    /// `workflow_runtimes` in the metrics.
    pub workflow_runtime_forecast: Option<bool>,
    /// The six NOVA columns of the CSV.
    pub compute_llm_metrics: Option<bool>,
    /// Leave the prompt/output/token text out of the CSV.
    pub csv_exclude_io_text: Option<bool>,
    pub prompt_caching_prefixes: Option<PromptCachingPatch>,
    pub bottleneck_analysis: Option<BottleneckPatch>,
    pub concurrency_spike_analysis: Option<SpikeConfigPatch>,
    pub prefix_span_analysis: Option<PrefixSpanConfigPatch>,
    /// nvidia-nat: also enables `workflow_runtimes`.
    pub base_metrics: Option<bool>,
    /// nvidia-nat 1.9's `prediction_trie.json` (nat-1.9 runs).
    pub prediction_trie: Option<PredictionTriePatch>,
    /// nvidia-nat 1.9's queries of NVIDIA Dynamo's Prometheus: accepted, never run.
    pub dynamo_metrics: Option<DynamoMetricsPatch>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DynamoMetricsPatch {
    pub enable: Option<bool>,
    pub prometheus_url: Option<String>,
    pub collect_kv_cache: Option<bool>,
    pub collect_ttft: Option<bool>,
    pub collect_itl: Option<bool>,
    pub collect_inflight_requests: Option<bool>,
    pub collect_throughput: Option<bool>,
    pub collect_token_throughput: Option<bool>,
    pub query_range: Option<String>,
    pub lookback_seconds: Option<f64>,
    pub workflow_start_timestamp: Option<f64>,
    pub workflow_end_timestamp: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictionTriePatch {
    pub enable: Option<bool>,
    /// The file `agentprof analyze` writes it to: a plain file name, not that of another output.
    #[schema(
        min_length = 1,
        pattern = r"^(?!(?:\.|\.\.|all_requests_profiler_traces\.json|standardized_data_all\.csv|stats\.json|workflow_output_atif\.json|inference_optimization\.json|workflow_profiling_report\.txt|workflow_profiling_metrics\.json|gantt_chart\.svg|profiler_results\.json|forecast\.json)$)[^/\\\x00]+$"
    )]
    pub output_filename: Option<String>,
    pub auto_sensitivity: Option<bool>,
    /// 1 to 2^53.
    #[schema(minimum = 1, maximum = 9007199254740992i64)]
    pub sensitivity_scale: Option<i64>,
    pub w_critical: Option<f64>,
    pub w_fanout: Option<f64>,
    pub w_position: Option<f64>,
    pub w_parallel: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptCachingPatch {
    pub enable: Option<bool>,
    /// Share of calls a prefix needs (LLM_END rows count in the denominator, as in the toolkit).
    pub min_frequency: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BottleneckPatch {
    pub enable_simple_stack: Option<bool>,
    pub enable_nested_stack: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpikeConfigPatch {
    pub enable: Option<bool>,
    #[schema(minimum = -9007199254740992i64, maximum = 9007199254740992i64)]
    pub spike_threshold: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefixSpanConfigPatch {
    pub enable: Option<bool>,
    /// Below 1: a fraction of the requests; 1 or more: an absolute count.
    #[schema(exclusive_minimum = 0)]
    pub min_support: Option<f64>,
    pub min_coverage: Option<f64>,
    #[schema(minimum = -9007199254740992i64, maximum = 9007199254740992i64)]
    pub max_text_len: Option<i64>,
    #[schema(minimum = 0, maximum = 9007199254740992i64)]
    pub top_k: Option<i64>,
    /// Accepted; it never had an effect in the toolkit.
    pub chain_with_common_prefixes: Option<bool>,
}
