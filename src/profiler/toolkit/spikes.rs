//! Concurrency spike analysis (docs/toolkit-semantics.md#concurrency-spikes): time spent at each concurrency level, the
//! timeline segments at or above a threshold with the calls active in each, token averages over
//! those calls, and mean call latency by the concurrency at each call's midpoint.
//!
//! The reference scans every call for every spike segment, which is quadratic (B15). We sweep the
//! segments in time order with the calls sorted by start and a heap of active calls by end, and
//! keep the token sums and the distinct-UUID count of the active set as it changes, so the cost is
//! O(n log n) plus the size of the output itself.
//!
//! That output is quadratic too: D nested calls make D segments listing up to D UUIDs each (a
//! 1 MB upload of nested spans could make hundreds of megabytes). So the UUID lists together take
//! at most a fixed number of bytes of JSON ([`OutputLimits::spike_uuid_bytes`], 40 MiB unless
//! configured), given out in time order: far more than a realistic run lists (a 1,000-request eval
//! at 37 concurrent calls lists about 20 MB), and bounded whatever a client sends. An interval
//! whose list was cut short carries its exact `active_calls`, and the analysis is marked
//! `truncated` (docs/deviations.md).

use crate::profiler::core::calltree::{CallForest, CallNode, level_at, segments};
use crate::py::npstats;
use crate::py::repr::fixed;
use indexmap::IndexMap;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpikeInterval<'a> {
    pub start_time: f64,
    pub end_time: f64,
    pub concurrency: i64,
    /// Distinct UUIDs of the calls overlapping the interval, in call-tree (DFS) order.
    pub active_uuids: Vec<&'a str>,
    /// How many distinct calls overlap the interval; present only when `active_uuids` was cut
    /// short by the output budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_calls: Option<usize>,
}

impl SpikeInterval<'_> {
    /// Distinct calls overlapping the interval, whether or not all are listed.
    pub fn active_call_count(&self) -> usize {
        self.active_calls.unwrap_or(self.active_uuids.len())
    }
}

/// What one listed UUID costs in `workflow_profiling_metrics.json`: its text, its quotes, the
/// comma and newline after it, and the ten spaces of indentation it sits at.
fn listed_bytes(uuid: &str) -> usize {
    uuid.len() + 14
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CorrelationStats {
    pub avg_prompt_tokens: f64,
    pub avg_total_tokens: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpikeAnalysis<'a> {
    /// Seconds at each level, keyed in first-seen time order (JSON keys are strings).
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, f64>))]
    pub concurrency_distribution: IndexMap<i64, f64>,
    pub p50_concurrency: f64,
    pub p90_concurrency: f64,
    pub p95_concurrency: f64,
    pub p99_concurrency: f64,
    pub spike_threshold: i64,
    pub spike_intervals: Vec<SpikeInterval<'a>>,
    pub correlation_stats: CorrelationStats,
    /// Mean call duration per concurrency level (JSON keys are strings).
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, f64>))]
    pub average_latency_by_concurrency: IndexMap<i64, f64>,
    /// Present (and true) only when some interval's `active_uuids` was cut short.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(skip)]
    pub textual_report: String,
}

