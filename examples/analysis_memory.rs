//! Prints what each computation of the service allocates at its peak against the estimate the
//! service admits it by, on a seeded synthetic run: the figures the estimates in
//! `outputs::OUTPUTS` and `compute::budget` were set from (BENCHMARKS.md#analysis-memory).
//!
//! `cargo run --release --example analysis_memory -- [REQUESTS] [WORKERS]` (default 2,000
//! requests, 8 in flight).

#[path = "support/memory.rs"]
mod memory;

use agentprof::profiler::{Dialect, ProfilerConfig};
use agentprof::trace::{ParseOptions, parse};

#[global_allocator]
static GLOBAL: memory::Counting = memory::Counting;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().map_or(Ok(2000), |s| s.parse())?;
    let workers: usize = args.next().map_or(Ok(8), |s| s.parse())?;
    let doc = agentprof::synth::profiler_document_with(0, requests, 42, workers);
    let numbered = parse(&serde_json::to_vec(&doc)?, &ParseOptions::default())?.into_numbered();
    drop(doc);
    let run = memory::StoredRun::of(&numbered);
    drop(numbered);
    let s = run.size;
    println!(
        "{} requests, {} steps, {} column bytes ({:.0} a step), {} body bytes",
        s.requests,
        s.steps,
        s.column_bytes,
        s.column_bytes as f64 / s.steps as f64,
        s.body_bytes
    );
    println!(
        "{:<28} {:>12} {:>12} {:>9} {:>9}",
        "computation", "peak B", "estimate B", "peak/step", "est/peak"
    );
    for m in memory::measure(&run, &ProfilerConfig::default(), Dialect::Nat19) {
        println!(
            "{:<28} {:>12} {:>12} {:>9.0} {:>9.2}",
            m.what,
            m.peak,
            m.estimate,
            m.peak as f64 / s.steps as f64,
            m.estimate as f64 / m.peak.max(1) as f64
        );
    }
    Ok(())
}
