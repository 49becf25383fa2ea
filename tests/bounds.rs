//! Bounds that keep an output's size linear whatever a client sends, sized so that realistic runs
//! never reach them (issue "What a newcomer and a hostile client found").

use agentprof::profiler::core::calltree::CallForest;
use agentprof::profiler::toolkit::spikes;
use agentprof::profiler::{self, Dialect, Frame, ProfilerConfig};
use agentprof::trace::{ParseOptions, parse_value};
use serde_json::json;

fn frame_of(doc: serde_json::Value) -> Frame {
    let batch = parse_value(doc, &ParseOptions::default()).expect("a valid document");
    Frame::from_numbered(&batch.into_numbered())
}

/// A realistic run lists every UUID of its spikes, as the toolkit does: a 1,000-request eval of
/// the synthetic generator with 48 requests in flight, whose spike intervals list hundreds of
/// thousands of UUIDs (more than the 16-per-call budget of before, which cut them short).
#[test]
fn a_realistic_run_lists_every_spike_uuid() {
    let frame = frame_of(agentprof::synth::profiler_document_with(0, 1_000, 7, 48));
    let config = ProfilerConfig::default();
    let profiling = profiler::workflow_profiling(&frame, &config, Dialect::Nat19);
    let spikes = profiling
        .concurrency_spike_analysis
        .as_ref()
        .expect("the spike analysis is on by default");
    assert!(!spikes.truncated, "a realistic run was cut short");
    let listed: usize = spikes
        .spike_intervals
        .iter()
        .map(|s| s.active_uuids.len())
        .sum();
    let calls = CallForest::build(&frame, false).nodes.len();
    println!("{calls} calls, {listed} UUIDs listed");
    assert!(
        listed > 16 * calls,
        "the premise: {listed} UUIDs for {calls} calls is more than the old budget allowed"
    );
    for interval in &spikes.spike_intervals {
        assert_eq!(interval.active_calls, None);
    }
}

/// A client's 20,000 calls nested in one request: the lists are cut within the byte budget, the
/// counts stay exact, and the whole `/profiling` document stays under 64 MB.
#[test]
fn nested_calls_are_cut_within_the_byte_budget() {
    let depth = 20_000;
    let mut steps = Vec::with_capacity(2 * depth);
    for i in 0..depth {
        steps.push(
            json!({"payload": {"event_type": "TOOL_START", "event_timestamp": i as f64,
                                      "UUID": format!("call-{i}"), "name": "tool"}}),
        );
    }
    for i in (0..depth).rev() {
        steps.push(
            json!({"payload": {"event_type": "TOOL_END", "event_timestamp": (2 * depth - i) as f64,
                                      "UUID": format!("call-{i}"), "name": "tool"}}),
        );
    }
    let frame = frame_of(json!([{"request_number": 0, "intermediate_steps": steps}]));
    let config = ProfilerConfig::default();
    let profiling = profiler::workflow_profiling(&frame, &config, Dialect::Nat19);
    let spikes = profiling.concurrency_spike_analysis.as_ref().unwrap();
    assert!(spikes.truncated);
    let bytes = agentprof::py::json::to_vec(&profiling).len();
    assert!(bytes < 64_000_000, "/profiling is {bytes} bytes");
    let deepest = spikes
        .spike_intervals
        .iter()
        .map(|s| s.active_call_count())
        .max();
    assert_eq!(deepest, Some(depth), "counts stay exact");

    // The budget is a setting: a smaller one cuts sooner.
    let forest = CallForest::build(&frame, false);
    let small = spikes::analyze(&forest, 1, 1_000_000);
    let bytes: usize = small
        .spike_intervals
        .iter()
        .flat_map(|s| &s.active_uuids)
        .map(|u| u.len() + 14)
        .sum();
    assert!(bytes <= 1_000_000 && bytes > 1_000_000 - 40, "{bytes}");
    assert!(small.truncated);
}
