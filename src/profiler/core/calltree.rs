//! The per-request call tree that the nested-stack and concurrency-spike analyses share
//! (docs/toolkit-semantics.md#call-tree), and the run-wide concurrency timeline built from it.
//!
//! Nesting is decided by time and a stack alone, exactly as the reference does it: an END pops
//! only when its call is on top, so overlapping siblings and unended STARTs adopt every later call
//! of their request (B5). Roots keep the reference's dict semantics (a list in first-seen order
//! with an index by UUID), so a second root with the same UUID replaces the first in place (and
//! takes the first one's subtree out of every output).

use crate::profiler::core::frame::{Frame, RequestSlice, Row, time_order};
use crate::trace::{EventState, EventType};
use std::collections::HashMap;

/// What kind of call a node is; serialised as the toolkit's `operation_type` strings.
/// Ordered as the type names sort, which is the order the toolkit's grouped outputs list them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OpType {
    /// nat 1.9 only: a FUNCTION or SPAN step pair.
    Function,
    Llm,
    Tool,
}

impl OpType {
    pub fn of(et: EventType) -> Option<OpType> {
        match et {
            EventType::LlmStart | EventType::LlmEnd | EventType::LlmNewToken => Some(OpType::Llm),
            EventType::ToolStart | EventType::ToolEnd => Some(OpType::Tool),
            _ => None,
        }
    }

    /// The call a FUNCTION_* or SPAN_* step belongs to, where nat 1.9 counts them as calls.
    pub fn of_function(et: EventType) -> Option<OpType> {
        match et {
            EventType::FunctionStart
            | EventType::FunctionEnd
            | EventType::SpanStart
            | EventType::SpanChunk
            | EventType::SpanEnd => Some(OpType::Function),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Function => "FUNCTION",
            OpType::Llm => "LLM",
            OpType::Tool => "TOOL",
        }
    }

    /// The name a call gets: the START row's model or tool name, its function's name for a
    /// FUNCTION call (not `payload.name`), or the reference's fallback.
    pub fn name_of(self, row: Row<'_>) -> &str {
        match self {
            OpType::Llm if !row.llm_name().is_empty() => row.llm_name(),
            OpType::Llm => "unknown_llm",
            OpType::Tool if !row.tool_name().is_empty() => row.tool_name(),
            OpType::Tool => "unknown_tool",
            OpType::Function => match row.function_name() {
                Some(name) if !name.is_empty() => name,
                _ => "unknown_function",
            },
        }
    }
}

impl std::fmt::Display for OpType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct CallNode<'a> {
    pub uuid: &'a str,
    pub op_type: OpType,
    pub op_name: &'a str,
    pub example_number: i64,
    pub start: f64,
    /// Equal to `start` until an END arrives.
    pub end: f64,
    pub duration: f64,
    /// The START row that opened the call (the prompt text).
    pub start_row: Row<'a>,
    /// The END row that closed the call (token counts, output text), if one did.
    pub end_row: Option<Row<'a>>,
    pub children: Vec<usize>,
    pub parent: Option<usize>,
}

/// All calls of a run; `roots` in request order, each request's roots in first-seen order.
#[derive(Debug, Clone, Default)]
pub struct CallForest<'a> {
    pub nodes: Vec<CallNode<'a>>,
    pub roots: Vec<usize>,
}

impl<'a> CallForest<'a> {
    /// The forest of LLM and TOOL calls, and, with `function_nodes` (nat 1.9's nested stack), of
    /// FUNCTION and SPAN steps too.
    pub fn build(frame: &'a Frame, function_nodes: bool) -> CallForest<'a> {
        CallForest::of_requests(frame, &frame.requests, function_nodes)
    }

    /// [`CallForest::build`] over some of the frame's requests only (a page of them): a
    /// request's calls nest within the request, so its part of the forest is the same either
    /// way.
    pub fn of_requests(
        frame: &'a Frame,
        requests: &[RequestSlice],
        function_nodes: bool,
    ) -> CallForest<'a> {
        let mut forest = CallForest::default();
        let mut order: Vec<usize> = Vec::new();
        for req in requests {
            let rows = frame.request_rows(req);
            time_order(rows, &mut order);
            let mut stack: Vec<usize> = Vec::new();
            let mut open: HashMap<&str, usize> = HashMap::new();
            let mut top_level: Vec<usize> = Vec::new();
            let mut top_index: HashMap<&str, usize> = HashMap::new();
            for &i in &order {
                let row = rows.get(i);
                let op = OpType::of(row.event_type()).or_else(|| {
                    function_nodes
                        .then(|| OpType::of_function(row.event_type()))
                        .flatten()
                });
                let Some(op_type) = op else {
                    continue;
                };
                let state = row.event_type().state();
                if state == EventState::Start {
                    let id = forest.nodes.len();
                    let parent = stack.last().copied();
                    forest.nodes.push(CallNode {
                        uuid: row.uuid(),
                        op_type,
                        op_name: op_type.name_of(row),
                        example_number: req.number,
                        start: row.event_timestamp(),
                        end: row.event_timestamp(),
                        duration: 0.0,
                        start_row: row,
                        end_row: None,
                        children: Vec::new(),
                        parent,
                    });
                    match parent {
                        Some(p) => forest.nodes[p].children.push(id),
                        None => match top_index.get(row.uuid()) {
                            Some(&slot) => top_level[slot] = id,
                            None => {
                                top_index.insert(row.uuid(), top_level.len());
                                top_level.push(id);
                            }
                        },
                    }
                    stack.push(id);
                    open.insert(row.uuid(), id);
                } else if state == EventState::End {
                    let Some(id) = open.remove(row.uuid()) else {
                        continue;
                    };
                    if stack
                        .last()
                        .is_some_and(|top| forest.nodes[*top].uuid == row.uuid())
                    {
                        stack.pop();
                    }
                    let node = &mut forest.nodes[id];
                    node.end = row.event_timestamp();
                    node.duration = (row.event_timestamp() - node.start).max(0.0);
                    node.end_row = Some(row);
                }
            }
            forest.roots.extend(top_level);
        }
        forest
    }

