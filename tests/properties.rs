//! Property tests: the parser never panics, whatever the bytes; a parsed document dumps and
//! re-parses to itself; and every analysis runs to completion on any valid run.

use agentprof::profiler::toolkit::{atif, csv, gantt, prediction_trie};
use agentprof::profiler::{self, Dialect, Frame, ProfilerConfig, core::calltree::CallForest};
use agentprof::py;
use agentprof::trace::{ParseOptions, parse, parse_value};
use proptest::prelude::*;
use serde_json::{Value, json};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("LLM_START"),
            Just("LLM_END"),
            Just("TOOL_START"),
            Just("payload"),
            Just("event_type")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("payload".to_owned()),
                        Just("event_type".to_owned()),
                        Just("event_timestamp".to_owned()),
                        Just("function_ancestry".to_owned()),
                        Just("request_number".to_owned()),
                        Just("intermediate_steps".to_owned()),
                        Just("UUID".to_owned()),
                        ".{0,6}".prop_map(String::from)
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

const EVENT_TYPES: [&str; 9] = [
    "LLM_START",
    "LLM_END",
    "LLM_NEW_TOKEN",
    "TOOL_START",
    "TOOL_END",
    "FUNCTION_START",
    "FUNCTION_END",
    "SPAN_CHUNK",
    "TTC_END",
];

/// Valid steps with colliding UUIDs, equal timestamps, missing ancestry or data: the shapes that
/// stress the pairing, nesting and sorting logic.
fn valid_step() -> impl Strategy<Value = Value> {
    (
        0..EVENT_TYPES.len(),
        prop_oneof![Just(0.0f64), Just(1.0), 0.0f64..10.0],
        0u8..4,
        prop::option::of(prop_oneof![Just("m".to_owned()), Just(String::new()), "[a-z]{1,3}".prop_map(String::from)]),
        prop::option::of(prop_oneof![Just(json!("prompt words")), Just(json!([{"role": "user"}])), Just(Value::Null), Just(json!(3))]),
        prop::option::of((0i64..500, 0i64..500, 0i64..3)),
        0u8..3,
    )
        .prop_map(|(et, ts, uuid, name, input, usage, ancestry)| {
            let et = EVENT_TYPES[et];
            let mut payload = json!({"event_type": et, "event_timestamp": ts, "UUID": format!("u{uuid}"), "name": name});
            if let Some(input) = input {
                payload["data"] = json!({"input": input, "output": "out", "chunk": "c"});
            }
            if let Some((p, c, s)) = usage {
                payload["usage_info"] = json!({"token_usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}, "seconds_between_calls": s});
            }
            let mut step = json!({"payload": payload});
            match ancestry {
                0 => {}
                1 => step["function_ancestry"] = json!({"function_id": "f", "function_name": "agent", "parent_id": "root", "parent_name": "root"}),
                _ => step["function_ancestry"] = json!({"function_id": "g", "function_name": "tool_fn"}),
            }
            step
        })
}

/// Parses `doc` and runs every analysis on it; returns false when the document does not parse.
fn run_everything(doc: Value) -> bool {
    let Ok(batch) = parse_value(doc, &ParseOptions::default()) else {
        return false;
    };
    let requests = batch.into_numbered();
    let frame = Frame::from_numbered(&requests);
    let mut config = ProfilerConfig::default();
    config.prefix_span_analysis.min_support.value = 1.0;
    config.prompt_caching_prefixes.min_frequency = 0.0;
    config.prediction_trie.w_parallel = 0.5;
    for dialect in Dialect::ALL {
        let io = profiler::inference_optimization(&frame, &config, dialect);
        let wp = profiler::workflow_profiling(&frame, &config, dialect);
        let _ = py::json::to_vec(&io);
        let _ = py::json::to_vec(&wp);
        let _ = py::json::to_vec(&profiler::profiler_results(&frame, &config, &io));
        let _ = gantt::to_svg(&CallForest::build(&frame, dialect.function_nodes()));
    }
    let _ = csv::to_string(&frame, &config);
    let _ = py::json::to_vec(&profiler::toolkit::forecast::fit(&frame));
    let _ = py::json::to_vec(&prediction_trie::build(&frame, &config.prediction_trie));
    let items: Vec<_> = requests.iter().map(agentprof::outputs::atif_item).collect();
    let _ = py::json::to_vec(&atif::samples(&items));
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes, &ParseOptions { now: 0.0, max_decompressed_bytes: Some(1 << 20) });
        let mut gz = vec![0x1f, 0x8b];
        gz.extend(&bytes);
        let _ = parse(&gz, &ParseOptions { now: 0.0, max_decompressed_bytes: Some(1 << 20) });
    }

    #[test]
    fn arbitrary_json_never_panics(doc in any_json()) {
        let _ = parse_value(doc.clone(), &ParseOptions::default());
        let _ = run_everything(doc);
    }

    #[test]
    fn parse_dump_parse_is_identity(requests in prop::collection::vec(prop::collection::vec(valid_step(), 0..8), 0..4)) {
        let doc = Value::Array(requests.into_iter().map(Value::Array).collect());
        let once = parse_value(doc, &ParseOptions { now: 5.0, max_decompressed_bytes: None }).expect("valid steps");
        let dumped: Vec<Vec<Value>> = once.requests.iter().map(|r| r.steps.iter().map(|s| serde_json::to_value(s).unwrap()).collect()).collect();
        let twice = parse_value(json!(dumped), &ParseOptions { now: 99.0, max_decompressed_bytes: None }).expect("dump re-parses");
        prop_assert_eq!(once.requests, twice.requests);
    }

    #[test]
    fn every_analysis_completes_on_valid_runs(requests in prop::collection::vec(prop::collection::vec(valid_step(), 0..14), 0..5)) {
        let doc = Value::Array(requests.into_iter().map(Value::Array).collect());
        prop_assert!(run_everything(doc), "valid steps must parse");
    }
}
