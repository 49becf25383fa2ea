//! Evaluator scores per request: what an eval (`nat eval`'s evaluators) said of each request's
//! answer, so that the statistics and the run comparison cover quality next to latency and tokens.
//!
//! They arrive in the run's metadata, where the NeMo Agent Toolkit plugin puts them at the end of
//! an eval (docs/scores.md): `metadata.eval.items`, a list of `{"request": ..., "scores":
//! {"<evaluator>": <number>, ...}}`, `request` being the request's eval id (a string) or its
//! request number (an integer).

use crate::jsontext::ObjectJson;
use crate::profiler::core::frame::Frame;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// Evaluator -> request number -> score.
pub type RequestScores = BTreeMap<String, BTreeMap<i64, f64>>;

/// The part of the metadata the scores are in, read straight from its text: every other key
/// (an eval's config, anything a client put there) is skipped without being built.
#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    eval: Option<Eval<'a>>,
}

#[derive(Deserialize)]
struct Eval<'a> {
    #[serde(borrow, default)]
    items: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Item<'a> {
    /// The dataset item's id.
    #[serde(borrow, default)]
    id: Option<RequestRef<'a>>,
    #[serde(borrow, default)]
    request: Option<RequestRef<'a>>,
    #[serde(borrow, default)]
    scores: Option<BTreeMap<Cow<'a, str>, Score>>,
}

/// An item's `request`: its eval id or its number (read from its text, which a number's
/// arbitrary-precision form does not get in the way of).
enum RequestRef<'a> {
    Number(i64),
    Id(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for RequestRef<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RequestRef<'a>, D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        let text = raw.get();
        Ok(if text.starts_with('"') {
            serde_json::from_str::<Cow<'a, str>>(text).map_or(RequestRef::Other, RequestRef::Id)
        } else {
            serde_json::from_str::<i64>(text).map_or(RequestRef::Other, RequestRef::Number)
        })
    }
}

/// A score: a finite number counts; anything else is left out.
struct Score(Option<f64>);

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Score, D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        Ok(Score(
            serde_json::from_str::<f64>(raw.get())
                .ok()
                .filter(|x| x.is_finite()),
        ))
    }
}

/// `metadata.eval.items`, as their raw text, when they are there.
fn items_text(metadata: &ObjectJson) -> Option<&RawValue> {
    serde_json::from_str::<Metadata>(metadata.as_str())
        .ok()?
        .eval?
        .items
}

/// Each item's request and scores; an item of another shape, or items that are not a list, give
/// nothing.
fn items(metadata: &ObjectJson) -> Vec<Item<'_>> {
    items_text(metadata)
        .and_then(|raw| {
            // Items one at a time, so that one of another shape spoils only itself.
            serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok()
        })
        .into_iter()
        .flatten()
        .filter_map(|item| serde_json::from_str::<Item>(item.get()).ok())
        .collect()
}

/// Finds the request of the frame an item names (by eval id or by number).
struct Requests {
    by_id: HashMap<String, i64>,
    numbers: std::collections::HashSet<i64>,
}

impl Requests {
    fn of(frame: &Frame) -> Requests {
        Requests {
            by_id: frame
                .requests
                .iter()
                .filter_map(|r| Some((r.external_id.clone()?, r.number)))
                .collect(),
            numbers: frame.requests.iter().map(|r| r.number).collect(),
        }
    }

    fn find(&self, request: Option<&RequestRef<'_>>) -> Option<i64> {
        match request? {
            RequestRef::Id(id) => self.by_id.get(id.as_ref()).copied(),
            RequestRef::Number(n) => self.numbers.contains(n).then_some(*n),
            RequestRef::Other => None,
        }
    }
}

/// What an eval's items say of the run's requests, read in one pass over the metadata (which
/// may be megabytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalItems {
    /// Each evaluator's score of each request.
    pub scores: RequestScores,
    /// Each request's dataset item (its id as text; a number's JSON text): what pairs two evals
    /// of the same dataset.
    pub items: super::compare::ItemIds,
}

/// The eval's items in a run's metadata, for the requests the frame holds. Items naming no
/// request of the run, and scores that are not finite numbers, are left out; a request two
/// items claim under different ids is no item's.
pub fn of_eval(metadata: &ObjectJson, frame: &Frame) -> EvalItems {
    let requests = Requests::of(frame);
    let mut out = EvalItems::default();
    let mut ambiguous = Vec::new();
    for item in items(metadata) {
        let Some(number) = requests.find(item.request.as_ref()) else {
            continue;
        };
        let id = match item.id {
            Some(RequestRef::Id(id)) => Some(id.into_owned()),
            Some(RequestRef::Number(n)) => Some(n.to_string()),
            Some(RequestRef::Other) | None => None,
        };
        if let Some(id) = id
            && out
                .items
                .insert(number, id.clone())
                .is_some_and(|before| before != id)
        {
            ambiguous.push(number);
        }
        for (evaluator, score) in item.scores.into_iter().flatten() {
            if let Some(x) = score.0 {
                out.scores
                    .entry(evaluator.into_owned())
                    .or_default()
                    .insert(number, x);
            }
        }
    }
    for number in ambiguous {
        out.items.remove(&number);
    }
    out
}

/// The scores of [`of_eval`].
pub fn from_metadata(metadata: &ObjectJson, frame: &Frame) -> RequestScores {
    of_eval(metadata, frame).scores
}

/// An evaluator's scores over the run's eval items, for the run's view.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreSummary {
    /// Items with a score from this evaluator.
    pub n: usize,
    pub mean: f64,
}

/// Per evaluator, the count and mean of the scores in `metadata.eval.items` (the mean with a
/// compensated sum: scores are any finite numbers a client sends).
pub fn summary(metadata: &ObjectJson) -> BTreeMap<String, ScoreSummary> {
    let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for scores in items(metadata).into_iter().filter_map(|i| i.scores) {
        for (evaluator, score) in scores {
            if let Some(x) = score.0 {
                sums.entry(evaluator.into_owned()).or_default().push(x);
            }
        }
    }
    sums.into_iter()
        .map(|(k, xs)| {
            let summary = ScoreSummary {
                n: xs.len(),
                mean: crate::py::exact::mean(&xs).unwrap_or(f64::NAN),
            };
            (k, summary)
        })
        .collect()
}

/// What in the metadata the scores come from, for cache keys: outputs that read scores change
/// when they do.
pub fn fingerprint_source(metadata: &ObjectJson) -> Option<&str> {
    items_text(metadata).map(RawValue::get)
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
        let metadata = ObjectJson::from_map(
            json!({"eval": {"items": [
                {"request": "q2", "scores": {"accuracy": 1.0, "latency": 0.5}},
                {"request": 0, "scores": {"accuracy": 0.0, "note": "n/a"}},
                {"request": "gone", "scores": {"accuracy": 1.0}},
                {"scores": {"accuracy": 1.0}}
            ]}})
            .as_object()
            .unwrap(),
        );
        let scores = from_metadata(&metadata, &frame);
        assert_eq!(scores["accuracy"], BTreeMap::from([(0, 0.0), (1, 1.0)]));
        assert_eq!(scores["latency"], BTreeMap::from([(1, 0.5)]));
        assert!(!scores.contains_key("note"));
        assert!(from_metadata(&ObjectJson::empty(), &frame).is_empty());
        // The view counts every scored item, whether or not its request is known.
        let s = summary(&metadata);
        assert_eq!(s["accuracy"], ScoreSummary { n: 4, mean: 0.75 });
    }
}
