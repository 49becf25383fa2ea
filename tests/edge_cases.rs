//! The edge cases of docs/toolkit-semantics.md#edge-cases, one test each, on small hand-made runs.

use agentprof::profiler::toolkit::forecast::{self, Forecast};
use agentprof::profiler::{self, Dialect, Frame, ProfilerConfig, toolkit::csv};
use agentprof::py;
use agentprof::trace::{ParseOptions, TraceError, parse_value};
use serde_json::{Value, json};

mod common;
use common::step;

struct Out {
    io: Value,
    wp: Value,
    report: String,
    csv: String,
    forecast: Forecast,
}

fn analyze(doc: Value) -> Out {
    let frame = Frame::from_batch(parse_value(doc, &ParseOptions::default()).expect("valid"));
    let config = ProfilerConfig::default();
    let wp = profiler::workflow_profiling(&frame, &config, Dialect::Aiq11);
    Out {
        io: serde_json::from_slice(&py::json::to_vec(&profiler::inference_optimization(
            &frame,
            &config,
            Dialect::Aiq11,
        )))
        .unwrap(),
        wp: serde_json::from_slice(&py::json::to_vec(&wp)).unwrap(),
        report: wp.report,
        csv: csv::to_string(&frame, &config),
        forecast: forecast::fit(&frame),
    }
}

fn llm_call(uuid: &str, start: f64, end: f64) -> [Value; 2] {
    [step("LLM_START", start, uuid), step("LLM_END", end, uuid)]
}

fn ci<'a>(o: &'a Out, which: &str) -> &'a Value {
    &o.io["confidence_intervals"][which]
}

#[test]
fn empty_request_counts_only_in_throughput() {
    let [a, b] = llm_call("a", 0.0, 2.0);
    let [c, d] = llm_call("c", 1.0, 4.0);
    let o = analyze(json!([[a, b], [], [c, d]]));
    assert_eq!(ci(&o, "workflow_run_time_confidence_intervals")["n"], 2);
    assert_eq!(ci(&o, "llm_latency_confidence_intervals")["n"], 2);
    assert_eq!(
        ci(&o, "throughput_estimate_confidence_interval")["n"],
        3,
        "N counts the empty request"
    );
    assert_eq!(
        ci(&o, "throughput_estimate_confidence_interval")["mean"],
        0.75
    );
    assert_eq!(
        o.csv.lines().count(),
        1 + 4,
        "no CSV rows for the empty request"
    );
    assert!(
        matches!(o.forecast, Forecast::Skipped { ref reason } if reason.contains("request 1 has no LLM_END"))
    );
}

#[test]
fn no_steps_at_all_gives_empty_forms_instead_of_crashing() {
    let o = analyze(json!([[], []]));
    assert_eq!(o.csv, "\n");
    for k in [
        "workflow_run_time_confidence_intervals",
        "llm_latency_confidence_intervals",
        "throughput_estimate_confidence_interval",
    ] {
        assert_eq!(
            ci(&o, k),
            &json!({"n": 0, "mean": 0, "ninetieth_interval": [0, 0], "ninety_fifth_interval": [0, 0], "ninety_ninth_interval": [0, 0]})
        );
    }
    assert_eq!(o.io["common_prefixes"], json!({}));
    assert_eq!(o.io["token_uniqueness"], json!({}));
    assert_eq!(
        o.io["workflow_runtimes"],
        json!({"p90": 0.0, "p95": 0.0, "p99": 0.0})
    );
    assert_eq!(o.wp["simple_stack_analysis"], json!({}));
    assert_eq!(o.wp["nested_stack_analysis"]["node_metrics"], json!({}));
    assert_eq!(
        o.wp["concurrency_spike_analysis"]["spike_intervals"],
        json!([])
    );
    assert_eq!(o.wp["prefix_span_analysis"]["patterns"], json!([]));
    assert!(o.report.contains("No operations found to profile."));
    assert!(o.report.contains("No calls found."));
    assert!(
        o.report
            .contains("No frequent patterns found by PrefixSpan")
    );
}

#[test]
fn single_request() {
    let [a, b] = llm_call("a", 0.0, 2.0);
    let o = analyze(json!([[
        a,
        b,
        step("TOOL_START", 2.5, "t"),
        step("TOOL_END", 3.0, "t")
    ]]));
    let w = ci(&o, "workflow_run_time_confidence_intervals");
    assert_eq!((w["n"].clone(), w["mean"].clone()), (json!(1), json!(3.0)));
    assert_eq!(w["ninety_ninth_interval"], json!([3.0, 3.0]));
    assert_eq!(
        ci(&o, "throughput_estimate_confidence_interval")["n"],
        0,
        "throughput is all zeros for N <= 1"
    );
    assert_eq!(
        o.io["workflow_runtimes"],
        json!({"p90": 3.0, "p95": 3.0, "p99": 3.0})
    );
}