/// The analysis, its UUID lists taking at most `uuid_bytes` bytes of JSON in all.
pub fn analyze<'a>(
    forest: &CallForest<'a>,
    spike_threshold: i64,
    uuid_bytes: usize,
) -> SpikeAnalysis<'a> {
    let mut budget = uuid_bytes;
    let order = forest.dfs_order();
    let segs = segments(forest, &order);

    let mut dist: IndexMap<i64, f64> = IndexMap::new();
    for s in &segs {
        *dist.entry(s.level).or_insert(0.0) += s.end - s.start;
    }
    let total_time: f64 = dist.values().fold(0.0, |acc, v| acc + v);
    let pct = |p: f64| percentile_level(&dist, total_time, p);
    let (p50, p90, p95, p99) = (pct(50.0), pct(90.0), pct(95.0), pct(99.0));

    // Sweep: spike segments are disjoint and ascending in time.
    let mut position = vec![usize::MAX; forest.nodes.len()];
    for (i, &n) in order.iter().enumerate() {
        position[n] = i;
    }
    let mut by_start: Vec<usize> = order.clone();
    by_start.sort_by(|a, b| forest.nodes[*a].start.total_cmp(&forest.nodes[*b].start));
    let mut next = 0;
    let mut active: BTreeMap<usize, usize> = BTreeMap::new();
    let mut active_tokens = TokenSums::default();
    let mut active_uuids: FxHashMap<&str, u32> = FxHashMap::default();
    let mut ends: BinaryHeap<(Reverse<OrdF64>, usize)> = BinaryHeap::new();
    let mut spike_tokens = TokenSums::default();
    let mut spike_intervals = Vec::new();
    let mut truncated = false;
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    for s in segs
        .iter()
        .filter(|s| s.level >= spike_threshold && s.end > s.start)
    {
        while next < by_start.len() && forest.nodes[by_start[next]].start < s.end {
            let n = by_start[next];
            let node = &forest.nodes[n];
            active.insert(position[n], n);
            active_tokens.add(node, 1);
            *active_uuids.entry(node.uuid).or_insert(0) += 1;
            ends.push((Reverse(OrdF64(node.end)), n));
            next += 1;
        }
        while let Some((Reverse(OrdF64(end)), n)) = ends.peek().copied() {
            if end > s.start {
                break;
            }
            ends.pop();
            let node = &forest.nodes[n];
            active.remove(&position[n]);
            active_tokens.add(node, -1);
            if let Some(count) = active_uuids.get_mut(node.uuid) {
                *count -= 1;
                if *count == 0 {
                    active_uuids.remove(node.uuid);
                }
            }
        }
        spike_tokens.accumulate(&active_tokens);
        let distinct = active_uuids.len();
        seen.clear();
        let mut uuids = Vec::with_capacity(distinct.min(budget / 16));
        for &n in active.values() {
            let uuid = forest.nodes[n].uuid;
            if seen.contains(uuid) {
                continue;
            }
            let Some(left) = budget.checked_sub(listed_bytes(uuid)) else {
                break;
            };
            budget = left;
            seen.insert(uuid);
            uuids.push(uuid);
        }
        let cut = uuids.len() < distinct;
        truncated |= cut;
        spike_intervals.push(SpikeInterval {
            start_time: s.start,
            end_time: s.end,
            concurrency: s.level,
            active_uuids: uuids,
            active_calls: cut.then_some(distinct),
        });
    }
    let correlation_stats = CorrelationStats {
        avg_prompt_tokens: spike_tokens.prompt.mean(),
        avg_total_tokens: spike_tokens.total.mean(),
    };

    let mut by_level: IndexMap<i64, Vec<f64>> = IndexMap::new();
    for &n in &order {
        let node = &forest.nodes[n];
        let level = if node.start >= node.end {
            0
        } else {
            level_at(&segs, 0.5 * (node.start + node.end)).unwrap_or(0)
        };
        by_level.entry(level).or_default().push(node.duration);
    }
    let average_latency_by_concurrency: IndexMap<i64, f64> = by_level
        .into_iter()
        .map(|(l, d)| (l, npstats::mean(&d).unwrap_or(0.0)))
        .collect();

    let mut a = SpikeAnalysis {
        concurrency_distribution: dist,
        p50_concurrency: p50,
        p90_concurrency: p90,
        p95_concurrency: p95,
        p99_concurrency: p99,
        spike_threshold,
        spike_intervals,
        correlation_stats,
        average_latency_by_concurrency,
        truncated,
        textual_report: String::new(),
    };
    a.textual_report = report(&a, order.len(), total_time);
    a
}

/// `find_percentile_concurrency`: note the threshold is `p * 0.01 * total`, not the nested
/// analysis' `total * (p / 100)`, which rounds differently.
fn percentile_level(dist: &IndexMap<i64, f64>, total_time: f64, p: f64) -> f64 {
    if total_time <= 0.0 {
        return 0.0;
    }
    let mut levels: Vec<(i64, f64)> = dist.iter().map(|(l, d)| (*l, *d)).collect();
    levels.sort_by_key(|(l, _)| *l);
    let threshold = p * 0.01 * total_time;
    let mut accum = 0.0;
    let mut last = 0;
    for (level, dur) in levels {
        accum += dur;
        if accum >= threshold {
            return level as f64;
        }
        last = level;
    }
    last as f64
}

