//! Evaluator scores per request: what an eval (`nat eval`'s evaluators) said of each request's
//! answer, so that the statistics and the run comparison cover quality next to latency and tokens.
//!
//! They arrive in the run's metadata, where the NeMo Agent Toolkit plugin puts them at the end of
//! an eval (docs/scores.md): `metadata.eval.items`, a list of `{"request": ..., "scores":
//! {"<evaluator>": <number>, ...}}`, `request` being the request's eval id (a string) or its
//! request number (an integer).

use crate::profiler::core::frame::Frame;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Evaluator -> request number -> score.
pub type RequestScores = BTreeMap<String, BTreeMap<i64, f64>>;

/// The scores in a run's metadata, for the requests the frame holds. Items naming no request of
/// the run, and scores that are not finite numbers, are left out.
pub fn from_metadata(metadata: &Value, frame: &Frame) -> RequestScores {
    let mut out = RequestScores::new();
    let Some(items) = metadata.pointer("/eval/items").and_then(Value::as_array) else {
        return out;
    };
    let by_id: HashMap<&str, i64> = frame
        .requests
        .iter()
        .filter_map(|r| Some((r.external_id.as_deref()?, r.number)))
        .collect();
    let numbers: std::collections::HashSet<i64> = frame.requests.iter().map(|r| r.number).collect();
    for item in items {
        let number = match item.get("request") {
            Some(Value::String(id)) => by_id.get(id.as_str()).copied(),
            Some(Value::Number(n)) => n.as_i64().filter(|n| numbers.contains(n)),
            _ => None,
        };
        let (Some(number), Some(scores)) = (number, item.get("scores").and_then(Value::as_object))
        else {
            continue;
        };
        for (evaluator, score) in scores {
            if let Some(x) = score.as_f64().filter(|x| x.is_finite()) {
                out.entry(evaluator.clone()).or_default().insert(number, x);
            }
        }
    }
    out
}

/// An evaluator's scores over the run's eval items, for the run's view.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreSummary {
    /// Items with a score from this evaluator.
    pub n: usize,
    pub mean: f64,
}

/// Per evaluator, the count and mean of the scores in `metadata.eval.items`.
pub fn summary(metadata: &Value) -> BTreeMap<String, ScoreSummary> {
    let mut sums: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    let items = metadata.pointer("/eval/items").and_then(Value::as_array);
    for scores in items
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("scores")?.as_object())
    {
        for (evaluator, score) in scores {
            if let Some(x) = score.as_f64().filter(|x| x.is_finite()) {
                let e = sums.entry(evaluator.clone()).or_default();
                e.0 += 1;
                e.1 += x;
            }
        }
    }
    sums.into_iter()
        .map(|(k, (n, total))| {
            (
                k,
                ScoreSummary {
                    n,
                    mean: total / n as f64,
                },
            )
        })
        .collect()
}

/// What in the metadata the scores come from, for cache keys: outputs that read scores change
/// when they do.
pub fn fingerprint_source(metadata: &Value) -> Option<&Value> {
    metadata.pointer("/eval/items")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::core::frame::FrameBuilder;
    use serde_json::json;

    #[test]
    fn items_find_their_requests_by_id_or_number() {
        // Two requests as the store reads them back: numbered, with their eval ids.
        let mut builder = FrameBuilder::default();
        builder.begin_request(0, Some("q1".to_owned()));
        builder.begin_request(1, Some("q2".to_owned()));
        let frame = builder.finish();
        let metadata = json!({"eval": {"items": [
            {"request": "q2", "scores": {"accuracy": 1.0, "latency": 0.5}},
            {"request": 0, "scores": {"accuracy": 0.0, "note": "n/a"}},
            {"request": "gone", "scores": {"accuracy": 1.0}},
            {"scores": {"accuracy": 1.0}}
        ]}});
        let scores = from_metadata(&metadata, &frame);
        assert_eq!(scores["accuracy"], BTreeMap::from([(0, 0.0), (1, 1.0)]));
        assert_eq!(scores["latency"], BTreeMap::from([(1, 0.5)]));
        assert!(!scores.contains_key("note"));
        assert!(from_metadata(&json!({}), &frame).is_empty());
        // The view counts every scored item, whether or not its request is known.
        let s = summary(&metadata);
        assert_eq!(s["accuracy"], ScoreSummary { n: 4, mean: 0.75 });
    }
}