#[test]
fn one_llm_call_in_total() {
    let [a, b] = llm_call("a", 0.0, 1.5);
    let o = analyze(json!([
        [a, b],
        [step("TOOL_START", 0.0, "t"), step("TOOL_END", 1.0, "t")]
    ]));
    let l = ci(&o, "llm_latency_confidence_intervals");
    assert_eq!(
        (l["n"].clone(), l["ninetieth_interval"].clone()),
        (json!(1), json!([1.5, 1.5]))
    );
}

#[test]
fn all_steps_at_one_timestamp() {
    let [a, b] = llm_call("a", 5.0, 5.0);
    let [c, d] = llm_call("c", 5.0, 5.0);
    let o = analyze(json!([[a, b], [c, d]]));
    assert_eq!(
        ci(&o, "workflow_run_time_confidence_intervals")["mean"],
        0.0
    );
    assert_eq!(
        ci(&o, "throughput_estimate_confidence_interval")["n"],
        0,
        "T <= 0 gives zeros"
    );
}

#[test]
fn orphan_llm_end() {
    let [a, b] = llm_call("a", 1.0, 2.0);
    let o = analyze(json!([[step("LLM_END", 0.5, "orphan"), a, b]]));
    assert_eq!(
        ci(&o, "llm_latency_confidence_intervals")["n"],
        1,
        "the orphan is ignored"
    );
    assert_eq!(o.wp["simple_stack_analysis"]["LLM:m"]["usage_count"], 1);
    assert_eq!(
        o.wp["nested_stack_analysis"]["node_metrics"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(o.forecast, Forecast::Skipped { ref reason } if reason.contains("KeyError")));
    // ...unless an unmatched START precedes it in time: then they pair by time.
    let o = analyze(json!([[
        step("LLM_START", 0.0, "x"),
        step("LLM_END", 0.5, "orphan")
    ]]));
    assert_eq!(ci(&o, "llm_latency_confidence_intervals")["mean"], 0.5);
}

#[test]
fn llm_start_without_end() {
    let [a, b] = llm_call("a", 2.0, 3.0);
    let o = analyze(json!([[step("LLM_START", 0.0, "open"), a, b]]));
    assert_eq!(
        ci(&o, "llm_latency_confidence_intervals")["n"],
        1,
        "the unended START is overwritten"
    );
    assert!(
        o.wp["simple_stack_analysis"]
            .get("LLM:m")
            .is_some_and(|s| s["usage_count"] == 1)
    );
    let open = &o.wp["nested_stack_analysis"]["node_metrics"]["open"];
    assert_eq!(open["duration"], 0.0);
    assert_eq!(
        open["subtree_time"], 1.0,
        "the unended START adopts the later call"
    );
}

#[test]
fn null_usage_info() {
    let mut end = step("LLM_END", 1.0, "a");
    end["payload"]["usage_info"] = Value::Null;
    let o = analyze(json!([[step("LLM_START", 0.0, "a"), end]]));
    let row = o.csv.lines().nth(2).unwrap();
    assert!(row.starts_with("LLM_END,1.0,0,0,0,0,"), "{row}");
    assert_eq!(
        o.wp["concurrency_spike_analysis"]["correlation_stats"],
        json!({"avg_prompt_tokens": 0.0, "avg_total_tokens": 0.0})
    );
    let Forecast::Fitted(f) = o.forecast else {
        panic!("fit")
    };
    assert_eq!(f.training_samples, 1);
}

#[test]
fn steps_out_of_order() {
    let [a, b] = llm_call("a", 0.0, 2.0);
    let o = analyze(json!([[b.clone(), a.clone()]]));
    let sorted = analyze(json!([[a, b]]));
    assert_eq!(o.io, sorted.io, "every metric sorts by timestamp");
    assert_eq!(o.wp, sorted.wp);
    assert!(
        o.csv.lines().nth(1).unwrap().starts_with("LLM_END"),
        "the CSV keeps input order"
    );
}

#[test]
fn overlapping_llm_calls() {
    let o = analyze(json!([[
        step("LLM_START", 0.0, "a"),
        step("LLM_START", 1.0, "b"),
        step("LLM_END", 3.0, "a"),
        step("LLM_END", 4.0, "b")
    ]]));
    let l = ci(&o, "llm_latency_confidence_intervals");
    assert_eq!(
        (l["n"].clone(), l["mean"].clone()),
        (json!(1), json!(2.0)),
        "END A - START B only (B6)"
    );
    let nm = &o.wp["nested_stack_analysis"]["node_metrics"];
    // B becomes A's child (B5): A's self time is 3 - |[1, 3]| = 1, plus B's 3.
    assert_eq!(nm["a"]["subtree_time"], 4.0);
    assert_eq!(nm["a"]["self_time"], 1.0);
}

#[test]
fn chat_inputs_use_python_repr() {
    let mut s = step("LLM_START", 0.0, "a");
    s["payload"]["data"]["input"] = json!([{"content": "hi", "type": "human"}]);
    let o = analyze(json!([[s, step("LLM_END", 1.0, "a")]]));
    assert!(
        o.csv.contains("\"[{'content': 'hi', 'type': 'human'}]\""),
        "{}",
        o.csv
    );
    assert_eq!(
        o.io["common_prefixes"]["m"]["prefix_info"][0]["prefix"],
        "[{'content': 'hi', 'type': 'human'}]"
    );
}

#[test]
fn null_function_ancestry_does_not_crash() {
    let mut s = step("LLM_START", 0.0, "a");
    s["function_ancestry"] = Value::Null;
    let o = analyze(json!([[s, step("LLM_END", 1.0, "a")]]));
    assert_eq!(
        ci(&o, "llm_latency_confidence_intervals")["n"],
        1,
        "the step-based intervals still work"
    );
    assert_eq!(
        o.io["common_prefixes"],
        json!({}),
        "frame-based analyses give their empty form"
    );
    assert_eq!(o.wp["simple_stack_analysis"], json!({}));
    let row = o.csv.lines().nth(1).unwrap();
    assert!(
        row.contains(",m,,,,,,a,"),
        "null ancestry gives empty cells: {row}"
    );
}

#[test]
fn null_llm_input() {
    let mut s1 = step("LLM_START", 0.0, "a");
    s1["payload"]["data"]["input"] = Value::Null;
    let s2 = step("LLM_START", 1.0, "b");
    let s3 = step("LLM_START", 2.0, "c");
    let o = analyze(json!([[s1, s2, s3]]));
    assert_eq!(o.io["common_prefixes"]["m"]["total_calls"], 3);
    // "None", "prompt b", "prompt c": only "prompt " (7 chars, 2 of 3 texts) passes 0.5.
    assert_eq!(
        o.io["common_prefixes"]["m"]["prefix_info"][0]["prefix"],
        "prompt "
    );
    // The row after the null input is dropped: only b -> c counts (1 new word: "c").
    assert_eq!(
        o.io["token_uniqueness"]["m"],
        json!({"p90": 1.0, "p95": 1.0, "p99": 1.0})
    );
}

#[test]
fn span_timestamp_on_start_is_rejected() {
    let mut s = step("LLM_START", 0.0, "a");
    s["payload"]["span_event_timestamp"] = json!(0.0);
    let err = parse_value(json!([[s]]), &ParseOptions::default()).unwrap_err();
    let TraceError::Invalid { errors, .. } = err else {
        panic!()
    };
    assert_eq!(errors[0].path, "/0/0/payload/span_event_timestamp");
}

#[test]
fn eval_output_with_end_events_only() {
    let o = analyze(json!([
        {"id": 1, "question": "q", "generated_answer": "a", "intermediate_steps": [step("LLM_END", 2.0, "a"), step("TOOL_END", 3.0, "t")]},
        {"id": 2, "question": "q", "generated_answer": "a", "intermediate_steps": [step("LLM_END", 1.0, "b"), step("LLM_END", 4.0, "c")]}
    ]));
    assert_eq!(ci(&o, "llm_latency_confidence_intervals")["n"], 0);
    assert_eq!(
        ci(&o, "workflow_run_time_confidence_intervals")["mean"],
        2.0,
        "run time from END timestamps: (1 + 3) / 2"
    );
    assert_eq!(o.wp["simple_stack_analysis"], json!({}));
    assert!(o.report.contains("No calls found."));
    assert_eq!(
        o.wp["concurrency_spike_analysis"]["spike_intervals"],
        json!([])
    );
    assert_eq!(o.wp["prefix_span_analysis"]["patterns"], json!([]));
    assert!(matches!(o.forecast, Forecast::Skipped { ref reason } if reason.contains("KeyError")));
}
