//! Nested stack analysis (docs/toolkit-semantics.md#nested-stack): self and subtree time per call, the run-wide
//! concurrency distribution, each call's concurrency at its midpoint, and the top bottlenecks.

use crate::profiler::core::calltree::{CallForest, OpType, Segment, level_at, segments};
use crate::py::repr::fixed;
use indexmap::IndexMap;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConcurrencyDistribution {
    pub timeline_segments: Vec<Segment>,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeMetrics {
    pub uuid: String,
    pub operation_type: OpType,
    pub operation_name: String,
    pub start_time: f64,
    pub end_time: f64,
    pub duration: f64,
    pub self_time: f64,
    pub subtree_time: f64,
    pub concurrency_midpoint: f64,
    pub bottleneck_score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NestedStackAnalysis {
    pub concurrency: ConcurrencyDistribution,
    /// Keyed by UUID in DFS order; a UUID seen twice keeps its first place and last value.
    pub node_metrics: IndexMap<String, NodeMetrics>,
    pub top_bottlenecks: Vec<NodeMetrics>,
    #[serde(skip)]
    pub textual_report: String,
}

pub fn analyze(forest: &CallForest) -> NestedStackAnalysis {
    let order = forest.dfs_order();
    if order.is_empty() {
        return NestedStackAnalysis {
            concurrency: ConcurrencyDistribution {
                timeline_segments: Vec::new(),
                p50: 0.0,
                p90: 0.0,
                p95: 0.0,
                p99: 0.0,
            },
            node_metrics: IndexMap::new(),
            top_bottlenecks: Vec::new(),
            textual_report: "No calls found.".to_owned(),
        };
    }
    let concurrency = concurrency_distribution(forest, &order);
    let mut self_times = vec![0.0; forest.nodes.len()];
    for &n in &order {
        self_times[n] = self_time(forest, n);
    }
    // subtree = self + children's subtrees in child order, computed bottom-up (reverse pre-order).
    let mut subtree = vec![0.0f64; forest.nodes.len()];
    for &n in order.iter().rev() {
        let mut total = self_times[n];
        for &c in &forest.nodes[n].children {
            total += subtree[c];
        }
        subtree[n] = total;
    }
    let mut node_metrics: IndexMap<String, NodeMetrics> = IndexMap::new();
    for &n in &order {
        let node = &forest.nodes[n];
        let mid = if node.start >= node.end {
            node.start
        } else {
            0.5 * (node.start + node.end)
        };
        let m = NodeMetrics {
            uuid: node.uuid.to_owned(),
            operation_type: node.op_type,
            operation_name: node.op_name.to_owned(),
            start_time: node.start,
            end_time: node.end,
            duration: node.duration,
            self_time: self_times[n],
            subtree_time: subtree[n],
            concurrency_midpoint: level_at(&concurrency.timeline_segments, mid)
                .map_or(0.0, |l| l as f64),
            bottleneck_score: subtree[n],
        };
        node_metrics.insert(m.uuid.clone(), m);
    }
    let mut ranked: Vec<&NodeMetrics> = node_metrics.values().collect();
    ranked.sort_by(|a, b| b.bottleneck_score.total_cmp(&a.bottleneck_score));
    let top_bottlenecks: Vec<NodeMetrics> = ranked.into_iter().take(5).cloned().collect();
    let textual_report = report(forest, &order, &concurrency, &top_bottlenecks);
    NestedStackAnalysis {
        concurrency,
        node_metrics,
        top_bottlenecks,
        textual_report,
    }
}

fn concurrency_distribution(forest: &CallForest, order: &[usize]) -> ConcurrencyDistribution {
    let timeline_segments = segments(forest, order);
    let mut total_time = 0.0;
    let mut by_level: Vec<(i64, f64)> = Vec::new();
    for s in &timeline_segments {
        let length = s.end - s.start;
        if length <= 0.0 {
            continue;
        }
        total_time += length;
        match by_level.iter_mut().find(|(l, _)| *l == s.level) {
            Some((_, d)) => *d += length,
            None => by_level.push((s.level, length)),
        }
    }
    let mut out = ConcurrencyDistribution {
        timeline_segments,
        p50: 0.0,
        p90: 0.0,
        p95: 0.0,
        p99: 0.0,
    };
    if total_time <= 0.0 {
        return out;
    }
    by_level.sort_by_key(|(l, _)| *l);
    let at = |p: f64| {
        let threshold = total_time * (p / 100.0);
        let mut accum = 0.0;
        let mut last = 0;
        for &(level, dur) in &by_level {
            accum += dur;
            if accum >= threshold {
                return level as f64;
            }
            last = level;
        }
        last as f64
    };
    out.p50 = at(50.0);
    out.p90 = at(90.0);
    out.p95 = at(95.0);
    out.p99 = at(99.0);
    out
}

/// Duration minus the union of the children's intervals clipped to the call, floored at 0.
fn self_time(forest: &CallForest, n: usize) -> f64 {
    let node = &forest.nodes[n];
    if node.children.is_empty() {
        return node.duration;
    }
    let mut intervals: Vec<(f64, f64)> = node
        .children
        .iter()
        .map(|c| (forest.nodes[*c].start, forest.nodes[*c].end))
        .collect();
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged = Vec::with_capacity(intervals.len());
    let (mut cur_start, mut cur_end) = intervals[0];
    for &(s, e) in &intervals[1..] {
        if s <= cur_end {
            cur_end = cur_end.max(e);
        } else {
            merged.push((cur_start, cur_end));
            (cur_start, cur_end) = (s, e);
        }
    }
    merged.push((cur_start, cur_end));
    let mut covered = 0.0;
    for (s, e) in merged {
        let s = s.max(node.start);
        let e = e.min(node.end);
        if e > s {
            covered += e - s;
        }
    }
    (node.duration - covered).max(0.0)
}

/// Levels of indentation the tree dump prints. The reference indents each call by its depth, so
/// D nested calls print D²/2 spaces, so a client's deeply nested spans made a report far larger
/// than their upload (BENCHMARKS.md#hostile-load has the figure). Real agent trees are a few
/// levels deep and print exactly as the toolkit does.
const MAX_INDENT: usize = 64;

fn report(
    forest: &CallForest,
    order: &[usize],
    c: &ConcurrencyDistribution,
    top: &[NodeMetrics],
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "=== Multi-Example Nested Call Profiling Report ===\nTotal calls (across all examples): {}\n\
         \n-- Concurrency Distribution (all examples) --\np50={}, p90={}, p95={}, p99={}\n\
         \n-- Top 5 Calls by Bottleneck Score (subtree_time) --",
        order.len(),
        fixed(c.p50, 1),
        fixed(c.p90, 1),
        fixed(c.p95, 1),
        fixed(c.p99, 1)
    );
    for (i, m) in top.iter().enumerate() {
        let _ = write!(
            out,
            "\n{}) UUID={}, {} '{}', dur={}, self_time={}, subtree_time={}, concurrency={}, score={}",
            i + 1,
            m.uuid,
            m.operation_type,
            m.operation_name,
            fixed(m.duration, 2),
            fixed(m.self_time, 2),
            fixed(m.subtree_time, 2),
            fixed(m.concurrency_midpoint, 1),
            fixed(m.bottleneck_score, 2)
        );
    }
    out.push_str("\n\n-- Full Tree(s) (All Examples) --");
    let depths = forest.depths();
    if depths.iter().any(|&d| d > MAX_INDENT) {
        let _ = write!(
            out,
            "\n(truncated indentation: calls deeper than {MAX_INDENT} levels are indented as level \
             {MAX_INDENT} and start with their depth)"
        );
    }
    for &n in order {
        let node = &forest.nodes[n];
        out.push('\n');
        for _ in 0..depths[n].min(MAX_INDENT) {
            out.push_str("  ");
        }
        if depths[n] > MAX_INDENT {
            let _ = write!(out, "[depth {}] ", depths[n]);
        }
        let _ = write!(
            out,
            "- {} '{}' (uuid={}, start={}, end={}, dur={})",
            node.op_type.as_str(),
            node.op_name,
            node.uuid,
            fixed(node.start, 2),
            fixed(node.end, 2),
            fixed(node.duration, 2)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::nested_calls;

    fn nested_report(depth: usize) -> String {
        let frame = nested_calls(depth);
        analyze(&CallForest::build(&frame, false)).textual_report
    }

    #[test]
    fn tree_dump_indents_by_depth_up_to_the_cap() {
        // Depths 0 to MAX_INDENT + 1.
        let report = nested_report(MAX_INDENT + 2);
        let tree: Vec<&str> = report
            .split("-- Full Tree(s) (All Examples) --\n")
            .nth(1)
            .unwrap()
            .lines()
            .collect();
        assert!(tree[0].starts_with("(truncated indentation"), "{report}");
        assert!(tree[1].starts_with("- TOOL 't' (uuid=t0,"));
        assert!(tree[2].starts_with("  - TOOL 't' (uuid=t1,"));
        let deepest = tree.last().unwrap();
        assert!(deepest.starts_with(&format!("{}[depth 65] - TOOL", "  ".repeat(MAX_INDENT))));
        let cap = tree[MAX_INDENT + 1];
        assert!(cap.starts_with(&format!("{}- TOOL", "  ".repeat(MAX_INDENT))));
    }

    #[test]
    fn shallow_trees_print_as_the_toolkit_does() {
        let report = nested_report(MAX_INDENT + 1);
        assert!(!report.contains("truncated"));
        assert!(!report.contains("[depth"));
    }
}
