//! Concurrency spike analysis (docs/toolkit-semantics.md#concurrency-spikes): time spent at each concurrency level, the
//! timeline segments at or above a threshold with the calls active in each, token averages over
//! those calls, and mean call latency by the concurrency at each call's midpoint.
//!
//! The reference scans every call for every spike segment, which is quadratic (B15). We sweep the
//! segments in time order with the calls sorted by start and a heap of active calls by end, so the
//! cost is O(n log n) plus the size of the output itself.

use crate::profiler::core::calltree::{CallForest, level_at, segments};
use crate::profiler::py::npstats;
use crate::profiler::py::repr::fixed;
use indexmap::IndexMap;
use rustc_hash::FxHashSet;
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
    #[serde(skip)]
    pub textual_report: String,
}

pub fn analyze<'a>(forest: &CallForest<'a>, spike_threshold: i64) -> SpikeAnalysis<'a> {
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
    let mut ends: BinaryHeap<(Reverse<OrdF64>, usize)> = BinaryHeap::new();
    let (mut prompt_sum, mut prompt_n, mut total_sum, mut total_n) = (0i128, 0u64, 0i128, 0u64);
    let mut spike_intervals = Vec::new();
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    for s in segs
        .iter()
        .filter(|s| s.level >= spike_threshold && s.end > s.start)
    {
        while next < by_start.len() && forest.nodes[by_start[next]].start < s.end {
            let n = by_start[next];
            active.insert(position[n], n);
            ends.push((Reverse(OrdF64(forest.nodes[n].end)), n));
            next += 1;
        }
        while let Some((Reverse(OrdF64(end)), n)) = ends.peek().copied() {
            if end > s.start {
                break;
            }
            ends.pop();
            active.remove(&position[n]);
        }
        seen.clear();
        let mut uuids = Vec::new();
        for &n in active.values() {
            let node = &forest.nodes[n];
            if seen.insert(node.uuid) {
                uuids.push(node.uuid);
            }
            if let Some(row) = node.end_row {
                if row.prompt_tokens > 0 {
                    prompt_sum += i128::from(row.prompt_tokens);
                    prompt_n += 1;
                }
                if row.total_tokens > 0 {
                    total_sum += i128::from(row.total_tokens);
                    total_n += 1;
                }
            }
        }
        spike_intervals.push(SpikeInterval {
            start_time: s.start,
            end_time: s.end,
            concurrency: s.level,
            active_uuids: uuids,
        });
    }
    let avg = |sum: i128, n: u64| if n == 0 { 0.0 } else { sum as f64 / n as f64 };
    let correlation_stats = CorrelationStats {
        avg_prompt_tokens: avg(prompt_sum, prompt_n),
        avg_total_tokens: avg(total_sum, total_n),
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
            sp.active_uuids.len()
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
    use crate::profiler::testutil::frame_of;

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
        let a = analyze(&forest, 1);
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
        let high = analyze(&forest, 3);
        assert_eq!(high.spike_intervals.len(), 1);
    }

    #[test]
    fn empty_run() {
        let f = frame_of(&[vec![("FUNCTION_START", 0.0, "f")]]);
        let forest = CallForest::build(&f, false);
        let a = analyze(&forest, 1);
        assert!(a.concurrency_distribution.is_empty());
        assert_eq!(a.p50_concurrency, 0.0);
        assert!(
            a.textual_report
                .ends_with("No calls or no concurrency data.")
        );
    }
}