fn report(a: &SpikeAnalysis<'_>, num_calls: usize, total_time: f64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "=== Concurrency Spike Analysis ===\nTotal calls in dataset: {num_calls}\n\
         Total time observed: {} units (sum of concurrency timeline)\n\n-- Concurrency Distribution --",
        fixed(total_time, 2)
    );
    let mut levels: Vec<(&i64, &f64)> = a.concurrency_distribution.iter().collect();
    levels.sort_by_key(|(l, _)| **l);
    for (level, dur) in levels {
        let _ = write!(out, "\n  concurrency={level}: {} time", fixed(*dur, 2));
    }
    let _ = write!(
        out,
        "\n\nPercentiles => p50={}, p90={}, p95={}, p99={}\nSpike threshold chosen: {}\n\n-- Detected Spike Intervals --",
        fixed(a.p50_concurrency, 1),
        fixed(a.p90_concurrency, 1),
        fixed(a.p95_concurrency, 1),
        fixed(a.p99_concurrency, 1),
        a.spike_threshold
    );
    if a.spike_intervals.is_empty() {
        out.push_str("\nNo intervals exceed concurrency spike threshold.");
    }
    for (i, sp) in a.spike_intervals.iter().enumerate() {
        let _ = write!(
            out,
            "\n{}) {}-{}, concurrency={}, length={}, #active_calls={}",
            i + 1,
            fixed(sp.start_time, 2),
            fixed(sp.end_time, 2),
            sp.concurrency,
            fixed(sp.end_time - sp.start_time, 2),
            sp.active_call_count()
        );
    }
    if a.truncated {
        out.push_str(
            "\n(UUID lists truncated to keep the output linear in the number of calls; \
             the counts above are exact)",
        );
    }
    let _ = write!(
        out,
        "\n\n-- Correlation Stats for Spiked Calls --\nAvg prompt_tokens in spike calls: {}\n\
         Avg total_tokens in spike calls : {}\n\n-- Average Latency by Midpoint Concurrency --",
        fixed(a.correlation_stats.avg_prompt_tokens, 1),
        fixed(a.correlation_stats.avg_total_tokens, 1)
    );
    if a.average_latency_by_concurrency.is_empty() {
        out.push_str("\nNo calls or no concurrency data.");
    }
    let mut lat: Vec<(&i64, &f64)> = a.average_latency_by_concurrency.iter().collect();
    lat.sort_by_key(|(l, _)| **l);
    for (level, v) in lat {
        let _ = write!(
            out,
            "\n  concurrency={level} => avg_latency={}",
            fixed(*v, 2)
        );
    }
    out
}

/// Sums and counts of the positive token figures of a set of calls, as the reference averages
/// them (a call with 0 tokens is left out of the mean, not counted as 0).
#[derive(Debug, Default, Clone, Copy)]
struct TokenSums {
    prompt: SumCount,
    total: SumCount,
}

#[derive(Debug, Default, Clone, Copy)]
struct SumCount {
    sum: i128,
    n: i64,
}

impl SumCount {
    fn add(&mut self, value: i64, sign: i64) {
        if value > 0 {
            self.sum += i128::from(value) * i128::from(sign);
            self.n += sign;
        }
    }

    fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum as f64 / self.n as f64
        }
    }
}

impl TokenSums {
    /// Adds (`sign` 1) or removes (-1) a call's tokens.
    fn add(&mut self, node: &CallNode<'_>, sign: i64) {
        if let Some(row) = node.end_row {
            self.prompt.add(row.prompt_tokens(), sign);
            self.total.add(row.total_tokens(), sign);
        }
    }

    /// Adds every call of `active` once more: the reference counts a call once per spike
    /// interval it overlaps.
    fn accumulate(&mut self, active: &TokenSums) {
        for (mine, theirs) in [
            (&mut self.prompt, &active.prompt),
            (&mut self.total, &active.total),
        ] {
            mine.sum += theirs.sum;
            mine.n += theirs.n;
        }
    }
}

