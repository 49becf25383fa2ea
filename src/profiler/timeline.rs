//! What the dashboard draws that no toolkit output holds: the calls of a window of requests
//! with their details (the Gantt), the number of calls in flight over the whole run, every LLM
//! call's latency per model (the histograms), and each request's tokens.
//!
//! Calls and nesting come from the same call forest as the nested-stack analysis and the Gantt
//! SVG, so the picture agrees with the numbers; LLM latencies are paired by UUID exactly as
//! `/stats` pairs them, so a histogram's count is that model's `n` there. Times are seconds since
//! the run's first call.

use crate::profiler::core::calltree::{CallForest, OpType, segments};
use crate::profiler::statistics::stats::{Call, pair_calls};
use crate::profiler::{Dialect, Frame};
use crate::trace::EventType;
use serde::Serialize;
use std::collections::BTreeMap;

/// At most this many requests' calls in one answer: a browser draws a few thousand bars
/// quickly, not a 10,000-request run's 200,000.
pub const MAX_WINDOW: usize = 200;
/// Concurrency is reported as the peak per bucket, over at most this many buckets: enough for a
/// chart's width, and a spike narrower than a bucket still shows as its peak.
pub const CONCURRENCY_BUCKETS: usize = 600;
/// Input and output texts are cut to this many characters.
pub const EXCERPT_CHARS: usize = 200;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timeline {
    /// Epoch seconds of the run's first call; null for a run without calls.
    pub origin: Option<f64>,
    /// Requests in the run.
    pub requests: usize,
    /// The window of requests whose calls are listed: `offset` (0-based) and at most `limit`.
    pub offset: usize,
    pub limit: usize,
    /// The window's calls, each request's in depth-first order (a parent before its children).
    pub calls: Vec<TimelineCall>,
    /// LLM and tool calls in flight over the whole run (as the concurrency-spike analysis counts
    /// them): the peak of each of equal time buckets.
    pub concurrency: Vec<ConcurrencyBucket>,
    /// Every LLM call's latency in seconds per model, paired START -> END by UUID.
    pub llm_latency: BTreeMap<String, Vec<f64>>,
    /// Token totals per request, in request order.
    pub tokens_per_request: Vec<RequestTokens>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineCall {
    /// The request's number.
    pub request: i64,
    pub uuid: String,
    /// The enclosing call's UUID in the nested stack; null for a top-level call.
    pub parent: Option<String>,
    /// Nesting depth (0 at top level).
    pub depth: usize,
    pub kind: OpType,
    /// The model, tool or function name.
    pub name: String,
    /// Seconds since the run's first call.
    pub start: f64,
    /// Null when the call never ended.
    pub end: Option<f64>,
    /// Tokens of an LLM call (from its END step); null for other calls.
    pub tokens: Option<CallTokens>,
    /// The first characters of an LLM call's prompt and answer.
    pub input: Option<String>,
    pub output: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallTokens {
    pub prompt: i64,
    pub completion: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConcurrencyBucket {
    /// Bucket start and end, seconds since the run's first call.
    pub start: f64,
    pub end: f64,
    /// The most calls in flight at any moment of the bucket.
    pub peak: i64,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestTokens {
    pub request: i64,
    pub prompt: i64,
    pub completion: i64,
    pub total: i64,
}

/// The parts of a timeline that are the same for every page: computed once per run version (or
/// window) and kept, while a page's calls are computed from its own requests alone.
#[derive(Debug, Clone, Serialize)]
pub struct RunWide {
    pub origin: Option<f64>,
    pub requests: usize,
    pub concurrency: Vec<ConcurrencyBucket>,
    pub llm_latency: BTreeMap<String, Vec<f64>>,
    pub tokens_per_request: Vec<RequestTokens>,
}

impl RunWide {
    /// The run-wide parts as the JSON they are in every page, written once: a page then costs
    /// its own calls only, however large the run.
    pub fn rendered(&self) -> RenderedWide {
        fn tail<T: Serialize>(key: &str, value: &T) -> String {
            // Plain data (numbers, strings, maps of them): serialising it cannot fail.
            let json = serde_json::to_string(value).unwrap_or_default();
            format!(",\"{key}\":{json}")
        }
        RenderedWide {
            origin: self.origin,
            requests: self.requests,
            tail: [
                tail("concurrency", &self.concurrency),
                tail("llm_latency", &self.llm_latency),
                tail("tokens_per_request", &self.tokens_per_request),
            ]
            .concat(),
        }
    }
}

/// [`RunWide`] as JSON text, ready to close any page.
#[derive(Debug, Clone)]
pub struct RenderedWide {
    origin: Option<f64>,
    requests: usize,
    /// `,"concurrency":…,"llm_latency":…,"tokens_per_request":…`
    tail: String,
}

impl RenderedWide {
    /// Epoch seconds of the run's first call, which page times count from.
    pub fn origin(&self) -> Option<f64> {
        self.origin
    }

    /// The bytes it holds, for a cache's budget.
    pub fn len(&self) -> usize {
        self.tail.len() + 64
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// A page of the timeline as JSON: the same document as [`Timeline`] serialised.
    pub fn page_json(&self, offset: usize, limit: usize, calls: &[TimelineCall]) -> Vec<u8> {
        #[derive(Serialize)]
        struct Head<'a> {
            origin: Option<f64>,
            requests: usize,
            offset: usize,
            limit: usize,
            calls: &'a [TimelineCall],
        }
        let head = Head {
            origin: self.origin,
            requests: self.requests,
            offset,
            limit: limit.min(MAX_WINDOW),
            calls,
        };
        // A struct of numbers and strings: serialising it cannot fail.
        let mut out = serde_json::to_vec(&head).unwrap_or_default();
        out.pop(); // the closing brace
        out.extend_from_slice(self.tail.as_bytes());
        out.push(b'}');
        out
    }
}

/// The run-wide parts of the timeline of `frame`.
pub fn run_wide(frame: &Frame, dialect: Dialect) -> RunWide {
    let forest = if frame.is_standardized() {
        CallForest::build(frame, dialect.function_nodes())
    } else {
        CallForest::default()
    };
    let order = forest.dfs_order();
    let origin = order
        .iter()
        .map(|&n| forest.nodes[n].start)
        .min_by(f64::total_cmp);
    let t0 = origin.unwrap_or(0.0);
    RunWide {
        origin,
        requests: frame.requests.len(),
        concurrency: if dialect.function_nodes() && frame.is_standardized() {
            // LLM and tool calls only, as the concurrency-spike analysis counts them.
            let calls = CallForest::build(frame, false);
            concurrency(&calls, &calls.dfs_order(), t0)
        } else {
            concurrency(&forest, &order, t0)
        },
        llm_latency: llm_latency(frame),
        tokens_per_request: tokens_per_request(frame),
    }
}

/// The calls of requests `offset..offset + limit` (`limit` capped at [`MAX_WINDOW`]), times
/// from the run-wide origin.
pub fn page(
    frame: &Frame,
    dialect: Dialect,
    origin: Option<f64>,
    offset: usize,
    limit: usize,
) -> Vec<TimelineCall> {
    let limit = limit.min(MAX_WINDOW);
    if !frame.is_standardized() {
        return Vec::new();
    }
    let requests = frame
        .requests
        .get(offset..)
        .map_or(&[][..], |r| &r[..limit.min(r.len())]);
    let forest = CallForest::of_requests(frame, requests, dialect.function_nodes());
    let t0 = origin.unwrap_or(0.0);
    let depths = forest.depths();
    forest
        .dfs_order()
        .into_iter()
        .map(|n| {
            let node = &forest.nodes[n];
            let llm = node.op_type == OpType::Llm;
            TimelineCall {
                request: node.example_number,
                uuid: node.uuid.to_owned(),
                parent: node.parent.map(|p| forest.nodes[p].uuid.to_owned()),
                depth: depths[n],
                kind: node.op_type,
                name: node.op_name.to_owned(),
                start: node.start - t0,
                end: node.end_row.map(|_| node.end - t0),
                tokens: node.end_row.filter(|_| llm).map(|r| CallTokens {
                    prompt: r.prompt_tokens(),
                    completion: r.completion_tokens(),
                    total: r.total_tokens(),
                }),
                input: llm
                    .then(|| node.start_row.llm_text_input().as_deref().map(excerpt))
                    .flatten(),
                output: node
                    .end_row
                    .filter(|_| llm)
                    .and_then(|r| r.llm_text_output().as_deref().map(excerpt)),
            }
        })
        .collect()
}

/// The timeline of `frame` with the calls of requests `offset..offset + limit` (`limit` capped
/// at [`MAX_WINDOW`]), all in one piece.
pub fn build(frame: &Frame, dialect: Dialect, offset: usize, limit: usize) -> Timeline {
    let wide = run_wide(frame, dialect);
    Timeline {
        calls: page(frame, dialect, wide.origin, offset, limit),
        origin: wide.origin,
        requests: wide.requests,
        offset,
        limit: limit.min(MAX_WINDOW),
        concurrency: wide.concurrency,
        llm_latency: wide.llm_latency,
        tokens_per_request: wide.tokens_per_request,
    }
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Peak calls in flight per bucket. Each segment touches the buckets it overlaps; as segments
/// do not overlap each other, that is at most segments + buckets updates.
fn concurrency(forest: &CallForest, order: &[usize], t0: f64) -> Vec<ConcurrencyBucket> {
    let segs = segments(forest, order);
    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
        return Vec::new();
    };
    let (from, to) = (first.start - t0, last.end - t0);
    let span = to - from;
    let buckets = if span > 0.0 { CONCURRENCY_BUCKETS } else { 1 };
    let width = if span > 0.0 {
        span / buckets as f64
    } else {
        1.0
    };
    let mut peak = vec![0i64; buckets];
    let index = |t: f64| (((t - from) / width).floor().max(0.0) as usize).min(buckets - 1);
    for s in &segs {
        let (a, b) = (index(s.start - t0), index(s.end - t0));
        // A segment ending exactly on a bucket's start does not reach into it.
        let b = if b > a && from + b as f64 * width >= s.end - t0 {
            b - 1
        } else {
            b
        };
        for p in &mut peak[a..=b] {
            *p = (*p).max(s.level);
        }
    }
    peak.into_iter()
        .enumerate()
        .map(|(i, peak)| ConcurrencyBucket {
            start: from + i as f64 * width,
            end: from + (i + 1) as f64 * width,
            peak,
        })
        .collect()
}

fn llm_latency(frame: &Frame) -> BTreeMap<String, Vec<f64>> {
    let (calls, _, _) = pair_calls(frame, EventType::LlmStart, EventType::LlmEnd);
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in &calls {
        out.entry(c.name.to_owned())
            .or_default()
            .push(Call::latency(c));
    }
    out
}

/// Per request, the tokens of its LLM_END steps (the toolkit's usage counts).
fn tokens_per_request(frame: &Frame) -> Vec<RequestTokens> {
    frame
        .iter_requests()
        .map(|(req, rows)| {
            let mut t = RequestTokens {
                request: req.number,
                prompt: 0,
                completion: 0,
                total: 0,
            };
            for r in rows.iter().filter(|r| r.event_type() == EventType::LlmEnd) {
                t.prompt = t.prompt.saturating_add(r.prompt_tokens());
                t.completion = t.completion.saturating_add(r.completion_tokens());
                t.total = t.total.saturating_add(r.total_tokens());
            }
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::testutil::frame_of;

    #[test]
    fn window_nesting_and_concurrency() {
        // Request 0: a tool call inside nothing, an LLM call after it; request 1: one LLM call
        // overlapping request 0's tool.
        let f = frame_of(&[
            vec![
                ("TOOL_START", 10.0, "t"),
                ("TOOL_END", 12.0, "t"),
                ("LLM_START", 13.0, "a"),
                ("LLM_END", 14.0, "a"),
            ],
            vec![("LLM_START", 11.0, "b"), ("LLM_END", 15.0, "b")],
        ]);
        let all = build(&f, Dialect::Aiq11, 0, 10);
        assert_eq!(all.origin, Some(10.0));
        assert_eq!(all.requests, 2);
        assert_eq!(all.calls.len(), 3);
        assert_eq!((all.calls[0].start, all.calls[0].end), (0.0, Some(2.0)));
        let second = build(&f, Dialect::Aiq11, 1, 1);
        assert_eq!(second.calls.len(), 1);
        assert_eq!(second.calls[0].uuid, "b");
        // Peak of 2 in flight (t and b overlap in [1, 2)), never more.
        let peak = all.concurrency.iter().map(|b| b.peak).max();
        assert_eq!(peak, Some(2));
        assert_eq!(all.concurrency.len(), CONCURRENCY_BUCKETS);
        assert_eq!(all.concurrency[0].peak, 1);
        let latencies: usize = all.llm_latency.values().map(Vec::len).sum();
        assert_eq!(latencies, 2);
        assert_eq!(all.tokens_per_request.len(), 2);
    }

    #[test]
    fn a_page_from_the_kept_parts_is_the_whole_timeline() {
        let f = frame_of(&[
            vec![("TOOL_START", 10.0, "t"), ("TOOL_END", 12.0, "t")],
            vec![("LLM_START", 11.0, "b"), ("LLM_END", 15.0, "b")],
            vec![("LLM_START", 16.0, "c"), ("LLM_END", 17.0, "c")],
        ]);
        let wide = run_wide(&f, Dialect::Nat19).rendered();
        for (offset, limit) in [(0, 1), (1, 5), (3, 2), (0, 500)] {
            let origin = run_wide(&f, Dialect::Nat19).origin;
            let calls = page(&f, Dialect::Nat19, origin, offset, limit);
            let whole = serde_json::to_vec(&build(&f, Dialect::Nat19, offset, limit)).unwrap();
            assert_eq!(
                wide.page_json(offset, limit, &calls),
                whole,
                "{offset} {limit}"
            );
        }
    }

    #[test]
    fn excerpts_cut_on_characters() {
        let long = "é".repeat(EXCERPT_CHARS + 5);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }
}
