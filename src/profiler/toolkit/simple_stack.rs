//! Simple stack bottleneck analysis (docs/toolkit-semantics.md#simple-stack): calls paired by UUID, durations per
//! operation, and the peak concurrency of each operation name on the run-wide timeline.
//!
//! Quirks kept: concurrency is keyed by name alone, so an LLM and a tool sharing a name share it,
//! and it is global across requests (B13); the name is the first row's, so an unnamed START gives
//! the name `""`.

use crate::profiler::core::calltree::OpType;
use crate::profiler::core::frame::{Frame, Row};
use crate::py::npstats;
use crate::py::percentile::percentile_sorted;
use crate::py::repr::fixed;
use crate::trace::EventType;
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperationStats {
    pub operation_type: OpType,
    pub operation_name: String,
    pub usage_count: usize,
    pub avg_duration: f64,
    pub p95_duration: f64,
    pub p99_duration: f64,
    pub max_concurrency: i64,
    pub bottleneck_score: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimpleStackAnalysis {
    /// Keyed `"<TYPE>:<name>"`, in sorted (type, name) order.
    pub stats: IndexMap<String, OperationStats>,
    pub summary: String,
}

struct Operation<'a> {
    op_type: OpType,
    name: &'a str,
    start: f64,
    end: f64,
}

pub fn analyze(frame: &Frame) -> SimpleStackAnalysis {
    let ops = if frame.is_standardized() {
        operations(frame)
    } else {
        Vec::new()
    };
    if ops.is_empty() {
        return SimpleStackAnalysis {
            stats: IndexMap::new(),
            summary: "No operations found to profile.".to_owned(),
        };
    }
    let stats = operation_stats(&ops);
    let summary = summary(&stats, max_concurrency(ops.iter()));
    SimpleStackAnalysis { stats, summary }
}

/// Every LLM or TOOL call, one per UUID with at least two rows: from its earliest START to its
/// latest END. Rows are grouped by UUID in sorted UUID order (pandas' groupby order), each group
/// in row order: one stable sort of row indices instead of a map of per-UUID vectors.
fn operations(frame: &Frame) -> Vec<Operation<'_>> {
    // Each index carries its UUID's first 16 bytes, so that most comparisons settle without
    // reaching into the rows, whose reads miss the cache on a large frame
    // (BENCHMARKS.md#analyses-criterion has the gain, under simple_stack).
    let uuid = |i: usize| frame.row(i).uuid();
    let mut by_uuid: Vec<(u128, usize)> = (0..frame.len())
        .map(|i| (order_prefix(uuid(i)), i))
        .collect();
    by_uuid.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| uuid(a.1).cmp(uuid(b.1))));
    let mut ops: Vec<Operation> = Vec::new();
    let mut rows: Vec<Row<'_>> = Vec::new();
    for group in by_uuid.chunk_by(|a, b| a.0 == b.0 && uuid(a.1) == uuid(b.1)) {
        if group.len() < 2 {
            continue;
        }
        rows.clear();
        rows.extend(group.iter().map(|(_, i)| frame.row(*i)));
        rows.sort_by(|a, b| a.event_timestamp().total_cmp(&b.event_timestamp()));
        let first = rows[0];
        let (op_type, start_type, end_type) = match OpType::of(first.event_type()) {
            Some(op @ OpType::Llm) => (op, EventType::LlmStart, EventType::LlmEnd),
            Some(op @ OpType::Tool) => (op, EventType::ToolStart, EventType::ToolEnd),
            Some(OpType::Function) | None => continue,
        };
        let times = |et: EventType| {
            rows.iter()
                .filter(move |r| r.event_type() == et)
                .map(|r| r.event_timestamp())
        };
        let start = times(start_type).reduce(f64::min);
        let end = times(end_type).reduce(f64::max);
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        let name = if op_type == OpType::Llm {
            &first.llm_name()
        } else {
            &first.tool_name()
        };
        ops.push(Operation {
            op_type,
            name,
            start,
            end,
        });
    }
    ops
}

/// The first 16 bytes of `s` as a big-endian number (zero-padded): ordered as the strings are,
/// except that strings equal in those bytes compare equal.
fn order_prefix(s: &str) -> u128 {
    let mut bytes = [0u8; 16];
    let head = &s.as_bytes()[..s.len().min(16)];
    bytes[..head.len()].copy_from_slice(head);
    u128::from_be_bytes(bytes)
}

