//! Step validation against pydantic 2.10 itself: `tests/fixtures/validation_matrix.json` holds
//! probe steps with the reference model's verdict and `model_dump()` (made by
//! `scripts/validation_matrix.py`). We must accept and reject the same steps and dump accepted
//! ones identically, except for the deliberate differences listed in `DEVIATIONS`.

mod common;

use agentprof::trace::{ParseOptions, TraceError, parse, parse_value};
use serde_json::{Value, json};

/// Probes where agentprof differs on purpose (README "Deliberate deviations").
const DEVIATIONS: &[(&str, &str)] = &[
    (
        "event_type/TTC_START_nat_only",
        "nvidia-nat's TTC events are accepted",
    ),
    (
        "framework/unknown",
        "the probe uses nvidia-nat's `autogen`, which is accepted",
    ),
    (
        "top_level/extra_parent_id_nat",
        "nvidia-nat's top-level parent_id is accepted and kept",
    ),
    (
        "event_timestamp/str_nan",
        "non-finite timestamps are rejected",
    ),
    (
        "event_timestamp/str_inf",
        "non-finite timestamps are rejected",
    ),
    (
        "event_timestamp/str_1e3",
        "timestamp strings must use plain decimal notation",
    ),
    (
        "event_timestamp/huge_int",
        "timestamps must lie within ±1e12 epoch seconds",
    ),
    (
        "usage_info/prompt_huge_int",
        "token counts beyond i64 are rejected",
    ),
    (
        "usage_info/extra_cached_tokens",
        "nvidia-nat's cached_tokens is kept in the dump",
    ),
];

fn segments(p: &str) -> Vec<&str> {
    p.split('/').filter(|s| !s.is_empty()).collect()
}

/// One pointer is a path prefix of the other (pydantic reports model-level errors at the
/// object, we at the field; it names union arms below the field, we stop at the field).
fn compatible(a: &str, b: &str) -> bool {
    let (a, b) = (segments(a), segments(b));
    a.iter().zip(&b).all(|(x, y)| x == y)
}

#[test]
fn agrees_with_pydantic() {
    let raw = std::fs::read(common::fixtures().join("validation_matrix.json")).unwrap();
    let probes: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    assert!(probes.len() > 100);
    let mut failures = Vec::new();
    for p in &probes {
        let name = p["name"].as_str().unwrap();
        if DEVIATIONS.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let result = parse_value(json!([[p["input"].clone()]]), &ParseOptions::default());
        let want_ok = p["ok"].as_bool().unwrap();
        match (result, want_ok) {
            (Ok(batch), true) => {
                let mut dump = serde_json::to_value(&batch.requests[0].steps[0]).unwrap();
                for key in p["nondeterministic"].as_array().unwrap() {
                    dump["payload"][key.as_str().unwrap()] = Value::Null;
                }
                if dump != p["dump"] {
                    failures.push(format!(
                        "{name}: dump differs\n  pydantic: {}\n  ours:     {dump}",
                        p["dump"]
                    ));
                }
            }
            (Err(TraceError::Invalid { errors, .. }), false) => {
                let ours: Vec<String> = errors
                    .iter()
                    .map(|e| e.path.trim_start_matches("/0/0").to_owned())
                    .collect();
                for loc in p["error_locs"].as_array().unwrap() {
                    let loc = loc.as_str().unwrap();
                    if !ours.iter().any(|o| compatible(o, loc)) {
                        failures.push(format!(
                            "{name}: pydantic rejects {loc:?}, we report {ours:?}"
                        ));
                    }
                }
            }
            (Ok(_), false) => failures.push(format!("{name}: pydantic rejects it, we accept it")),
            (Err(e), true) => {
                failures.push(format!("{name}: pydantic accepts it, we reject it: {e}"))
            }
            (Err(e), false) => failures.push(format!(
                "{name}: rejected, but not as a validation error: {e}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Steps read from text are first tried by a direct reader, which declines what the validator
/// must decide; a document parsed into a `Value` goes through the validator alone. Every probe
/// must come out the same both ways, accepted or rejected, error for error.
#[test]
fn text_and_parsed_documents_read_every_probe_alike() {
    let raw = std::fs::read(common::fixtures().join("validation_matrix.json")).unwrap();
    let probes: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    let opts = ParseOptions {
        now: 1_748_779_000.5,
        ..ParseOptions::default()
    };
    let mut accepted = 0;
    for p in &probes {
        let doc = json!([[p["input"].clone()]]);
        let from_text = parse(doc.to_string().as_bytes(), &opts);
        let from_value = parse_value(doc, &opts);
        match (&from_text, &from_value) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.requests, b.requests, "{}", p["name"]);
                accepted += 1;
            }
            (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", p["name"]),
            _ => panic!("{}: {from_text:?} against {from_value:?}", p["name"]),
        }
    }
    assert!(
        accepted > 50 && accepted < probes.len(),
        "{accepted} accepted"
    );
}

#[test]
fn truly_unknown_framework_is_rejected() {
    let r = parse_value(
        json!([[{"payload": {"event_type": "LLM_END", "framework": "haystack"}}]]),
        &ParseOptions::default(),
    );
    let Err(TraceError::Invalid { errors, .. }) = r else {
        panic!("accepted an unknown framework")
    };
    assert_eq!(errors[0].path, "/0/0/payload/framework");
}

#[test]
fn deviations_still_deviate() {
    // If one of these starts agreeing with pydantic, the list (and the README) is stale.
    let raw = std::fs::read(common::fixtures().join("validation_matrix.json")).unwrap();
    let probes: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    for (name, why) in DEVIATIONS {
        let p = probes
            .iter()
            .find(|p| p["name"] == *name)
            .unwrap_or_else(|| panic!("probe {name} missing"));
        let ours = parse_value(json!([[p["input"].clone()]]), &ParseOptions::default());
        let same_verdict = ours.is_ok() == p["ok"].as_bool().unwrap();
        let same_dump = ours
            .as_ref()
            .ok()
            .map(|b| serde_json::to_value(&b.requests[0].steps[0]).unwrap() == p["dump"])
            .unwrap_or(true);
        assert!(
            !(same_verdict && same_dump),
            "{name} no longer deviates ({why})"
        );
    }
}