/// An `f64` ordered by `total_cmp`, for the heap of call end times.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::{frame_of, nested_calls};

    /// The reference's quadratic scan, for comparison.
    fn brute_active<'a>(forest: &CallForest<'a>, s: f64, e: f64) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for n in forest.dfs_order() {
            let node = &forest.nodes[n];
            let overlaps = !(node.end <= s || node.start >= e);
            if overlaps && !out.contains(&node.uuid) {
                out.push(node.uuid);
            }
        }
        out
    }

    #[test]
    fn sweep_equals_quadratic_scan() {
        let f = frame_of(&[
            vec![
                ("LLM_START", 0.0, "a"),
                ("TOOL_START", 0.5, "t"),
                ("TOOL_END", 0.7, "t"),
                ("LLM_END", 2.0, "a"),
            ],
            vec![
                ("LLM_START", 1.0, "b"),
                ("LLM_END", 3.0, "b"),
                ("TOOL_START", 3.0, "z"),
                ("TOOL_END", 3.0, "z"),
            ],
            vec![
                ("LLM_START", 1.5, "c"),
                ("LLM_END", 1.6, "c"),
                ("LLM_START", 4.0, "d"),
            ],
        ]);
        let forest = CallForest::build(&f, false);
        let a = analyze(&forest, 1, usize::MAX);
        assert!(!a.spike_intervals.is_empty());
        for sp in &a.spike_intervals {
            assert_eq!(
                sp.active_uuids,
                brute_active(&forest, sp.start_time, sp.end_time)
            );
        }
        assert_eq!(
            a.spike_intervals.iter().map(|s| s.concurrency).max(),
            Some(3)
        );
        let high = analyze(&forest, 3, usize::MAX);
        assert_eq!(high.spike_intervals.len(), 1);
    }

    #[test]
    fn uuid_lists_stop_at_the_budget_with_exact_counts() {
        // D nested calls: D spike segments listing up to D calls each.
        let f = nested_calls(40);
        let forest = CallForest::build(&f, false);
        let full = analyze(&forest, 1, usize::MAX);
        assert!(!full.truncated);
        let listed: usize = full
            .spike_intervals
            .iter()
            .map(|s| s.active_uuids.len())
            .sum();
        assert!(
            listed > 100,
            "the premise: more than the small budget below"
        );

        // Room for the first 100 entries the full analysis lists.
        let room: usize = full
            .spike_intervals
            .iter()
            .flat_map(|s| &s.active_uuids)
            .take(100)
            .map(|u| listed_bytes(u))
            .sum();
        let cut = analyze(&forest, 1, room);
        assert!(cut.truncated);
        let listed: usize = cut
            .spike_intervals
            .iter()
            .map(|s| s.active_uuids.len())
            .sum();
        assert_eq!(listed, 100);
        for (a, b) in full.spike_intervals.iter().zip(&cut.spike_intervals) {
            assert_eq!(a.active_call_count(), b.active_call_count());
            assert!(a.active_uuids.starts_with(&b.active_uuids));
            assert_eq!(
                b.active_calls.is_some(),
                b.active_uuids.len() < a.active_uuids.len()
            );
        }
        // Everything but the lists is unchanged, and the report still counts every call.
        assert_eq!(full.correlation_stats, cut.correlation_stats);
        assert_eq!(
            full.textual_report,
            cut.textual_report.replace(
                "\n(UUID lists truncated to keep the output linear in the number of calls; \
                 the counts above are exact)",
                ""
            )
        );
        let json = serde_json::to_value(&cut).unwrap();
        assert_eq!(json["truncated"], true);
        assert!(
            serde_json::to_value(&full)
                .unwrap()
                .get("truncated")
                .is_none()
        );
    }

    #[test]
    fn the_budget_counts_the_bytes_the_lists_take() {
        // Serialised as the toolkit's file is, the lists take what the budget counted.
        let f = nested_calls(60);
        let forest = CallForest::build(&f, false);
        let a = analyze(&forest, 1, usize::MAX);
        let counted: usize = a
            .spike_intervals
            .iter()
            .flat_map(|s| &s.active_uuids)
            .map(|u| listed_bytes(u))
            .sum();
        let with = crate::py::json::to_vec(
            &serde_json::json!({"a": {"b": [{"c": a.spike_intervals[10].active_uuids}]}}),
        )
        .len();
        let without = crate::py::json::to_vec(&serde_json::json!({"a": {"b": [{"c": []}]}})).len();
        let one: usize = a.spike_intervals[10]
            .active_uuids
            .iter()
            .map(|u| listed_bytes(u))
            .sum();
        // At its depth in the file each entry costs exactly what listed_bytes says, give or take
        // the list's own brackets.
        assert!(
            (with - without).abs_diff(one) <= 16,
            "{with} - {without} vs {one}"
        );
        assert!(counted > 0);
    }

    #[test]
    fn empty_run() {
        let f = frame_of(&[vec![("FUNCTION_START", 0.0, "f")]]);
        let forest = CallForest::build(&f, false);
        let a = analyze(&forest, 1, usize::MAX);
        assert!(a.concurrency_distribution.is_empty());
        assert_eq!(a.p50_concurrency, 0.0);
        assert!(
            a.textual_report
                .ends_with("No calls or no concurrency data.")
        );
    }
}
