//! Per-minute rollups of a run: what a live run's trend charts read instead of its steps.
//!
//! Ingest adds each stored step's contribution to the rollup row of its minute in the same
//! transaction as the step, and retention subtracts the contributions of the steps it deletes,
//! so the rows always describe exactly the steps stored. A row is keyed by (minute, kind, name):
//! requests by the minute their first step happened, LLM, tool and workflow calls by the minute
//! their END step happened, per model, tool or workflow name.
//!
//! Latencies are kept as HdrHistograms (the `hdrhistogram` crate) at two significant digits:
//! any reported quantile is within 1% of a value of that rank. HdrHistogram is chosen over
//! DDSketch or t-digest because a histogram of counts can be *subtracted* exactly: deleting a
//! request takes its calls back out of the minute's sketch, which a merge-only sketch cannot do.
//! This module is pure: it turns steps into deltas and rows into series; the store moves them.

use crate::trace::EventType;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::Serialize;
use std::collections::BTreeMap;

/// Seconds per rollup row.
pub const MINUTE: i64 = 60;

/// Significant digits the latency sketches keep: 2 is a relative error of at most 1%.
pub const SKETCH_DIGITS: u8 = 2;

/// The longest name (model, tool, workflow) a rollup row keeps, in bytes: names are keys, and
/// a client's 64 KiB model name would otherwise be copied into every minute's row.
pub const MAX_NAME_BYTES: usize = 200;

/// Names (models, tools, workflows) one minute keeps rows for, per kind: the calls of any
/// further name are counted under [`OTHER`], so a client inventing a name per call grows the
/// rollups (and a series' buckets) by at most this many rows a minute.
pub const MAX_NAMES_PER_MINUTE: i64 = 64;

/// The name the calls of names past [`MAX_NAMES_PER_MINUTE`] are counted under.
pub const OTHER: &str = "(other)";

/// What a rollup row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Requests, by the minute of their first step (the same start a time window selects by).
    Requests = 0,
    /// LLM_END steps, per model.
    Llm = 1,
    /// TOOL_END steps, per tool.
    Tool = 2,
    /// WORKFLOW_END steps, per workflow.
    Workflow = 3,
}

impl Kind {
    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i16) -> Option<Kind> {
        [Kind::Requests, Kind::Llm, Kind::Tool, Kind::Workflow]
            .into_iter()
            .find(|k| k.code() == code)
    }

    /// The calls a step of this type ends, if any.
    fn of_end(event_type: EventType) -> Option<Kind> {
        match event_type {
            EventType::LlmEnd => Some(Kind::Llm),
            EventType::ToolEnd => Some(Kind::Tool),
            EventType::WorkflowEnd => Some(Kind::Workflow),
            _ => None,
        }
    }
}

/// The minute (Unix seconds / 60, rounded down) a time falls in; `None` for a time that is not
/// finite or lies outside what a minute number can hold.
pub fn minute_of(seconds: f64) -> Option<i64> {
    let m = (seconds / MINUTE as f64).floor();
    (m.is_finite() && m.abs() < 1e15).then_some(m as i64)
}

/// The rollup key of one row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub minute: i64,
    pub kind: Kind,
    /// The model, tool or workflow name (empty for requests and unnamed calls), cut to
    /// [`MAX_NAME_BYTES`] at a character boundary.
    pub name: String,
}

/// A latency sketch in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch(Histogram<u64>);

impl Default for Sketch {
    fn default() -> Self {
        // 2 significant digits are within HdrHistogram's supported 0..=5, and auto-resizing
        // takes any value: creating one cannot fail.
        let mut h = Histogram::new(SKETCH_DIGITS).expect("2 significant digits are supported");
        h.auto(true);
        Sketch(h)
    }
}

/// A sketch that could not be combined or read: the rows no longer describe the stored steps
/// and must be rebuilt from them.
#[derive(Debug, thiserror::Error)]
#[error("rollup sketch: {0}")]
pub struct SketchError(String);