/// Per `(type, name)`, in sorted order: the calls' count, mean and tail durations, and the
/// name's peak concurrency (keyed by name alone, across types and requests: B13).
fn operation_stats(ops: &[Operation]) -> IndexMap<String, OperationStats> {
    let mut max_by_name: HashMap<&str, i64> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    for op in ops {
        if !max_by_name.contains_key(op.name) {
            max_by_name.insert(op.name, 0);
            names.push(op.name);
        }
    }
    for name in names {
        let m = max_concurrency(ops.iter().filter(|o| o.name == name));
        max_by_name.insert(name, m);
    }

    let mut groups: BTreeMap<(OpType, &str), Vec<f64>> = BTreeMap::new();
    for op in ops {
        groups
            .entry((op.op_type, op.name))
            .or_default()
            .push(op.end - op.start);
    }
    let mut stats = IndexMap::new();
    for ((op_type, name), durations) in groups {
        let avg = npstats::mean(&durations).unwrap_or(0.0);
        let mut sorted = durations.clone();
        sorted.sort_by(f64::total_cmp);
        let max_c = max_by_name.get(name).copied().unwrap_or(0);
        stats.insert(
            format!("{}:{name}", op_type.as_str()),
            OperationStats {
                operation_type: op_type,
                operation_name: name.to_owned(),
                usage_count: durations.len(),
                avg_duration: avg,
                p95_duration: percentile_sorted(&sorted, 95.0),
                p99_duration: percentile_sorted(&sorted, 99.0),
                max_concurrency: max_c,
                bottleneck_score: avg * max_c as f64,
            },
        );
    }
    stats
}

/// The highest running sum over `(start, +1)`/`(end, -1)` events, stably sorted by time (never
/// below 0: the sum ends at 0).
fn max_concurrency<'a, 'b: 'a>(ops: impl Iterator<Item = &'a Operation<'b>>) -> i64 {
    let mut events: Vec<(f64, i64)> = Vec::new();
    for op in ops {
        events.push((op.start, 1));
        events.push((op.end, -1));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut cur = 0;
    let mut max = 0;
    for (_, d) in &events {
        cur += d;
        max = max.max(cur);
    }
    max
}

fn summary(stats: &IndexMap<String, OperationStats>, overall_max: i64) -> String {
    let mut ranked: Vec<&OperationStats> = stats.values().collect();
    ranked.sort_by(|a, b| b.bottleneck_score.total_cmp(&a.bottleneck_score));
    let mut out = format!(
        "---- BOTTLENECK REPORT ----\nTotal distinct operations found: {}\nOverall max concurrency (all ops): {overall_max}\n\
         Top 3 Bottlenecks by bottleneck_score (avg_duration * max_concurrency):",
        stats.len()
    );
    for (i, s) in ranked.iter().take(3).enumerate() {
        let _ = write!(
            out,
            "\n{}) {} '{}': score={}, avg_dur={}, max_concurrency={}",
            i + 1,
            s.operation_type,
            s.operation_name,
            fixed(s.bottleneck_score, 2),
            fixed(s.avg_duration, 2),
            s.max_concurrency
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::frame_of;

    #[test]
    fn the_order_prefix_orders_as_the_strings() {
        let mut words = vec![
            "",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "b",
            "0123456789abcdef",
            "0123456789abcdeg",
            "0123456789abcdef0",
            "0123456789abcdef-1",
            "Z",
            "é",
            "e\u{301}",
        ];
        words.sort();
        for pair in words.windows(2) {
            assert!(order_prefix(pair[0]) <= order_prefix(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn pairs_by_uuid_and_counts_concurrency_across_requests() {
        let f = frame_of(&[
            vec![
                ("LLM_START", 0.0, "a"),
                ("LLM_NEW_TOKEN", 0.5, "a"),
                ("LLM_END", 2.0, "a"),
            ],
            vec![
                ("LLM_START", 1.0, "b"),
                ("LLM_END", 2.0, "b"),
                ("TOOL_START", 5.0, "t"),
            ],
        ]);
        let a = analyze(&f);
        let s = &a.stats["LLM:m"];
        assert_eq!((s.usage_count, s.max_concurrency), (2, 2));
        assert_eq!(s.avg_duration, 1.5);
        assert_eq!(s.bottleneck_score, 3.0);
        assert!(
            !a.stats.contains_key("TOOL:t"),
            "a START alone is not an operation"
        );
        assert!(a.summary.contains("Overall max concurrency (all ops): 2"));
    }

    #[test]
    fn no_operations() {
        let f = frame_of(&[vec![
            ("FUNCTION_START", 0.0, "f"),
            ("FUNCTION_END", 1.0, "f"),
        ]]);
        let a = analyze(&f);
        assert!(a.stats.is_empty());
        assert_eq!(a.summary, "No operations found to profile.");
    }
}
