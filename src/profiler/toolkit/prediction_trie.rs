//! `prediction_trie.json` (nvidia-nat 1.9 only; docs/toolkit-semantics.md#prediction-trie): for
//! each place an LLM call was made from (the calling function under its parent) and each call
//! index there, what followed: how many calls remained in the request, how long until the next
//! LLM call started, how many tokens the call wrote, and how sensitive the workflow's latency
//! is to it.
//!
//! Only LLM_END steps are calls; means are Python's plain left-to-right `sum` divided by the
//! count, and percentiles nat's own interpolation ([`hand_linear_sorted`]).

use crate::profiler::core::config::PredictionTrieConfig;
use crate::profiler::core::frame::{Frame, Row, Rows, time_order};
use crate::py::percentile::hand_linear_sorted;
use crate::py::time::isoformat_utc;
use crate::trace::EventType;
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PredictionTrie {
    pub version: &'static str,
    /// The time of the run's last step. The toolkit writes the wall clock when it ran; the time
    /// of the data keeps the output deterministic (docs/deviations.md).
    pub generated_at: String,
    pub workflow_name: &'static str,
    pub root: TrieNode,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(no_recursion))]
pub struct TrieNode {
    pub name: String,
    /// Keyed by the call's index within its function's invocation (`"1"`, `"2"`, ...), ascending.
    pub predictions_by_call_index: IndexMap<String, Prediction>,
    /// Every call at this node, whatever its index.
    pub predictions_any_index: Option<Prediction>,
    /// Keyed by function name, in order of first appearance.
    pub children: IndexMap<String, TrieNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prediction {
    /// LLM calls after this one in the same request.
    pub remaining_calls: SampleStats,
    /// Milliseconds from this call's end to the start of the next LLM call.
    pub interarrival_ms: SampleStats,
    pub output_tokens: SampleStats,
    /// 1 to `sensitivity_scale`; null when sensitivity scoring is off.
    pub latency_sensitivity: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SampleStats {
    pub sample_count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
}

impl SampleStats {
    fn of(samples: &[f64]) -> SampleStats {
        if samples.is_empty() {
            return SampleStats {
                sample_count: 0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p95: 0.0,
            };
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        SampleStats {
            sample_count: samples.len(),
            mean: naive_mean(samples),
            p50: hand_linear_sorted(&sorted, 50.0),
            p90: hand_linear_sorted(&sorted, 90.0),
            p95: hand_linear_sorted(&sorted, 95.0),
        }
    }
}

/// Python 3.11's `sum(xs) / len(xs)`: one rounding per addition, left to right.
fn naive_mean(xs: &[f64]) -> f64 {
    xs.iter().fold(0.0, |acc, x| acc + x) / xs.len() as f64
}

/// One LLM call as the trie sees it.
struct CallContext<'f> {
    /// The calling function's parent name (when it has one) and the function's name.
    path: [Option<&'f str>; 2],
    call_index: usize,
    remaining: usize,
    interarrival_ms: Option<f64>,
    output_tokens: f64,
    duration: f64,
    /// From the request's first step to its last, whatever their types.
    workflow_duration: f64,
    span_start: f64,
    span_end: f64,
    slack: f64,
    sensitivity: f64,
}

/// The samples collected at one trie node, for one call index or for all.
#[derive(Default)]
struct Samples {
    remaining: Vec<f64>,
    interarrival: Vec<f64>,
    output_tokens: Vec<f64>,
    sensitivity: Vec<f64>,
}

impl Samples {
    fn add(&mut self, c: &CallContext, scored: bool) {
        self.remaining.push(c.remaining as f64);
        self.output_tokens.push(c.output_tokens);
        if let Some(ms) = c.interarrival_ms {
            self.interarrival.push(ms);
        }
        if scored {
            self.sensitivity.push(c.sensitivity);
        }
    }

    fn prediction(&self, config: &PredictionTrieConfig) -> Prediction {
        Prediction {
            remaining_calls: SampleStats::of(&self.remaining),
            interarrival_ms: SampleStats::of(&self.interarrival),
            output_tokens: SampleStats::of(&self.output_tokens),
            latency_sensitivity: sensitivity_level(&self.sensitivity, config),
        }
    }
}

#[derive(Default)]
struct Accumulator {
    by_index: BTreeMap<usize, Samples>,
    all: Samples,
}

pub fn build(frame: &Frame, config: &PredictionTrieConfig) -> PredictionTrie {
    let scored = config.auto_sensitivity;
    let mut nodes: IndexMap<Vec<&str>, Accumulator> = IndexMap::new();
    let mut order = Vec::new();
    for (_, rows) in frame.iter_requests() {
        time_order(rows, &mut order);
        let mut calls = call_contexts(rows, &order, config);
        if scored {
            score_sensitivity(&mut calls, config);
        }
        for call in &calls {
            let path: Vec<&str> = call.path.iter().flatten().copied().collect();
            for depth in 0..=path.len() {
                let acc = nodes.entry(path[..depth].to_vec()).or_default();
                acc.by_index
                    .entry(call.call_index)
                    .or_default()
                    .add(call, scored);
                acc.all.add(call, scored);
            }
        }
    }
    let mut root = TrieNode::new("root");
    for (path, acc) in &nodes {
        let node = path.iter().fold(&mut root, |node, name| {
            node.children
                .entry((*name).to_owned())
                .or_insert_with(|| TrieNode::new(name))
        });
        for (index, samples) in &acc.by_index {
            node.predictions_by_call_index
                .insert(index.to_string(), samples.prediction(config));
        }
        if !acc.all.remaining.is_empty() {
            node.predictions_any_index = Some(acc.all.prediction(config));
        }
    }
    let last = frame
        .rows()
        .iter()
        .map(|r| r.event_timestamp())
        .reduce(f64::max)
        .unwrap_or(0.0);
    PredictionTrie {
        version: "1.0",
        generated_at: isoformat_utc(last).unwrap_or_default(),
        workflow_name: "profiled_workflow",
        root,
    }
}

impl TrieNode {
    fn new(name: &str) -> TrieNode {
        TrieNode {
            name: name.to_owned(),
            predictions_by_call_index: IndexMap::new(),
            predictions_any_index: None,
            children: IndexMap::new(),
        }
    }
}

/// The function a step ran in, as nat sees it: a step without ancestry reads as the toolkit's
/// `N/A` placeholder.
fn ancestry(row: Row<'_>) -> (&str, &str, Option<&str>, Option<&str>) {
    match row.ancestry() {
        Some(a) => (
            a.function_id.as_str(),
            a.function_name.as_str(),
            a.parent_id.as_deref(),
            a.parent_name.as_deref(),
        ),
        None => ("N/A", "N/A", None, None),
    }
}

/// The LLM calls of one request (`order`: its rows in time order), as `_extract_llm_contexts`.
fn call_contexts<'f>(
    rows: Rows<'f>,
    order: &[usize],
    config: &PredictionTrieConfig,
) -> Vec<CallContext<'f>> {
    let workflow_duration = match (order.first(), order.last()) {
        (Some(&a), Some(&b)) if order.len() >= 2 => {
            rows.get(b).event_timestamp() - rows.get(a).event_timestamp()
        }
        _ => 0.0,
    };
    let starts: Vec<f64> = order
        .iter()
        .map(|&i| rows.get(i))
        .filter(|r| r.event_type() == EventType::LlmStart)
        .map(|r| r.event_timestamp())
        .collect();
    let ends: Vec<Row<'f>> = order
        .iter()
        .map(|&i| rows.get(i))
        .filter(|r| r.event_type() == EventType::LlmEnd)
        .collect();
    let siblings =
        (config.auto_sensitivity && config.w_parallel > 0.0).then(|| sibling_spans(rows));
    let mut per_function: std::collections::HashMap<&str, usize> = Default::default();
    let mut out = Vec::with_capacity(ends.len());
    for (i, &end) in ends.iter().enumerate() {
        let (function_id, function_name, parent_id, parent_name) = ancestry(end);
        let index = per_function.entry(function_id).or_insert(0);
        *index += 1;
        let ts = end.event_timestamp();
        // `starts` is in time order: the first start strictly after this end.
        let next = starts.partition_point(|s| *s <= ts);
        let slack = match (&siblings, end.span_event_timestamp()) {
            (Some(map), Some(start)) => {
                let by_function = parent_id.and_then(|p| map.get(p)).filter(|s| !s.is_empty());
                let by_span = || map.get(step_parent(end));
                by_function
                    .or_else(by_span)
                    .map_or(0.0, |sibs| parallel_slack(end.uuid(), start, ts, sibs))
            }
            _ => 0.0,
        };
        out.push(CallContext {
            path: [parent_name.filter(|p| !p.is_empty()), Some(function_name)],
            call_index: *index,
            remaining: ends.len() - i - 1,
            interarrival_ms: starts.get(next).map(|s| (s - ts) * 1000.0),
            output_tokens: end.completion_tokens() as f64,
            duration: end.span_event_timestamp().map_or(0.0, |s| ts - s),
            workflow_duration,
            span_start: end.span_event_timestamp().unwrap_or(0.0),
            span_end: ts,
            slack,
            sensitivity: 0.0,
        });
    }
    out
}

/// A step's parent span: its own `parent_id`, or for a step without one (aiq 1.1's schema), what
/// the toolkit's reader fills in: the parent function's id, or `root`.
fn step_parent(row: Row<'_>) -> &str {
    row.parent_id()
        .or_else(|| row.ancestry().and_then(|a| a.parent_id.as_deref()))
        .unwrap_or("root")
}

/// A completed span: its UUID, start and end.
type Span<'f> = (&'f str, f64, f64);

