//! Pure analysis: the standardized rows of a run in, the toolkit profiler's outputs out.
//!
//! Nothing here does I/O beyond writing into a caller's `Write`, and nothing knows about HTTP or
//! SQL; the CLI and the service feed the same [`Frame`] to the same functions. Each analysis lives
//! in its own file and reproduces REFERENCE.md, quirks included, except where DESIGN.md lists a
//! deliberate deviation.

pub mod config;
pub mod confidence;
pub mod csv;
pub mod exact;
pub mod frame;
pub mod llm_metrics;
pub mod percentile;
pub mod prefixes;
pub mod pyfmt;
pub mod pyjson;
pub mod runtimes;
pub mod traces;
pub mod uniqueness;

#[cfg(test)]
pub(crate) mod testutil;

pub use config::ProfilerConfig;
pub use frame::{Frame, FrameBuilder, RequestSlice, Row};

use serde::Serialize;

/// `inference_optimization.json` (REFERENCE.md §5.1); disabled analyses are `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InferenceOptimization {
    pub confidence_intervals: confidence::ConfidenceIntervals,
    pub common_prefixes: Option<prefixes::CommonPrefixes>,
    pub token_uniqueness: Option<uniqueness::TokenUniqueness>,
    pub workflow_runtimes: Option<uniqueness::Percentiles>,
}

pub fn inference_optimization(frame: &Frame, config: &ProfilerConfig) -> InferenceOptimization {
    InferenceOptimization {
        confidence_intervals: confidence::compute(frame),
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
    }
}
