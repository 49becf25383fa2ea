//! Helpers shared by the integration tests: conformance cases and a tolerant JSON comparison
//! (the same rules as the shared `compare_json.py`).

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every conformance case folder, sorted by name.
pub fn cases() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases"))
        .expect("tests/fixtures/cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    assert!(
        !out.is_empty(),
        "no conformance cases in tests/fixtures/cases"
    );
    out
}

/// Reads `dir/name` or `dir/name.gz`, decompressing as needed.
pub fn read_maybe_gz(dir: &Path, name: &str) -> Option<Vec<u8>> {
    let plain = dir.join(name);
    if let Ok(b) = std::fs::read(&plain) {
        return Some(b);
    }
    let gz = std::fs::read(dir.join(format!("{name}.gz"))).ok()?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// The raw input file of a case (possibly gzip-compressed bytes).
pub fn case_input(case: &Path) -> Vec<u8> {
    for name in ["input.json", "input.json.gz"] {
        if let Ok(b) = std::fs::read(case.join(name)) {
            return b;
        }
    }
    panic!("{} has no input", case.display())
}

pub fn expected_json(case: &Path, name: &str) -> Option<Value> {
    read_maybe_gz(&case.join("expected"), name)
        .map(|b| serde_json::from_slice(&b).expect("expected JSON parses"))
}

/// Differences between an oracle value and ours: numbers within 1e-9 relative (1e-12 absolute),
/// `active_uuids` compared as multisets, everything else exactly.
pub fn json_diff(oracle: &Value, ours: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(oracle, ours, "", &mut out);
    out
}

fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    if out.len() >= 20 {
        return;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let tol = (1e-9 * x.abs().max(y.abs())).max(1e-12);
            if !((x - y).abs() <= tol || (x.is_nan() && y.is_nan())) {
                out.push(format!("{path}: oracle={x:?} ours={y:?}"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff(v, w, &format!("{path}/{k}"), out),
                    None => out.push(format!("{path}/{k}: missing in ours")),
                }
            }
            for k in y.keys() {
                if !x.contains_key(k) {
                    out.push(format!("{path}/{k}: extra in ours"));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if path.ends_with("/active_uuids") {
                let mut xs: Vec<String> = x.iter().map(Value::to_string).collect();
                let mut ys: Vec<String> = y.iter().map(Value::to_string).collect();
                xs.sort();
                ys.sort();
                if xs != ys {
                    out.push(format!("{path}: multiset differs"));
                }
                return;
            }
            if x.len() != y.len() {
                out.push(format!(
                    "{path}: length oracle={} ours={}",
                    x.len(),
                    y.len()
                ));
            }
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            if a != b {
                let s = |v: &Value| v.to_string().chars().take(80).collect::<String>();
                out.push(format!("{path}: oracle={} ours={}", s(a), s(b)));
            }
        }
    }
}

/// Asserts that `ours` equals the oracle's JSON under [`json_diff`].
pub fn assert_json_matches(case: &str, file: &str, oracle: &Value, ours: &Value) {
    let d = json_diff(oracle, ours);
    assert!(
        d.is_empty(),
        "{case}/{file}: {} difference(s):\n{}",
        d.len(),
        d.join("\n")
    );
}

/// Line-by-line diff summary for text outputs that must be byte-equal.
pub fn assert_text_equal(case: &str, file: &str, oracle: &[u8], ours: &[u8]) {
    if oracle == ours {
        return;
    }
    let o = String::from_utf8_lossy(oracle);
    let u = String::from_utf8_lossy(ours);
    let first = o
        .lines()
        .zip(u.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("line {}:\n  oracle: {a:.200}\n  ours:   {b:.200}", i + 1))
        .unwrap_or_else(|| {
            format!(
                "lengths differ: oracle {} bytes, ours {} bytes",
                oracle.len(),
                ours.len()
            )
        });
    panic!("{case}/{file} differs at {first}");
}
/// A step: event type, timestamp and UUID; LLM events name the model `m`, others the tool `t`.
/// The prompt text names the UUID so that calls' prompts differ.
pub fn step(et: &str, ts: f64, uuid: &str) -> Value {
    let name = if et.starts_with("LLM") { "m" } else { "t" };
    serde_json::json!({"function_ancestry": {"function_id": "f", "function_name": "agent", "parent_id": "root", "parent_name": "root"},
           "payload": {"event_type": et, "event_timestamp": ts, "UUID": uuid, "name": name,
                       "data": {"input": format!("prompt {uuid}"), "output": "out"},
                       "usage_info": {"token_usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}}})
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A case's profiler settings (`agentprof_config.json`), as JSON; `{}` when it has none.
pub fn case_config(case: &Path) -> Value {
    std::fs::read(case.join("agentprof_config.json"))
        .map(|b| serde_json::from_slice(&b).expect("agentprof_config.json is JSON"))
        .unwrap_or_else(|_| serde_json::json!({}))
}

/// The files of the toolkit's that the conformance tests compare, with the API path serving each.
pub const OUTPUT_FILES: [(&str, &str); 8] = [
    ("inference_optimization.json", "metrics"),
    ("workflow_profiling_metrics.json", "profiling"),
    ("all_requests_profiler_traces.json", "requests"),
    ("prediction_trie.json", "prediction_trie"),
    ("profiler_results.json", "profiler_results"),
    ("standardized_data_all.csv", "standardized.csv"),
    ("workflow_profiling_report.txt", "report"),
    ("workflow_output_atif.json", "atif"),
];

/// Each toolkit dialect a case has the toolkit's own files for, with their folder.
pub fn case_dialects(case: &Path) -> Vec<(agentprof::profiler::Dialect, PathBuf)> {
    use agentprof::profiler::Dialect;
    let mut out = Vec::new();
    if case.join("expected").is_dir() {
        out.push((Dialect::Aiq11, case.join("expected")));
    }
    // A profile of what nat eval wrote with its default step filter cannot equal the profile it
    // made in memory from every step; such a case says so in this file.
    if case.join("expected_nat").is_dir() && !case.join("agentprof_profile_differs.txt").exists() {
        out.push((Dialect::Nat19, case.join("expected_nat")));
    }
    out
}

/// Parts of the toolkit's files agentprof differs from on purpose for a case's settings.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// `prefix_span_analysis.min_support` given as a number of 1 or more: agentprof reads a
    /// count where the toolkit reads a fraction (docs/deviations.md#d7).
    pub prefix_span: bool,
}

pub fn known_deviations(config: &agentprof::profiler::ProfilerConfig) -> Known {
    let ms = config.prefix_span_analysis.min_support;
    Known {
        prefix_span: config.prefix_span_analysis.enable && ms.from_user && ms.value >= 1.0,
    }
}

/// Compares every file the toolkit wrote in `expected` (plus nat eval's ATIF file next to a
/// case's input, in nat-1.9) with ours: JSON within 1e-9, the CSV, the report and the traces
/// file byte for byte. `ours(file)` gives our bytes of that file.
pub fn compare_outputs(
    name: &str,
    case: &Path,
    dialect: agentprof::profiler::Dialect,
    expected: &Path,
    known: Known,
    ours: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> usize {
    let mut compared = 0;
    let mine = |file: &str| ours(file).unwrap_or_else(|| panic!("{name}: we wrote no {file}"));
    for file in [
        "inference_optimization.json",
        "workflow_profiling_metrics.json",
        "all_requests_profiler_traces.json",
        "prediction_trie.json",
        "profiler_results.json",
    ] {
        let Some(oracle) = read_maybe_gz(expected, file) else {
            continue;
        };
        let mut oracle: Value = serde_json::from_slice(&oracle).unwrap();
        let mut ours: Value = serde_json::from_slice(&mine(file)).unwrap();
        if file == "prediction_trie.json" {
            // The toolkit writes the wall clock; agentprof the time of the last step.
            oracle["generated_at"] = Value::Null;
            ours["generated_at"] = Value::Null;
        }
        if known.prefix_span && file == "workflow_profiling_metrics.json" {
            oracle["prefix_span_analysis"] = Value::Null;
            ours["prefix_span_analysis"] = Value::Null;
        }
        assert_json_matches(name, file, &oracle, &ours);
        compared += 1;
    }
    let mut texts = vec![
        (expected.to_owned(), "standardized_data_all.csv"),
        (expected.to_owned(), "workflow_profiling_report.txt"),
        (expected.to_owned(), "all_requests_profiler_traces.json"),
    ];
    if dialect == agentprof::profiler::Dialect::Nat19 {
        texts.push((case.to_owned(), "workflow_output_atif.json"));
    }
    for (dir, file) in texts {
        let Some(mut oracle) = read_maybe_gz(&dir, file) else {
            assert!(
                file == "workflow_output_atif.json",
                "{name}: no expected {file}"
            );
            continue;
        };
        let mut ours = mine(file);
        if known.prefix_span && file == "workflow_profiling_report.txt" {
            // PrefixSpan's section is the report's last.
            for text in [&mut oracle, &mut ours] {
                let at = String::from_utf8_lossy(text)
                    .rfind("\n\n\n")
                    .expect("a report has sections");
                text.truncate(at);
            }
        }
        assert_text_equal(name, file, &oracle, &ours);
        compared += 1;
    }
    compared
}

pub mod app;
pub mod process;

/// Per model, the LLM calls of a document in the profiler form and their `[calls, prompt, cached,
/// completion]` tokens, summed straight from its LLM_END steps (apart from the server's code).
pub fn tokens_by_model(doc: &Value) -> BTreeMap<String, [i64; 4]> {
    let mut out: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    for req in doc.as_array().unwrap() {
        for step in req["intermediate_steps"].as_array().unwrap() {
            let p = &step["payload"];
            if p["event_type"] != "LLM_END" {
                continue;
            }
            let t = &p["usage_info"]["token_usage"];
            let e = out
                .entry(p["name"].as_str().unwrap().to_owned())
                .or_default();
            e[0] += 1;
            e[1] += t["prompt_tokens"].as_i64().unwrap_or(0);
            e[2] += t["cached_tokens"].as_i64().unwrap_or(0);
            e[3] += t["completion_tokens"].as_i64().unwrap_or(0);
        }
    }
    out
}

/// Rewrites every step stored at `$pool` into the columns the store wrote before compact steps,
/// as the old store wrote them (its text columns and rendered body, `packed` NULL): the
/// database a previous release left. Returns how many steps it rewrote.
#[macro_export]
macro_rules! unpack_all {
    ($pool:expr) => {{
        let rows: Vec<(uuid::Uuid, i32, i64, Vec<u8>)> =
            sqlx::query_as("SELECT run_id, request_number, seq, packed FROM steps")
                .fetch_all($pool)
                .await
                .unwrap();
        for (run, number, seq, value) in &rows {
            let unpacked = agentprof::store::packed::Unpacked::of(
                value,
                &agentprof::store::packed::Dictionaries::default(),
            )
            .unwrap();
            let c: agentprof::profiler::StepColumns = unpacked.columns().unwrap();
            let a = c.ancestry.as_ref();
            sqlx::query(
                "UPDATE steps SET packed = NULL, uuid = $4, name = $5, framework = $6, \
                 function_name = $7, function_id = $8, parent_name = $9, parent_id = $10, \
                 seconds_between_calls = $11, text_value = $12, step_parent_id = $13, body = $14, \
                 event_timestamp = $15, span_event_timestamp = $16, prompt_tokens = $17, \
                 completion_tokens = $18, total_tokens = $19, cached_tokens = $20 \
                 WHERE run_id = $1 AND request_number = $2 AND seq = $3",
            )
            .bind(run)
            .bind(number)
            .bind(seq)
            .bind(c.uuid.as_bytes())
            .bind(c.name.as_deref().map(str::as_bytes))
            .bind(c.framework.map(|f| f.code()))
            .bind(a.map(|a| a.function_name.as_bytes()))
            .bind(a.map(|a| a.function_id.as_bytes()))
            .bind(a.and_then(|a| a.parent_name.as_deref()).map(str::as_bytes))
            .bind(a.and_then(|a| a.parent_id.as_deref()).map(str::as_bytes))
            .bind(c.seconds_between_calls)
            .bind(c.text.as_deref().map(str::as_bytes))
            .bind(c.parent_id.as_deref().map(str::as_bytes))
            .bind(unpacked.body().unwrap())
            .bind(c.event_timestamp)
            .bind(c.span_event_timestamp)
            .bind(c.prompt_tokens)
            .bind(c.completion_tokens)
            .bind(c.total_tokens)
            .bind((c.cached_tokens != 0).then_some(c.cached_tokens))
            .execute($pool)
            .await
            .unwrap();
        }
        rows.len()
    }};
}