/// Completed LLM/TOOL/FUNCTION/SPAN spans by parent, in the order their STARTs first appear (in
/// input order; a UUID's last START and last END count).
fn sibling_spans(rows: Rows<'_>) -> IndexMap<&str, Vec<Span<'_>>> {
    let mut starts: IndexMap<&str, (f64, &str)> = IndexMap::new();
    let mut ends: std::collections::HashMap<&str, f64> = Default::default();
    for r in rows.iter() {
        use EventType::*;
        match r.event_type() {
            LlmStart | ToolStart | FunctionStart | SpanStart => {
                starts.insert(r.uuid(), (r.event_timestamp(), step_parent(r)));
            }
            LlmEnd | ToolEnd | FunctionEnd | SpanEnd => {
                ends.insert(r.uuid(), r.event_timestamp());
            }
            _ => {}
        }
    }
    let mut map: IndexMap<&str, Vec<Span>> = IndexMap::new();
    for (uuid, (start, parent)) in starts {
        if let Some(&end) = ends.get(uuid) {
            map.entry(parent).or_default().push((uuid, start, end));
        }
    }
    map
}

/// How much shorter this call is than the longest sibling it overlaps (0 when none does).
fn parallel_slack(uuid: &str, start: f64, end: f64, siblings: &[Span]) -> f64 {
    let duration = end - start;
    if duration <= 0.0 {
        return 0.0;
    }
    let longest = siblings
        .iter()
        .filter(|(u, s, e)| *u != uuid && start.max(*s) < end.min(*e))
        .fold(0.0f64, |m, (_, s, e)| m.max(e - s));
    if longest <= 0.0 {
        0.0
    } else {
        (1.0 - duration / longest).max(0.0)
    }
}

/// `_compute_sensitivity_scores`: a weighted mix of the call's share of the workflow's time, how
/// early it is (fan-out), how close to either end, minus a penalty for running in parallel;
/// min-max normalised over the request (0.5 for all when they tie).
fn score_sensitivity(calls: &mut [CallContext], config: &PredictionTrieConfig) {
    if calls.is_empty() {
        return;
    }
    // Logical positions: calls that overlap in time share a group.
    let mut by_start: Vec<usize> = (0..calls.len()).collect();
    by_start.sort_by(|a, b| calls[*a].span_start.total_cmp(&calls[*b].span_start));
    let mut group = vec![0usize; calls.len()];
    let (mut g, mut group_end) = (0usize, calls[by_start[0]].span_end);
    for &i in &by_start[1..] {
        if calls[i].span_start < group_end {
            group_end = group_end.max(calls[i].span_end);
        } else {
            g += 1;
            group_end = calls[i].span_end;
        }
        group[i] = g;
    }
    let groups = g + 1;
    let max_remaining = groups - 1;
    let mut sizes = vec![0usize; groups];
    for &x in &group {
        sizes[x] += 1;
    }
    let raw: Vec<f64> = calls
        .iter()
        .zip(&group)
        .map(|(c, &lp)| {
            let critical = if c.workflow_duration > 0.0 {
                (c.duration / c.workflow_duration).min(1.0)
            } else {
                1.0
            };
            let fanout = if max_remaining > 0 {
                (max_remaining - lp) as f64 / max_remaining as f64
            } else {
                0.0
            };
            let position = if groups > 1 {
                let p = lp as f64 / (groups - 1) as f64;
                (1.0 - p).max(p)
            } else {
                1.0
            };
            let mut penalty = c.slack;
            if sizes[lp] > 1 {
                let n = sizes[lp] as f64;
                penalty = (penalty + (n - 1.0) / n) / 2.0;
            }
            config.w_critical * critical + config.w_fanout * fanout + config.w_position * position
                - config.w_parallel * penalty
        })
        .collect();
    let lo = raw.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = hi - lo;
    for (c, r) in calls.iter_mut().zip(raw) {
        c.sensitivity = if range > 0.0 { (r - lo) / range } else { 0.5 };
    }
}

/// `1 + round(mean · (scale - 1))`, clamped to `1..=scale`; Python rounds half to even.
fn sensitivity_level(scores: &[f64], config: &PredictionTrieConfig) -> Option<i64> {
    if !config.auto_sensitivity || scores.is_empty() {
        return None;
    }
    let scale = config.sensitivity_scale;
    let level = (naive_mean(scores) * (scale - 1) as f64).round_ties_even() as i64 + 1;
    Some(level.min(scale).max(1))
}
