//! Workflow runtime percentiles (docs/toolkit-semantics.md#workflow-runtime-percentiles): p90/p95/p99 of each request's
//! `max(ts) - min(ts)`, empty requests excluded.

use crate::profiler::core::frame::Frame;
use crate::profiler::toolkit::confidence::run_times;
use crate::profiler::toolkit::uniqueness::Percentiles;

pub fn compute(frame: &Frame) -> Percentiles {
    if !frame.is_standardized() {
        return Percentiles::ZERO;
    }
    Percentiles::of(&run_times(frame)).unwrap_or(Percentiles::ZERO)
}
