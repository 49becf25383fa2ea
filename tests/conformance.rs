//! Every case in tests/fixtures/cases, run through the profiler and compared with the outputs of
//! the reference implementation (aiqtoolkit 1.1.0) that the oracle recorded in `expected/`.

mod common;

use agentprof::profiler::{self, Frame, ProfilerConfig, py, toolkit::traces::TracesWriter};
use agentprof::trace::{ParseOptions, parse_document};
use common::*;
use std::path::Path;

struct Outputs {
    traces: Vec<u8>,
    csv: Vec<u8>,
    inference: Vec<u8>,
    profiling: Vec<u8>,
    report: String,
}

fn config_of(case: &Path) -> ProfilerConfig {
    match std::fs::read(case.join("agentprof_config.json")) {
        Ok(b) => ProfilerConfig::from_json(serde_json::from_slice(&b).unwrap()).unwrap(),
        Err(_) => ProfilerConfig::default(),
    }
}

fn run(case: &Path) -> Outputs {
    let config = config_of(case);
    let batch =
        parse_document(&case_input(case), &ParseOptions::default()).expect("case input is valid");
    let requests = batch.into_numbered();
    let frame = Frame::from_requests(requests.iter().map(|(n, s)| (*n, s.as_slice())));
    let mut traces = TracesWriter::new(Vec::new());
    for (n, steps) in &requests {
        traces.begin_request(*n).unwrap();
        for s in steps {
            traces.step(s).unwrap();
        }
    }
    let profiling = profiler::workflow_profiling(&frame, &config);
    Outputs {
        traces: traces.finish().unwrap(),
        csv: profiler::toolkit::csv::to_string(&frame, &config).into_bytes(),
        inference: py::json::to_vec(&profiler::inference_optimization(&frame, &config)),
        profiling: py::json::to_vec(&profiling),
        report: profiling.report,
    }
}

#[test]
fn every_case_matches_the_reference() {
    let cases = cases();
    assert!(
        cases.len() >= 13,
        "expected the shared and generated cases, found {}",
        cases.len()
    );
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let ours = run(&case);
        for (file, bytes) in [
            ("inference_optimization.json", &ours.inference),
            ("workflow_profiling_metrics.json", &ours.profiling),
            ("all_requests_profiler_traces.json", &ours.traces),
        ] {
            let oracle =
                expected_json(&case, file).unwrap_or_else(|| panic!("{name}: no expected {file}"));
            let ours: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert_json_matches(&name, file, &oracle, &ours);
        }
        let expected = case.join("expected");
        let csv = read_maybe_gz(&expected, "standardized_data_all.csv").unwrap();
        assert_text_equal(&name, "standardized_data_all.csv", &csv, &ours.csv);
        let report = read_maybe_gz(&expected, "workflow_profiling_report.txt").unwrap();
        assert_text_equal(
            &name,
            "workflow_profiling_report.txt",
            &report,
            ours.report.as_bytes(),
        );
        // The toolkit writes its own traces file back byte for byte; so do we.
        let traces = read_maybe_gz(&expected, "all_requests_profiler_traces.json").unwrap();
        assert_text_equal(
            &name,
            "all_requests_profiler_traces.json",
            &traces,
            &ours.traces,
        );
    }
}

#[test]
fn json_comparison_can_fail() {
    let a = serde_json::json!({"x": 1.0, "active_uuids": ["a", "b"], "l": [1]});
    assert!(
        json_diff(
            &a,
            &serde_json::json!({"x": 1.0 + 1e-12, "active_uuids": ["b", "a"], "l": [1]})
        )
        .is_empty()
    );
    assert_eq!(
        json_diff(
            &a,
            &serde_json::json!({"x": 1.001, "active_uuids": ["a", "b"], "l": [1]})
        )
        .len(),
        1
    );
    assert_eq!(
        json_diff(
            &a,
            &serde_json::json!({"x": 1.0, "active_uuids": ["a"], "l": [1, 2]})
        )
        .len(),
        2
    );
}
