//! The data every analysis reads: the standardized [`frame`] of a run, the per-request call tree
//! ([`calltree`]), the toolkit's `ProfilerConfig` ([`config`]) and which toolkit version's outputs
//! to reproduce ([`dialect`]).

pub mod calltree;
pub mod config;
#[cfg(feature = "openapi")]
pub mod config_schema;
pub mod dialect;
pub mod frame;
