//! Pure analysis: the standardized rows of a run in, the toolkit profiler's outputs out.
//!
//! Nothing here does I/O beyond writing into a caller's `Write`, and nothing knows about HTTP or
//! SQL; the CLI and the service feed the same [`Frame`] to the same functions. Each analysis lives
//! in its own file and reproduces what docs/toolkit-semantics.md describes, quirks included,
//! except where docs/deviations.md lists a deliberate deviation.
//!
//! - [`core`]: the standardized frame, the call tree and the config every analysis reads;
//! - [`toolkit`]: the toolkit's outputs, one file per analysis;
//! - the Python arithmetic and text they are written in live in [`crate::py`];
//! - [`statistics`]: our own sound statistics and run comparison.

pub mod core;
pub mod statistics;
pub mod timeline;
pub mod toolkit;
pub mod warnings;

#[cfg(test)]
pub(crate) mod testutil;

use self::core::calltree;
pub use self::core::config::ProfilerConfig;
pub use self::core::dialect::Dialect;
pub use self::core::frame::{Frame, FrameBuilder, RequestSlice, Row, StepColumns, time_span};
use toolkit::{
    confidence, nested_stack, prefix_span, prefixes, runtimes, simple_stack, spikes, uniqueness,
};

use serde::Serialize;

/// `inference_optimization.json` (docs/toolkit-semantics.md#inference_optimizationjson); disabled analyses are `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InferenceOptimization {
    pub confidence_intervals: confidence::ConfidenceIntervals,
    /// Per model name (`""` holds every non-LLM row); null when disabled.
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<BTreeMap<String, prefixes::PrefixGroup>>))]
    pub common_prefixes: Option<prefixes::CommonPrefixes>,
    /// New words per prompt, per model; null when disabled.
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<BTreeMap<String, uniqueness::Percentiles>>))]
    pub token_uniqueness: Option<uniqueness::TokenUniqueness>,
    /// Seconds per request; null when disabled.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub workflow_runtimes: Option<uniqueness::Percentiles>,
    /// nat-1.9 only, and always null: the toolkit fills it from a Prometheus server of NVIDIA
    /// Dynamo's metrics, which agentprof does not query (null is what the toolkit writes when
    /// collection is off or fails).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub dynamo_metrics: Option<serde_json::Value>,
}

pub fn inference_optimization(
    frame: &Frame,
    config: &ProfilerConfig,
    dialect: Dialect,
) -> InferenceOptimization {
    InferenceOptimization {
        confidence_intervals: confidence::compute(frame, dialect),
        common_prefixes: config
            .prompt_caching_prefixes
            .enable
            .then(|| prefixes::compute(frame, config.prompt_caching_prefixes.min_frequency)),
        token_uniqueness: config
            .token_uniqueness_forecast
            .then(|| uniqueness::compute(frame)),
        workflow_runtimes: config
            .workflow_runtimes_enabled()
            .then(|| runtimes::compute(frame)),
        dynamo_metrics: (dialect == Dialect::Nat19).then_some(serde_json::Value::Null),
    }
}

/// nvidia-nat 1.9's `ProfilerResults`, what its runner returns (`profiler_results.json`): the
/// runtime percentiles and the LLM latency interval again, or both null when its token-usage
/// forecast raises, which ends the run early.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfilerResults {
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub workflow_runtime_metrics: Option<uniqueness::Percentiles>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub llm_latency_ci: Option<confidence::InferenceMetrics>,
}

/// `profiler_results.json` of the nat-1.9 dialect, from the run's `inference_optimization`.
pub fn profiler_results(
    frame: &Frame,
    config: &ProfilerConfig,
    inference: &InferenceOptimization,
) -> ProfilerResults {
    if config.token_usage_forecast && toolkit::forecast::toolkit_fit_fails(frame) {
        return ProfilerResults {
            workflow_runtime_metrics: None,
            llm_latency_ci: None,
        };
    }
    ProfilerResults {
        workflow_runtime_metrics: inference.workflow_runtimes,
        llm_latency_ci: Some(
            inference
                .confidence_intervals
                .llm_latency_confidence_intervals,
        ),
    }
}

