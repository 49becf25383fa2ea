//! The data every analysis reads: the standardized [`frame`] of a run, the per-request call tree
//! ([`calltree`]) and the toolkit's `ProfilerConfig` ([`config`]).

pub mod calltree;
pub mod config;
pub mod frame;
