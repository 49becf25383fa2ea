//! agentprof profiles agent workflow runs: it takes the `IntermediateStep` events that NVIDIA's
//! NeMo Agent Toolkit (nvidia-nat 1.9, formerly AgentIQ / aiqtoolkit 1.1) emits and computes what
//! the toolkit's offline profiler computes, number for number, as a CLI and as an HTTP service.
//!
//! # Layout
//!
//! Data flows one way: wire format -> store -> profiler -> wire format.
//!
//! - [`trace`]: the toolkit's step JSON (aiqtoolkit 1.1.0 and nvidia-nat 1.9 shapes), the four
//!   input forms, and validation that names the JSON pointer of every rejected value.
//! - [`profiler`]: pure analysis over the standardized rows of a run, in either toolkit's dialect:
//!   the core (frame, call tree, config), the toolkit's outputs, the Python emulation that makes
//!   their bytes match (`py`: float formatting, JSON, numpy statistics), and statistics of our own.
//! - [`py`]: Python's and numpy's arithmetic and text (float repr, `json.dump`, percentiles), which
//!   the toolkit's outputs are written in; a leaf that the trace and the profiler share.
//! - [`analyze`]: `agentprof analyze FILE --out DIR`, the profiler on a file with no database, and
//!   the files `agentprof compare` reads.
//! - [`remote`]: `agentprof compare --url`, the runs of a server compared there and decided here.
//! - [`gate`]: `agentprof compare`'s regression gate: which metrics a candidate made worse, as
//!   text, Markdown or JSON, and the exit status a CI job fails on.
//! - [`store`]: persistence behind one trait, PostgreSQL (production) and SQLite (embedded
//!   default); a batch is prepared outside the transaction and stored whole or not at all.
//! - [`otlp`]: OpenTelemetry spans (OTLP) decoded within limits and mapped onto the toolkit's steps.
//! - [`ingest`]: the one way steps come in (create, append, OTLP): admission, reading within the
//!   batch memory budget, storing, telling the read side, counting.
//! - [`rollup`]: per-minute counts and latency sketches that ingest keeps beside the steps and
//!   retention takes back out, read as a run's time series without loading a step.
//! - [`live`]: the upkeep of runs that never stop: rollups built for old runs, and retention's
//!   sweeps, each a bounded transaction.
//! - [`compute`]: outputs computed on demand from stored steps, cached per run version and config.
//! - [`api`]: the axum HTTP API, problem+json errors, API keys, OpenAPI and Swagger UI.
//! - [`ui`]: the dashboard's pages and compiled-in assets, drawn from the API's JSON.
//! - [`config`] and [`server`]: typed configuration and `agentprof serve`, with the bounds on
//!   connections (docs/limits.md).

pub mod analyze;
#[cfg(feature = "openapi")]
pub mod api;
pub mod compute;
pub mod config;
pub mod gate;
pub mod ingest;
pub mod jsontext;
pub mod live;
pub mod otlp;
pub mod outputs;
pub mod profiler;
pub mod py;
pub mod remote;
pub mod rollup;
#[cfg(feature = "openapi")]
pub mod server;
pub mod store;
pub mod synth;
pub mod trace;
#[cfg(feature = "openapi")]
pub mod ui;
pub mod window;

/// An error and its sources, `outer: inner: innermost`, for one log line or one message: the
/// outer error alone often says only what failed ("error sending request"), not why.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
