//! `ProfilerConfig` with the toolkit's field names (docs/toolkit-semantics.md#profiler-config).
//!
//! agentprof's default differs from the toolkit's on purpose: every analysis is on, with the
//! toolkit's default thresholds, because a service that computes on demand has no reason to make
//! users opt in. A user's config is merged over this default field by field.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ProfilerConfig {
    pub token_usage_forecast: bool,
    pub token_uniqueness_forecast: bool,
    pub workflow_runtime_forecast: bool,
    pub compute_llm_metrics: bool,
    pub csv_exclude_io_text: bool,
    pub prompt_caching_prefixes: PromptCachingConfig,
    pub bottleneck_analysis: BottleneckConfig,
    pub concurrency_spike_analysis: ConcurrencySpikeConfig,
    pub prefix_span_analysis: PrefixSpanConfig,
    /// nvidia-nat's switch that also enables `workflow_runtimes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_metrics: Option<bool>,
    /// nvidia-nat 1.9's `prediction_trie.json` (the nat-1.9 dialect only).
    pub prediction_trie: PredictionTrieConfig,
    /// nvidia-nat 1.9's Prometheus queries of NVIDIA Dynamo: accepted, never run (agentprof has no
    /// Prometheus to ask), so `dynamo_metrics` stays null as the toolkit writes it when they fail.
    pub dynamo_metrics: DynamoMetricsConfig,
    /// Bounds on the size of outputs: the server's and the CLI's settings, never a run's.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub limits: OutputLimits,
}

/// Bounds on what an output may hold, whatever the steps. They are set for the whole process
/// (`--max-spike-uuid-bytes`), not per run, and sized so that realistic runs never reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Bytes of JSON the spike intervals' UUID lists may take in all (docs/deviations.md).
    pub spike_uuid_bytes: usize,
}

/// 40 MiB: twice what a 1,000-request eval at 37 concurrent calls lists, and room enough that a
/// client's 20,000 nested calls still give a `/profiling` well under 64 MB.
pub const DEFAULT_SPIKE_UUID_BYTES: usize = 40 * 1024 * 1024;

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            spike_uuid_bytes: DEFAULT_SPIKE_UUID_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct PredictionTrieConfig {
    pub enable: bool,
    /// The file `agentprof analyze` writes the trie to.
    pub output_filename: String,
    /// Score each call's latency sensitivity (1 to `sensitivity_scale`); off leaves it null.
    pub auto_sensitivity: bool,
    #[serde(deserialize_with = "lax_i64")]
    pub sensitivity_scale: i64,
    pub w_critical: f64,
    pub w_fanout: f64,
    pub w_position: f64,
    pub w_parallel: f64,
}

/// The files `agentprof analyze` writes next to the prediction trie, which its configurable name
/// must not overwrite.
pub const OTHER_OUTPUT_FILES: [&str; 10] = [
    "all_requests_profiler_traces.json",
    "standardized_data_all.csv",
    "stats.json",
    "workflow_output_atif.json",
    "inference_optimization.json",
    "workflow_profiling_report.txt",
    "workflow_profiling_metrics.json",
    "gantt_chart.svg",
    "profiler_results.json",
    "forecast.json",
];

impl Default for PredictionTrieConfig {
    fn default() -> Self {
        PredictionTrieConfig {
            enable: true,
            output_filename: "prediction_trie.json".to_owned(),
            auto_sensitivity: true,
            sensitivity_scale: 5,
            w_critical: 0.5,
            w_fanout: 0.3,
            w_position: 0.2,
            w_parallel: 0.0,
        }
    }
}

/// nvidia-nat 1.9's `DynamoMetricsConfig`, kept as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct DynamoMetricsConfig {
    pub enable: bool,
    pub prometheus_url: String,
    pub collect_kv_cache: bool,
    pub collect_ttft: bool,
    pub collect_itl: bool,
    pub collect_inflight_requests: bool,
    pub collect_throughput: bool,
    pub collect_token_throughput: bool,
    pub query_range: String,
    pub lookback_seconds: f64,
    pub workflow_start_timestamp: Option<f64>,
    pub workflow_end_timestamp: Option<f64>,
}