    /// Every reachable node in depth-first pre-order (roots in order, children in order).
    pub fn dfs_order(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<usize> = self.roots.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            out.push(n);
            stack.extend(self.nodes[n].children.iter().rev().copied());
        }
        out
    }

    /// Depth of each node in `order` (0 for roots), for indented tree output.
    pub fn depths(&self) -> Vec<usize> {
        let mut depth = vec![0usize; self.nodes.len()];
        for n in self.dfs_order() {
            for &c in &self.nodes[n].children {
                depth[c] = depth[n] + 1;
            }
        }
        depth
    }
}

/// A stretch of time with a constant number of calls in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub level: i64,
}

/// `[start, end, level]`, as the toolkit's tuples serialise.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Segment {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        ArrayBuilder::new()
            .prefix_items([
                ObjectBuilder::new().schema_type(Type::Number).description(Some("start (epoch seconds)")),
                ObjectBuilder::new().schema_type(Type::Number).description(Some("end (epoch seconds)")),
                ObjectBuilder::new().schema_type(Type::Integer).description(Some("calls in flight")),
            ])
            .min_items(Some(3))
            .max_items(Some(3))
            .description(Some("A stretch of time with a constant number of calls in flight: `[start, end, level]`"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Segment {}

impl serde::Serialize for Segment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.start, self.end, self.level).serialize(s)
    }
}

/// The concurrency timeline over the given nodes: `(start, +1)` and `(end, -1)` events in a
/// stable sort by time, one segment per gap between distinct event times.
pub fn segments(forest: &CallForest, order: &[usize]) -> Vec<Segment> {
    let mut events: Vec<(f64, i64)> = Vec::with_capacity(order.len() * 2);
    for &n in order {
        let node = &forest.nodes[n];
        if node.start <= node.end {
            events.push((node.start, 1));
            events.push((node.end, -1));
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::new();
    let Some(&(first, _)) = events.first() else {
        return out;
    };
    let mut level = 0;
    let mut prev = first;
    for (t, delta) in events {
        if t > prev {
            out.push(Segment {
                start: prev,
                end: t,
                level,
            });
        }
        level += delta;
        prev = t;
    }
    out
}

/// The level of the segment `[start, end)` holding `t`, by the reference's binary search.
pub fn level_at(segments: &[Segment], t: f64) -> Option<i64> {
    let (mut left, mut right) = (0i64, segments.len() as i64 - 1);
    while left <= right {
        let mid = ((left + right) / 2) as usize;
        let s = &segments[mid];
        if s.start <= t && t < s.end {
            return Some(s.level);
        }
        if t < s.start {
            right = mid as i64 - 1;
        } else {
            left = mid as i64 + 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::frame_of;

    #[test]
    fn overlapping_siblings_are_adopted() {
        // START A, START B, END A, END B, START C: B nests under A, A never pops, C nests under A.
        let f = frame_of(&[vec![
            ("LLM_START", 0.0, "a"),
            ("TOOL_START", 1.0, "b"),
            ("LLM_END", 2.0, "a"),
            ("TOOL_END", 3.0, "b"),
            ("TOOL_START", 4.0, "c"),
            ("TOOL_END", 5.0, "c"),
        ]]);
        let forest = CallForest::build(&f, false);
        assert_eq!(forest.roots.len(), 1);
        let a = &forest.nodes[forest.roots[0]];
        assert_eq!(a.uuid, "a");
        let kids: Vec<&str> = a.children.iter().map(|c| forest.nodes[*c].uuid).collect();
        assert_eq!(kids, ["b", "c"]);
        assert_eq!(a.duration, 2.0);
    }

    #[test]
    fn timeline_and_lookup() {
        let f = frame_of(&[
            vec![("LLM_START", 0.0, "a"), ("LLM_END", 2.0, "a")],
            vec![("LLM_START", 1.0, "b"), ("LLM_END", 3.0, "b")],
        ]);
        let forest = CallForest::build(&f, false);
        let segs = segments(&forest, &forest.dfs_order());
        let levels: Vec<(f64, f64, i64)> = segs.iter().map(|s| (s.start, s.end, s.level)).collect();
        assert_eq!(levels, [(0.0, 1.0, 1), (1.0, 2.0, 2), (2.0, 3.0, 1)]);
        assert_eq!(level_at(&segs, 1.5), Some(2));
        assert_eq!(level_at(&segs, 3.0), None);
    }

    #[test]
    fn orphan_end_and_unended_start() {
        let f = frame_of(&[vec![
            ("LLM_END", 0.0, "x"),
            ("LLM_START", 1.0, "a"),
            ("TOOL_START", 2.0, "t"),
            ("TOOL_END", 3.0, "t"),
        ]]);
        let forest = CallForest::build(&f, false);
        assert_eq!(forest.nodes.len(), 2);
        let a = &forest.nodes[forest.roots[0]];
        assert_eq!((a.start, a.end, a.duration), (1.0, 1.0, 0.0));
        assert_eq!(a.children.len(), 1, "the unended START adopts later calls");
    }
}
