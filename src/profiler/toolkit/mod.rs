//! The toolkit profiler's outputs, one file per analysis, each reproducing the toolkit's numbers
//! and bytes, quirks included (see `docs/toolkit-semantics.md`).

pub mod atif;
pub mod confidence;
pub mod csv;
pub mod forecast;
pub mod gantt;
pub mod llm_metrics;
pub mod nested_stack;
pub mod prediction_trie;
pub mod prefix_span;
pub mod prefixes;
pub mod runtimes;
pub mod simple_stack;
pub mod spikes;
pub mod uniqueness;