impl Sketch {
    /// Records one latency in seconds (negative or non-finite ones are not latencies).
    pub fn record(&mut self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            let micros = (seconds * 1e6).round().min(u64::MAX as f64) as u64;
            // Auto-resizing histograms take any value.
            let _ = self.0.record(micros);
        }
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add(&mut self, other: &Sketch) -> Result<(), SketchError> {
        self.0
            .add(&other.0)
            .map_err(|e| SketchError(format!("{e:?}")))
    }

    /// Takes `other`'s values back out; fails when they were not all in this sketch.
    pub fn subtract(&mut self, other: &Sketch) -> Result<(), SketchError> {
        self.0
            .subtract(&other.0)
            .map_err(|e| SketchError(format!("{e:?}")))
    }

    /// The value at quantile `q` (0..=1), in seconds; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(q) as f64 / 1e6)
    }

    /// HdrHistogram's V2 encoding (counts run-length encoded: a few dozen bytes for a minute).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a vector cannot fail, and an auto-resized histogram always encodes.
        let _ = V2Serializer::new().serialize(&self.0, &mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Sketch, SketchError> {
        let mut h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| SketchError(format!("{e:?}")))?;
        h.auto(true);
        Ok(Sketch(h))
    }
}

/// One rollup row's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// Requests started, or calls ended.
    pub count: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub latency: Sketch,
}

impl Cell {
    pub fn is_empty(&self) -> bool {
        self.count == 0
            && self.prompt_tokens == 0
            && self.completion_tokens == 0
            && self.cached_tokens == 0
            && self.latency.is_empty()
    }

    /// Adds `other` (or, `removing`, takes it out).
    pub fn apply(&mut self, other: &Cell, removing: bool) -> Result<(), SketchError> {
        let sign = if removing { -1 } else { 1 };
        self.count = self.count.saturating_add(sign * other.count);
        self.prompt_tokens = self
            .prompt_tokens
            .saturating_add(sign * other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(sign * other.completion_tokens);
        self.cached_tokens = self
            .cached_tokens
            .saturating_add(sign * other.cached_tokens);
        if removing {
            self.latency.subtract(&other.latency)
        } else {
            self.latency.add(&other.latency)
        }
    }
}

/// What one stored step contributes to the rollups: the facts of an END step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepFacts<'a> {
    pub event_type: EventType,
    pub event_timestamp: f64,
    pub span_event_timestamp: Option<f64>,
    pub name: Option<&'a str>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
}

/// Changes to a run's rollup rows, in key order (the order the store locks rows in).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub cells: BTreeMap<Key, Cell>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Counts a step: an END step adds a call of its kind, with its tokens (LLM) and its
    /// latency (END time minus the span's start, when the step carries it). Other steps count
    /// nothing here; requests are counted by [`Delta::request_moved`].
    pub fn step(&mut self, s: &StepFacts<'_>) {
        let Some(kind) = Kind::of_end(s.event_type) else {
            return;
        };
        let Some(minute) = minute_of(s.event_timestamp) else {
            return;
        };
        let cell = self
            .cells
            .entry(Key {
                minute,
                kind,
                name: short_name(s.name.unwrap_or("")),
            })
            .or_default();
        cell.count += 1;
        if kind == Kind::Llm {
            cell.prompt_tokens = cell.prompt_tokens.saturating_add(s.prompt_tokens);
            cell.completion_tokens = cell.completion_tokens.saturating_add(s.completion_tokens);
            cell.cached_tokens = cell.cached_tokens.saturating_add(s.cached_tokens);
        }
        if let Some(start) = s.span_event_timestamp {
            cell.latency.record(s.event_timestamp - start);
        }
    }

    /// A request as it is counted: one in the minute it starts in (`None`: no steps, none).
    /// Added, that counts it; removed (a deleted request), that takes it back out.
    pub fn request_counted(&mut self, start: Option<f64>) {
        self.request_moved(None, start);
    }

    /// A request's start went from `before` to `after` (`None`: no steps): it leaves the
    /// minute it was counted in and is counted in its new one.
    pub fn request_moved(&mut self, before: Option<f64>, after: Option<f64>) {
        let (b, a) = (before.and_then(minute_of), after.and_then(minute_of));
        if b == a {
            return;
        }
        for (minute, n) in [(b, -1), (a, 1)] {
            if let Some(minute) = minute {
                let key = Key {
                    minute,
                    kind: Kind::Requests,
                    name: String::new(),
                };
                self.cells.entry(key).or_default().count += n;
            }
        }
        self.cells.retain(|_, c| !c.is_empty());
    }
}

