//! Every case in tests/fixtures/cases, run through `agentprof analyze` (the library function the
//! CLI calls) in each toolkit dialect the case has the toolkit's own files for, and compared with
//! them: `expected/` (aiqtoolkit 1.1.0, dialect aiq-1.1) and `expected_nat/` (nvidia-nat 1.9.0,
//! dialect nat-1.9).

mod common;

use agentprof::analyze::{AnalyzeOptions, analyze_file};
use agentprof::profiler::{Dialect, ProfilerConfig};
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

#[test]
fn every_case_matches_the_toolkit_it_names() {
    let (mut aiq, mut nat) = (0, 0);
    for case in cases() {
        let config = config_of(&case);
        for (dialect, expected) in case_dialects(&case) {
            let name = format!("{}[{dialect}]", case.file_name().unwrap().to_string_lossy());
            let out = tempfile::tempdir().unwrap();
            let options = AnalyzeOptions {
                prices: Default::default(),
                config: config.clone(),
                dialect: Some(dialect),
                ..AnalyzeOptions::default()
            };
            let summary = analyze_file(&input_path(&case), out.path(), &options)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let known = known_deviations(&config);
            let files = compare_outputs(&name, &case, dialect, &expected, known, &|file| {
                std::fs::read(out.path().join(file)).ok()
            });
            assert!(files >= 6, "{name}: only {files} files compared");
            if known.prefix_span {
                assert!(
                    summary.warnings.iter().any(|w| w.contains("min_support")),
                    "{name}: the min_support reading is not explained: {:?}",
                    summary.warnings
                );
            }
            match dialect {
                Dialect::Aiq11 => aiq += 1,
                Dialect::Nat19 => nat += 1,
            }
        }
    }
    assert!(
        aiq >= 13 && nat >= 17,
        "expected the cases in both dialects, found {aiq} aiq-1.1 and {nat} nat-1.9"
    );
}

/// A `workflow_output.json` written with nat eval's default step filter holds only LLM_END and
/// TOOL_END steps; analyzing it says why its numbers differ from the eval's own profile.
#[test]
fn an_eval_file_with_the_default_filter_is_explained() {
    for case in cases() {
        if !case.join("agentprof_profile_differs.txt").exists() {
            continue;
        }
        let out = tempfile::tempdir().unwrap();
        let summary =
            analyze_file(&input_path(&case), out.path(), &AnalyzeOptions::default()).unwrap();
        assert!(
            summary
                .warnings
                .iter()
                .any(|w| w.contains("workflow_output_step_filter")),
            "{}: {:?}",
            case.display(),
            summary.warnings
        );
    }
}

/// Without `--toolkit`, nat 1.9's step schema selects nat-1.9 and anything else aiq-1.1.
#[test]
fn the_steps_choose_the_dialect() {
    for (case, want) in [
        ("small_5", Dialect::Aiq11),
        ("nat_chat_8", Dialect::Nat19),
        ("realnat_react_12", Dialect::Nat19),
    ] {
        let dir = fixtures().join("cases").join(case);
        let out = tempfile::tempdir().unwrap();
        let summary =
            analyze_file(&input_path(&dir), out.path(), &AnalyzeOptions::default()).unwrap();
        assert_eq!(
            (summary.dialect, summary.dialect_detected),
            (want, true),
            "{case}"
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