/// `workflow_profiling_metrics.json` (docs/toolkit-semantics.md#workflow_profiling_metricsjson) and the text report (#workflow_profiling_reporttxt); only the
/// enabled analyses appear.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowProfiling<'a> {
    /// Keyed `"<TYPE>:<name>"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simple_stack_analysis: Option<indexmap::IndexMap<String, simple_stack::OperationStats>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested_stack_analysis: Option<nested_stack::NestedStackAnalysis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_spike_analysis: Option<spikes::SpikeAnalysis<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_span_analysis: Option<prefix_span::PrefixSpanAnalysis>,
    /// `workflow_profiling_report.txt`: each enabled analysis' report, each after `"\n\n\n"`.
    #[serde(skip)]
    pub report: String,
}

impl WorkflowProfiling<'_> {
    /// Whether the toolkit would write the files at all (it skips them when nothing is enabled).
    pub fn is_empty(&self) -> bool {
        self.simple_stack_analysis.is_none()
            && self.nested_stack_analysis.is_none()
            && self.concurrency_spike_analysis.is_none()
            && self.prefix_span_analysis.is_none()
    }
}

pub fn workflow_profiling<'a>(
    frame: &'a Frame,
    config: &ProfilerConfig,
    dialect: Dialect,
) -> WorkflowProfiling<'a> {
    workflow_profiling_with(frame, &call_trees(frame, config, dialect), config)
}

/// The call trees the nested-stack and spike analyses read. In aiq 1.1 they are one tree; nat
/// 1.9's nested stack also makes nodes of FUNCTION and SPAN steps, while its spike analysis still
/// sees LLM and TOOL calls only.
#[derive(Debug, Clone, Default)]
pub struct CallTrees<'a> {
    /// The nested-stack analysis' tree, which the Gantt chart draws.
    pub nested: calltree::CallForest<'a>,
    /// The spike analysis' tree when it differs from `nested`.
    spikes: Option<calltree::CallForest<'a>>,
}

impl<'a> CallTrees<'a> {
    pub fn spikes(&self) -> &calltree::CallForest<'a> {
        self.spikes.as_ref().unwrap_or(&self.nested)
    }
}

/// The trees the enabled analyses need (empty when none needs one or the frame is not
/// standardized).
pub fn call_trees<'a>(
    frame: &'a Frame,
    config: &ProfilerConfig,
    dialect: Dialect,
) -> CallTrees<'a> {
    let nested = config.bottleneck_analysis.enable_nested_stack;
    let spikes = config.concurrency_spike_analysis.enable;
    if !frame.is_standardized() || !(nested || spikes) {
        return CallTrees::default();
    }
    let build = |functions| calltree::CallForest::build(frame, functions);
    match (dialect.function_nodes(), nested, spikes) {
        (true, true, true) => CallTrees {
            nested: build(true),
            spikes: Some(build(false)),
        },
        (true, true, false) => CallTrees {
            nested: build(true),
            spikes: None,
        },
        _ => CallTrees {
            nested: build(false),
            spikes: None,
        },
    }
}

/// [`workflow_profiling`] over call trees already built by [`call_trees`].
pub fn workflow_profiling_with<'a>(
    frame: &'a Frame,
    trees: &CallTrees<'a>,
    config: &ProfilerConfig,
) -> WorkflowProfiling<'a> {
    let mut report = String::new();
    let mut section = |text: &str| {
        report.push_str("\n\n\n");
        report.push_str(text);
    };
    let simple = config.bottleneck_analysis.enable_simple_stack.then(|| {
        let a = simple_stack::analyze(frame);
        section(&a.summary);
        a.stats
    });
    let nested = config.bottleneck_analysis.enable_nested_stack.then(|| {
        let a = nested_stack::analyze(&trees.nested);
        section(&a.textual_report);
        a
    });
    let spikes = config.concurrency_spike_analysis.enable.then(|| {
        let a = spikes::analyze(
            trees.spikes(),
            config.concurrency_spike_analysis.spike_threshold,
            config.limits.spike_uuid_bytes,
        );
        section(&a.textual_report);
        a
    });
    let prefix_span = config.prefix_span_analysis.enable.then(|| {
        let a = prefix_span::analyze(frame, &config.prefix_span_analysis);
        section(&a.textual_report);
        a
    });
    WorkflowProfiling {
        simple_stack_analysis: simple,
        nested_stack_analysis: nested,
        concurrency_spike_analysis: spikes,
        prefix_span_analysis: prefix_span,
        report,
    }
}