/// `name` cut to at most [`MAX_NAME_BYTES`] at a character boundary.
fn short_name(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// The latency quantiles a series bucket reports, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// Calls the quantiles are of (those whose END step gave their start).
    pub count: u64,
}

impl Quantiles {
    fn of(s: &Sketch) -> Option<Quantiles> {
        Some(Quantiles {
            p50: s.quantile(0.5)?,
            p90: s.quantile(0.9)?,
            p99: s.quantile(0.99)?,
            count: s.len(),
        })
    }
}

/// One model's figures in a bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelFigures {
    pub calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
}

/// One bucket of a series: what happened in `[start, start + step)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bucket {
    /// Unix seconds.
    pub start: i64,
    /// Requests whose first step is in the bucket.
    pub requests: i64,
    /// LLM_END steps in the bucket.
    pub llm_calls: i64,
    /// TOOL_END steps in the bucket.
    pub tool_calls: i64,
    /// WORKFLOW_END steps in the bucket.
    pub workflows: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    /// `null` when no LLM call in the bucket has a known start.
    pub llm_latency: Option<Quantiles>,
    pub tool_latency: Option<Quantiles>,
    pub workflow_latency: Option<Quantiles>,
    /// Per model (LLM calls), by name.
    pub models: BTreeMap<String, ModelFigures>,
    /// Tool calls per tool, by name.
    pub tools: BTreeMap<String, i64>,
}

/// Builds a series' buckets from rollup rows read in minute order: `first_minute` up to (not
/// including) `end_minute`, `step_minutes` minutes each, every bucket present (empty ones zero)
/// so that charts keep their time axis. Only the current bucket's sketches are held, so a long
/// range costs its buckets' figures, not a sketch per bucket.
#[derive(Debug)]
pub struct SeriesBuilder {
    first: i64,
    end: i64,
    step: i64,
    out: Vec<Bucket>,
    /// The bucket `sketches` belong to.
    current: usize,
    sketches: [Sketch; 3],
}

impl SeriesBuilder {
    pub fn new(first_minute: i64, end_minute: i64, step_minutes: i64) -> SeriesBuilder {
        let step = step_minutes.max(1);
        // In 128 bits: bounds near the ends of i64 must not overflow.
        let span = (i128::from(end_minute) - i128::from(first_minute)).max(0);
        let n = usize::try_from((span + i128::from(step) - 1) / i128::from(step)).unwrap_or(0);
        let start = |i: usize| {
            let minute = i128::from(first_minute) + i as i128 * i128::from(step);
            i64::try_from(minute * i128::from(MINUTE)).unwrap_or(i64::MAX)
        };
        SeriesBuilder {
            first: first_minute,
            end: end_minute,
            step,
            out: (0..n)
                .map(|i| Bucket {
                    start: start(i),
                    ..Bucket::default()
                })
                .collect(),
            current: 0,
            sketches: Default::default(),
        }
    }

