//! The service admits each analysis to its memory budget by an estimate made before any step is
//! read (`compute::Cost`, from the figures the store keeps per request). The budget holds only
//! if every estimate is at least what the computation allocates: this measures each one (a
//! counting allocator) on every conformance case in both dialects and on synthetic runs of two
//! shapes, and checks it.
//!
//! One test only: the allocator counts the whole process, so nothing may run beside it.

#[path = "../examples/support/memory.rs"]
mod memory;

mod common;

use agentprof::profiler::{Dialect, ProfilerConfig};
use agentprof::trace::{ParseOptions, parse};

#[global_allocator]
static GLOBAL: memory::Counting = memory::Counting;

/// Measures every computation on `input`; returns how many it checked, and adds to `over`
/// each one whose estimate is below what it allocated.
fn check(
    name: &str,
    input: &[u8],
    config: &ProfilerConfig,
    dialect: Dialect,
    over: &mut Vec<String>,
) -> usize {
    let numbered = parse(input, &ParseOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_numbered();
    let run = memory::StoredRun::of(&numbered);
    drop(numbered);
    let measured = memory::measure(&run, config, dialect);
    for m in &measured {
        if m.estimate < m.peak as u64 {
            let s = run.size;
            over.push(format!(
                "{name} [{dialect}] {}: allocated {} bytes at its peak, estimated {} ({} \
                 requests, {} steps, {} column bytes, {} body bytes)",
                m.what, m.peak, m.estimate, s.requests, s.steps, s.column_bytes, s.body_bytes
            ));
        }
    }
    measured.len()
}

#[test]
fn every_estimate_covers_what_its_computation_allocates() {
    let (mut checked, mut over) = (0, Vec::new());
    for case in common::cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let config = ProfilerConfig::from_json(common::case_config(&case)).unwrap();
        let input = common::case_input(&case);
        // The largest case in one dialect only: its figures differ little between the two.
        let dialects: &[Dialect] = if input.len() > 8 << 20 {
            &[Dialect::Nat19]
        } else {
            &[Dialect::Aiq11, Dialect::Nat19]
        };
        for &dialect in dialects {
            checked += check(&name, &input, &config, dialect, &mut over);
        }
    }
    for (requests, workers) in [(120, 8), (120, 48)] {
        let doc = agentprof::synth::profiler_document_with(0, requests, 7, workers);
        let input = serde_json::to_vec(&doc).unwrap();
        let name = format!("synthetic {requests} requests, {workers} in flight");
        checked += check(
            &name,
            &input,
            &ProfilerConfig::default(),
            Dialect::Nat19,
            &mut over,
        );
    }
    assert!(over.is_empty(), "estimates below use:\n{}", over.join("\n"));
    assert!(checked > 400, "{checked} estimates checked");
}
