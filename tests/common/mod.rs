//! Helpers shared by the integration tests: conformance cases and a tolerant JSON comparison
//! (the same rules as the shared `compare_json.py`).

#![allow(dead_code)]

use serde_json::Value;
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

pub mod app;
pub mod process;
