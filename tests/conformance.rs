//! Every case in tests/fixtures/cases, run through `agentprof analyze` (the library function the
//! CLI calls) and compared with the files the toolkit itself wrote for the same input
//! (`expected/`: aiqtoolkit 1.1.0).

mod common;

use agentprof::analyze::analyze_file;
use agentprof::profiler::ProfilerConfig;
use common::*;
use std::path::{Path, PathBuf};

fn config_of(case: &Path) -> ProfilerConfig {
    ProfilerConfig::from_json(case_config(case)).expect("a valid profiler config")
}

fn input_path(case: &Path) -> PathBuf {
    ["input.json", "input.json.gz"]
        .iter()
        .map(|n| case.join(n))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{} has no input", case.display()))
}

/// Compares every file the toolkit wrote with ours: JSON within 1e-9, text byte for byte.
fn assert_outputs_match(name: &str, expected: &Path, ours: &Path) {
    for file in [
        "inference_optimization.json",
        "workflow_profiling_metrics.json",
        "all_requests_profiler_traces.json",
    ] {
        let oracle =
            read_maybe_gz(expected, file).unwrap_or_else(|| panic!("{name}: no expected {file}"));
        let mine = std::fs::read(ours.join(file))
            .unwrap_or_else(|e| panic!("{name}: we wrote no {file}: {e}"));
        assert_json_matches(
            name,
            file,
            &serde_json::from_slice(&oracle).unwrap(),
            &serde_json::from_slice(&mine).unwrap(),
        );
    }
    // The toolkit writes its own traces file back byte for byte; so do we.
    for file in [
        "standardized_data_all.csv",
        "workflow_profiling_report.txt",
        "all_requests_profiler_traces.json",
    ] {
        let oracle =
            read_maybe_gz(expected, file).unwrap_or_else(|| panic!("{name}: no expected {file}"));
        let mine = std::fs::read(ours.join(file)).unwrap();
        assert_text_equal(name, file, &oracle, &mine);
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
        let out = tempfile::tempdir().unwrap();
        analyze_file(&input_path(&case), out.path(), &config_of(&case))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_outputs_match(&name, &case.join("expected"), out.path());
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