    /// How many buckets the series has.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Adds a row; rows come in minute order (an earlier one after a later is an error), rows
    /// outside the range are ignored.
    pub fn add(&mut self, key: Key, cell: &Cell) -> Result<(), SketchError> {
        if key.minute < self.first || key.minute >= self.end {
            return Ok(());
        }
        let i = usize::try_from(
            (i128::from(key.minute) - i128::from(self.first)) / i128::from(self.step),
        )
        .unwrap_or(0);
        if i < self.current {
            return Err(SketchError("rollup rows out of minute order".into()));
        }
        if i > self.current {
            self.close();
            self.current = i;
        }
        let Some(b) = self.out.get_mut(i) else {
            return Ok(());
        };
        let s = &mut self.sketches;
        match key.kind {
            Kind::Requests => b.requests += cell.count,
            Kind::Llm => {
                b.llm_calls += cell.count;
                b.prompt_tokens = b.prompt_tokens.saturating_add(cell.prompt_tokens);
                b.completion_tokens = b.completion_tokens.saturating_add(cell.completion_tokens);
                b.cached_tokens = b.cached_tokens.saturating_add(cell.cached_tokens);
                let m = b.models.entry(key.name).or_default();
                m.calls += cell.count;
                m.prompt_tokens = m.prompt_tokens.saturating_add(cell.prompt_tokens);
                m.completion_tokens = m.completion_tokens.saturating_add(cell.completion_tokens);
                m.cached_tokens = m.cached_tokens.saturating_add(cell.cached_tokens);
                s[0].add(&cell.latency)?;
            }
            Kind::Tool => {
                b.tool_calls += cell.count;
                *b.tools.entry(key.name).or_default() += cell.count;
                s[1].add(&cell.latency)?;
            }
            Kind::Workflow => {
                b.workflows += cell.count;
                s[2].add(&cell.latency)?;
            }
        }
        Ok(())
    }

    /// Writes the current bucket's quantiles and starts empty sketches; a bucket of many
    /// minutes keeps its [`MAX_NAMES_PER_MINUTE`] busiest names and counts the rest as
    /// [`OTHER`].
    fn close(&mut self) {
        let s = std::mem::take(&mut self.sketches);
        if let Some(b) = self.out.get_mut(self.current) {
            fold_names(
                &mut b.models,
                |m| m.calls,
                |into, m| {
                    into.calls += m.calls;
                    into.prompt_tokens = into.prompt_tokens.saturating_add(m.prompt_tokens);
                    into.completion_tokens =
                        into.completion_tokens.saturating_add(m.completion_tokens);
                    into.cached_tokens = into.cached_tokens.saturating_add(m.cached_tokens);
                },
            );
            fold_names(&mut b.tools, |n| *n, |into, n| *into += n);
            b.llm_latency = Quantiles::of(&s[0]);
            b.tool_latency = Quantiles::of(&s[1]);
            b.workflow_latency = Quantiles::of(&s[2]);
        }
    }

    pub fn finish(mut self) -> Vec<Bucket> {
        self.close();
        self.out
    }
}

/// Keeps the [`MAX_NAMES_PER_MINUTE`] entries of `names` with the most calls, adding the rest
/// into [`OTHER`] with `add`.
fn fold_names<T: Default>(
    names: &mut BTreeMap<String, T>,
    calls: impl Fn(&T) -> i64,
    add: impl Fn(&mut T, &T),
) {
    let cap = usize::try_from(MAX_NAMES_PER_MINUTE).unwrap_or(usize::MAX);
    if names.len() <= cap {
        return;
    }
    let mut ranked: Vec<(String, T)> = std::mem::take(names).into_iter().collect();
    // Busiest first; ties by name, so the answer does not depend on the order rows came in.
    ranked.sort_by(|a, b| calls(&b.1).cmp(&calls(&a.1)).then_with(|| a.0.cmp(&b.0)));
    let mut other = T::default();
    for (i, (name, figures)) in ranked.into_iter().enumerate() {
        if i < cap - 1 && name != OTHER {
            names.insert(name, figures);
        } else {
            add(&mut other, &figures);
        }
    }
    names.insert(OTHER.to_owned(), other);
}