impl Default for DynamoMetricsConfig {
    fn default() -> Self {
        DynamoMetricsConfig {
            enable: false,
            prometheus_url: "http://localhost:9090".to_owned(),
            collect_kv_cache: true,
            collect_ttft: true,
            collect_itl: true,
            collect_inflight_requests: true,
            collect_throughput: true,
            collect_token_throughput: true,
            query_range: "30s".to_owned(),
            lookback_seconds: 0.0,
            workflow_start_timestamp: None,
            workflow_end_timestamp: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct PromptCachingConfig {
    pub enable: bool,
    pub min_frequency: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct BottleneckConfig {
    pub enable_simple_stack: bool,
    pub enable_nested_stack: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ConcurrencySpikeConfig {
    pub enable: bool,
    #[serde(deserialize_with = "lax_i64")]
    pub spike_threshold: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct PrefixSpanConfig {
    pub enable: bool,
    /// Below 1: a fraction of the sequences; 1 or more: an absolute count. The toolkit decides
    /// by the value's Python type instead, so `2.0` from YAML silently finds nothing (B10).
    pub min_support: ConfigNumber,
    pub min_coverage: ConfigNumber,
    #[serde(deserialize_with = "lax_i64")]
    pub max_text_len: i64,
    #[serde(deserialize_with = "lax_i64")]
    pub top_k: i64,
    /// Accepted for compatibility; it never had an effect in the toolkit (B8).
    pub chain_with_common_prefixes: bool,
}

impl Default for ProfilerConfig {
    fn default() -> Self {
        ProfilerConfig {
            token_usage_forecast: true,
            token_uniqueness_forecast: true,
            workflow_runtime_forecast: true,
            compute_llm_metrics: true,
            csv_exclude_io_text: false,
            prompt_caching_prefixes: PromptCachingConfig::default(),
            bottleneck_analysis: BottleneckConfig::default(),
            concurrency_spike_analysis: ConcurrencySpikeConfig::default(),
            prefix_span_analysis: PrefixSpanConfig::default(),
            base_metrics: None,
            prediction_trie: PredictionTrieConfig::default(),
            dynamo_metrics: DynamoMetricsConfig::default(),
            limits: OutputLimits::default(),
        }
    }
}

impl Default for PromptCachingConfig {
    fn default() -> Self {
        PromptCachingConfig {
            enable: true,
            min_frequency: 0.5,
        }
    }
}

impl Default for BottleneckConfig {
    fn default() -> Self {
        BottleneckConfig {
            enable_simple_stack: true,
            enable_nested_stack: true,
        }
    }
}

impl Default for ConcurrencySpikeConfig {
    fn default() -> Self {
        ConcurrencySpikeConfig {
            enable: true,
            spike_threshold: 1,
        }
    }
}

impl Default for PrefixSpanConfig {
    fn default() -> Self {
        PrefixSpanConfig {
            enable: true,
            min_support: ConfigNumber::unset(2),
            min_coverage: ConfigNumber::unset(0),
            max_text_len: 1000,
            top_k: 10,
            chain_with_common_prefixes: false,
        }
    }
}

/// Removes null-valued keys from objects, recursively.
fn strip_nulls(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(map) = v {
        map.retain(|_, x| !x.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

/// Integer settings also accept integral floats (`3.0`), as pydantic does.
fn lax_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let x = serde_json::Number::deserialize(d)?;
    if let Some(i) = x.as_i64() {
        return Ok(i);
    }
    match x.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "expected an integer, got {x}"
        ))),
    }
}

/// A float setting that remembers whether the user set it. The toolkit declares these
/// `float = 2` / `float = 0`: left unset they stay Python ints and print as `2` / `0` in the
/// PrefixSpan report, while any value that goes through validation becomes a float (`2.0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigNumber {
    pub value: f64,
    pub from_user: bool,
}

impl ConfigNumber {
    pub const fn unset(default: i32) -> Self {
        ConfigNumber {
            value: default as f64,
            from_user: false,
        }
    }

    /// How the toolkit's report prints the setting (`repr` of an int or a float).
    pub fn python_repr(&self) -> String {
        if self.from_user {
            crate::py::repr::float_repr(self.value)
        } else {
            format!("{}", self.value as i64)
        }
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ConfigNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ConfigNumber {}

impl Serialize for ConfigNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.from_user {
            s.serialize_f64(self.value)
        } else {
            s.serialize_i64(self.value as i64)
        }
    }
}

impl<'de> Deserialize<'de> for ConfigNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        Ok(ConfigNumber {
            value,
            from_user: true,
        })
    }
}

/// A config value that failed to parse, with the JSON pointer of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ProfilerConfig {
    /// Parses a user's config (toolkit field names) merged over agentprof's default. A `null`
    /// field means "the default", like an absent one.
    pub fn from_json(mut value: serde_json::Value) -> Result<ProfilerConfig, ConfigError> {
        strip_nulls(&mut value);
        let cfg: ProfilerConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(format!("/{key}")),
                    serde_path_to_error::Segment::Seq { index } => Some(format!("/{index}")),
                    _ => None,
                })
                .collect::<String>();
            ConfigError {
                path,
                message: e.inner().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |path: &str, message: &str| {
            Err(ConfigError {
                path: path.to_owned(),
                message: message.to_owned(),
            })
        };
        let f = self.prompt_caching_prefixes.min_frequency;
        if !f.is_finite() {
            return bad(
                "/prompt_caching_prefixes/min_frequency",
                "must be a finite number",
            );
        }
        let p = &self.prefix_span_analysis;
        if !(p.min_support.value.is_finite() && p.min_support.value > 0.0) {
            return bad(
                "/prefix_span_analysis/min_support",
                "must be a positive number",
            );
        }
        if !p.min_coverage.value.is_finite() {
            return bad(
                "/prefix_span_analysis/min_coverage",
                "must be a finite number",
            );
        }
        // Beyond 2^53 an integer setting cannot round-trip through JSON numbers exactly.
        const LIMIT: i64 = 1 << 53;
        if !(0..=LIMIT).contains(&p.top_k) {
            return bad("/prefix_span_analysis/top_k", "must be between 0 and 2^53");
        }
        if !(-LIMIT..=LIMIT).contains(&p.max_text_len) {
            return bad(
                "/prefix_span_analysis/max_text_len",
                "must be between -2^53 and 2^53",
            );
        }
        let trie = &self.prediction_trie;
        let name = trie.output_filename.as_str();
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return bad(
                "/prediction_trie/output_filename",
                "must be a plain file name (no directories)",
            );
        }
        if OTHER_OUTPUT_FILES.contains(&name) {
            return bad(
                "/prediction_trie/output_filename",
                &format!("must not be {name:?}: another output is written under that name"),
            );
        }
        if !(1..=LIMIT).contains(&trie.sensitivity_scale) {
            return bad(
                "/prediction_trie/sensitivity_scale",
                "must be between 1 and 2^53",
            );
        }
        for (name, w) in [
            ("w_critical", trie.w_critical),
            ("w_fanout", trie.w_fanout),
            ("w_position", trie.w_position),
            ("w_parallel", trie.w_parallel),
        ] {
            if !w.is_finite() {
                return bad(
                    &format!("/prediction_trie/{name}"),
                    "must be a finite number",
                );
            }
        }
        let t = self.concurrency_spike_analysis.spike_threshold;
        if !(-LIMIT..=LIMIT).contains(&t) {
            return bad(
                "/concurrency_spike_analysis/spike_threshold",
                "must be between -2^53 and 2^53",
            );
        }
        Ok(())
    }

    /// Whether `workflow_runtimes` is computed (nat's `base_metrics` also turns it on).
    pub fn workflow_runtimes_enabled(&self) -> bool {
        self.workflow_runtime_forecast || self.base_metrics == Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_over_defaults() {
        let c = ProfilerConfig::from_json(json!({"prompt_caching_prefixes": {"min_frequency": 0.3}, "token_usage_forecast": false})).unwrap();
        assert!(c.prompt_caching_prefixes.enable);
        assert_eq!(c.prompt_caching_prefixes.min_frequency, 0.3);
        assert!(!c.token_usage_forecast);
        assert!(c.compute_llm_metrics);
    }

    #[test]
    fn nulls_mean_default_and_integral_floats_are_integers() {
        let c = ProfilerConfig::from_json(json!({"prompt_caching_prefixes": {"enable": null}, "prefix_span_analysis": {"top_k": 3.0}, "base_metrics": null})).unwrap();
        assert!(c.prompt_caching_prefixes.enable);
        assert_eq!(c.prefix_span_analysis.top_k, 3);
        assert!(
            ProfilerConfig::from_json(json!({"prefix_span_analysis": {"top_k": 3.5}})).is_err()
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = ProfilerConfig::from_json(
            json!({"concurrency_spike_analysis": {"spike_threshold": "x"}}),
        )
        .unwrap_err();
        assert_eq!(e.path, "/concurrency_spike_analysis/spike_threshold");
        let e = ProfilerConfig::from_json(json!({"prompt_caching": {}})).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        let e = ProfilerConfig::from_json(json!({"prefix_span_analysis": {"min_support": 0}}))
            .unwrap_err();
        assert_eq!(e.path, "/prefix_span_analysis/min_support");
    }

    #[test]
    fn the_trie_file_name_is_a_plain_name_of_its_own() {
        for bad in ["../x.json", "a/b.json", "", "inference_optimization.json"] {
            let e = ProfilerConfig::from_json(json!({"prediction_trie": {"output_filename": bad}}))
                .unwrap_err();
            assert_eq!(e.path, "/prediction_trie/output_filename", "{bad:?}");
        }
        let ok =
            ProfilerConfig::from_json(json!({"prediction_trie": {"output_filename": "trie.json"}}))
                .unwrap();
        assert_eq!(ok.prediction_trie.output_filename, "trie.json");
    }
}