/// A series' buckets from rows in any order (see [`SeriesBuilder`]).
pub fn buckets(
    rows: impl IntoIterator<Item = (Key, Cell)>,
    first_minute: i64,
    end_minute: i64,
    step_minutes: i64,
) -> Result<Vec<Bucket>, SketchError> {
    let mut rows: Vec<(Key, Cell)> = rows.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut series = SeriesBuilder::new(first_minute, end_minute, step_minutes);
    for (key, cell) in rows {
        series.add(key, &cell)?;
    }
    Ok(series.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llm(at: f64, took: f64, model: &str) -> StepFacts<'_> {
        StepFacts {
            event_type: EventType::LlmEnd,
            event_timestamp: at,
            span_event_timestamp: Some(at - took),
            name: Some(model),
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 2,
        }
    }

    #[test]
    fn sketch_quantiles_are_within_one_percent_of_the_exact_ranks() {
        let mut s = Sketch::default();
        let mut exact: Vec<f64> = (1..=10_000)
            .map(|i| 0.001 * f64::from(i).powf(1.3))
            .collect();
        for v in &exact {
            s.record(*v);
        }
        exact.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99] {
            let rank = ((q * exact.len() as f64).ceil() as usize).max(1) - 1;
            let want = exact[rank];
            let got = s.quantile(q).unwrap();
            assert!(
                (got - want).abs() <= want * 0.01 + 1e-6,
                "q={q}: {got} vs {want}"
            );
        }
        let back = Sketch::decode(&s.encode()).unwrap();
        assert_eq!(back.quantile(0.9), s.quantile(0.9));
        assert_eq!(back.len(), 10_000);
    }

    #[test]
    fn removing_what_was_added_leaves_nothing() {
        let mut all = Delta::default();
        all.step(&llm(120.5, 1.0, "m"));
        all.step(&llm(121.0, 2.0, "m"));
        let mut one = Delta::default();
        one.step(&llm(121.0, 2.0, "m"));
        let key = all.cells.keys().next().unwrap().clone();
        let mut cell = all.cells[&key].clone();
        cell.apply(&one.cells[&key], true).unwrap();
        assert_eq!(cell.count, 1);
        assert_eq!(cell.prompt_tokens, 10);
        assert_eq!(cell.latency.len(), 1);
        assert!((cell.latency.quantile(0.5).unwrap() - 1.0).abs() < 0.01);
        let mut other = Delta::default();
        other.step(&llm(120.5, 1.0, "m"));
        cell.apply(&other.cells[&key], true).unwrap();
        assert!(cell.is_empty());
        let mut empty = Cell::default();
        assert!(empty.apply(&one.cells[&key], true).is_err());
    }

    #[test]
    fn requests_move_between_minutes() {
        let mut d = Delta::default();
        d.request_moved(None, Some(130.0));
        d.request_moved(Some(130.0), Some(100.0));
        d.request_moved(Some(100.0), Some(110.0));
        let counts: Vec<(i64, i64)> = d.cells.iter().map(|(k, c)| (k.minute, c.count)).collect();
        assert_eq!(counts, vec![(1, 1)]);
    }

    #[test]
    fn buckets_sum_rows_and_fill_gaps() {
        let mut d = Delta::default();
        d.step(&llm(60.0, 0.5, "a"));
        d.step(&llm(200.0, 0.5, "b"));
        d.request_moved(None, Some(61.0));
        let long = "é".repeat(150);
        d.step(&StepFacts {
            event_type: EventType::ToolEnd,
            name: Some(&long),
            ..llm(250.0, 0.1, "")
        });
        let b = buckets(d.cells.clone(), 1, 5, 2).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].start, b[0].requests, b[0].llm_calls), (60, 1, 1));
        assert_eq!((b[1].start, b[1].llm_calls, b[1].tool_calls), (180, 1, 1));
        assert_eq!(b[1].models["b"].prompt_tokens, 10);
        assert_eq!(b[1].tools.keys().next().unwrap().len(), 200);
        assert!(b[0].tool_latency.is_none());
        assert_eq!(b[0].llm_latency.unwrap().count, 1);
    }

    #[test]
    fn a_bucket_keeps_its_busiest_names() {
        let mut d = Delta::default();
        let names: Vec<String> = (0..100).map(|i| format!("model-{i:03}")).collect();
        for (i, name) in names.iter().enumerate() {
            // model-099 has the most calls, model-000 the fewest.
            for _ in 0..=i {
                d.step(&llm(60.0, 0.5, name));
            }
        }
        let b = &buckets(d.cells, 1, 2, 1).unwrap()[0];
        assert_eq!(b.models.len(), MAX_NAMES_PER_MINUTE as usize);
        assert!(b.models.contains_key("model-099") && !b.models.contains_key("model-000"));
        let calls: i64 = b.models.values().map(|m| m.calls).sum();
        assert_eq!(calls, b.llm_calls);
        assert_eq!(calls, 100 * 101 / 2);
    }
}
