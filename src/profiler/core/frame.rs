//! The standardized frame (docs/toolkit-semantics.md#standardized-frame): one row per step, in
//! input order, request by request. Every analysis reads these rows, never the raw steps, so the
//! service can build them straight from stored columns without re-parsing step JSON.
//!
//! The frame is kept by column (a vector per field) rather than as a vector of row structs: a
//! pass over timestamps then reads timestamps only, and strings are ids into shared tables
//! ([`strings`]). A [`Row`] is a handle (the frame and an index) whose accessors read the
//! columns, so the analyses still read a row's fields by name. BENCHMARKS.md#a-smaller-frame
//! has the memory per step of both layouts.

mod strings;

use crate::py::repr::py_str;
use crate::trace::{
    Batch, EventType, Framework, IntermediateStep, InvocationNode, NumberedRequest,
};
use serde_json::Value;
use std::borrow::Cow;
use std::ops::Range;
use strings::{EMPTY, NONE};

/// What a step contributes to the frame, before it is placed in a request: the columns the
/// service stores per step. Both the CLI (from parsed steps) and the store (from its columns)
/// build rows through this one type, so the derivation rules live in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct StepColumns {
    pub event_type: EventType,
    pub event_timestamp: f64,
    pub uuid: String,
    /// `payload.name` as sent.
    pub name: Option<String>,
    pub framework: Option<Framework>,
    pub ancestry: Option<InvocationNode>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// nat's `cached_tokens` (prompt tokens served from the provider's cache): 0 when absent.
    pub cached_tokens: i64,
    pub seconds_between_calls: i64,
    /// On LLM_START / LLM_END / LLM_NEW_TOKEN: `str()` of data.input / data.output / data.chunk,
    /// `""` when the step has no data, `None` when the value is null. `""` on other steps.
    pub text: Option<String>,
    pub span_event_timestamp: Option<f64>,
    pub parent_id: Option<String>,
}

impl StepColumns {
    pub fn from_step(step: &IntermediateStep) -> StepColumns {
        let p = &step.payload;
        let tokens = p.usage_info.as_ref().map(|u| &u.token_usage);
        let pick: Option<fn(&crate::trace::StreamEventData) -> &Value> = match p.event_type {
            EventType::LlmStart => Some(|d| &d.input),
            EventType::LlmEnd => Some(|d| &d.output),
            EventType::LlmNewToken => Some(|d| &d.chunk),
            _ => None,
        };
        let text = match (pick, &p.data) {
            (Some(pick), Some(d)) => match pick(d) {
                Value::Null => None,
                v => Some(py_str(v)),
            },
            _ => Some(String::new()),
        };
        StepColumns {
            event_type: p.event_type,
            event_timestamp: p.event_timestamp,
            uuid: p.uuid.clone(),
            name: p.name.clone(),
            framework: p.framework,
            ancestry: step.function_ancestry.clone(),
            prompt_tokens: tokens.map_or(0, |t| t.prompt_tokens),
            completion_tokens: tokens.map_or(0, |t| t.completion_tokens),
            total_tokens: tokens.map_or(0, |t| t.total_tokens),
            cached_tokens: tokens.and_then(|t| t.cached_tokens).unwrap_or(0),
            seconds_between_calls: p.usage_info.as_ref().map_or(0, |u| u.seconds_between_calls),
            text,
            span_event_timestamp: p.span_event_timestamp,
            parent_id: step.parent_id.clone(),
        }
    }
}

/// A step's token counts, kept apart: most steps have none.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Usage {
    prompt: i64,
    completion: i64,
    total: i64,
    cached: i64,
    seconds_between_calls: i64,
}

/// A `span_event_timestamp` that is absent. Stored timestamps are finite (the validator refuses
/// the rest), so no step's value has these bits.
const NO_TIME: u64 = 0x7ff8_dead_beef_0001;

/// A text column's value that is the empty string, and one that is null.
const TEXT_EMPTY: u32 = NONE - 1;
const TEXT_NULL: u32 = NONE;

/// One vector per field, one entry per row.
#[derive(Debug, Clone, Default, PartialEq)]
struct Columns {
    event_type: Vec<EventType>,
    timestamp: Vec<f64>,
    /// Index into `Frame::requests`.
    request: Vec<u32>,
    uuid: Vec<u32>,
    /// `payload.name` on LLM and TOOL STARTs and ENDs when non-empty ([`EMPTY`] otherwise):
    /// `llm_name` or `tool_name` as the event type says.
    label: Vec<u32>,
    /// Index into `Frame::nodes`; [`NONE`] when the step's `function_ancestry` was null.
    node: Vec<u32>,
    /// String id of nat's top-level `parent_id`; [`NONE`] when absent.
    parent: Vec<u32>,
    framework: Vec<Option<Framework>>,
    /// `span_event_timestamp`'s bits; [`NO_TIME`] when absent.
    span_timestamp: Vec<u64>,
    /// Index into `Frame::usages`; [`NONE`] when every count is 0.
    usage: Vec<u32>,
    /// Text id of the step's text (see [`StepColumns::text`]), or [`TEXT_EMPTY`] / [`TEXT_NULL`].
    text: Vec<u32>,
}

impl Columns {
    fn shrink(&mut self) {
        self.event_type.shrink_to_fit();
        self.timestamp.shrink_to_fit();
        self.request.shrink_to_fit();
        self.uuid.shrink_to_fit();
        self.label.shrink_to_fit();
        self.node.shrink_to_fit();
        self.parent.shrink_to_fit();
        self.framework.shrink_to_fit();
        self.span_timestamp.shrink_to_fit();
        self.usage.shrink_to_fit();
        self.text.shrink_to_fit();
    }

    fn heap_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.event_type)
            + bytes(&self.timestamp)
            + bytes(&self.request)
            + bytes(&self.uuid)
            + bytes(&self.label)
            + bytes(&self.node)
            + bytes(&self.parent)
            + bytes(&self.framework)
            + bytes(&self.span_timestamp)
            + bytes(&self.usage)
            + bytes(&self.text)
    }
}

/// A request's place in the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSlice {
    pub number: i64,
    pub rows: Range<usize>,
    /// The eval form's `id`, when the request came with one (used to pair runs in comparisons).
    pub external_id: Option<String>,
}

/// All rows of a run, grouped by request, requests ordered by number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub requests: Vec<RequestSlice>,
    columns: Columns,
    strings: strings::Strings,
    texts: strings::Texts,
    nodes: Vec<InvocationNode>,
    usages: Vec<Usage>,
}

/// One row of a [`Frame`]: the columns of `create_standardized_dataframe`, plus
/// `seconds_between_calls` for forecasting, read from the frame's columns.
#[derive(Clone, Copy)]
pub struct Row<'f> {
    frame: &'f Frame,
    i: usize,
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("index", &self.i)
            .field("event_type", &self.event_type())
            .field("event_timestamp", &self.event_timestamp())
            .field("uuid", &self.uuid())
            .finish()
    }
}

impl<'f> Row<'f> {
    /// The row's position in the frame.
    pub fn index(self) -> usize {
        self.i
    }

    pub fn event_type(self) -> EventType {
        self.frame.columns.event_type[self.i]
    }

    pub fn event_timestamp(self) -> f64 {
        self.frame.columns.timestamp[self.i]
    }

    /// The request's number (the reference's `example_number`).
    pub fn example_number(self) -> i64 {
        self.frame.requests[self.frame.columns.request[self.i] as usize].number
    }

    fn usage(self) -> Usage {
        match self.frame.columns.usage[self.i] {
            NONE => Usage::default(),
            u => self.frame.usages[u as usize],
        }
    }

    /// Token counts; 0 when `usage_info` is null.
    pub fn prompt_tokens(self) -> i64 {
        self.usage().prompt
    }

    pub fn completion_tokens(self) -> i64 {
        self.usage().completion
    }

    pub fn total_tokens(self) -> i64 {
        self.usage().total
    }

    /// Of the prompt tokens, those the provider served from its cache (nat's `cached_tokens`).
    pub fn cached_tokens(self) -> i64 {
        self.usage().cached
    }

    pub fn seconds_between_calls(self) -> i64 {
        self.usage().seconds_between_calls
    }

    /// The step's text if the column is the one its event type fills, else `""`.
    fn text_if(self, et: EventType) -> Option<Cow<'f, str>> {
        if self.event_type() != et {
            return Some(Cow::Borrowed(""));
        }
        match self.frame.columns.text[self.i] {
            TEXT_EMPTY => Some(Cow::Borrowed("")),
            TEXT_NULL => None,
            id => Some(self.frame.texts.get(id)),
        }
    }

    /// `str(data.input)` on LLM_START with data, `""` otherwise; `None` for a null input.
    pub fn llm_text_input(self) -> Option<Cow<'f, str>> {
        self.text_if(EventType::LlmStart)
    }

    /// `str(data.output)` on LLM_END with data, `""` otherwise; `None` for a null output.
    pub fn llm_text_output(self) -> Option<Cow<'f, str>> {
        self.text_if(EventType::LlmEnd)
    }

    /// `str(data.chunk)` on LLM_NEW_TOKEN with data, `""` otherwise; `None` for a null chunk.
    pub fn llm_new_token(self) -> Option<Cow<'f, str>> {
        self.text_if(EventType::LlmNewToken)
    }

    /// `llm_text_input.astype(str)`: a null input reads as the string `"None"`.
    pub fn text_input_as_str(self) -> Cow<'f, str> {
        self.llm_text_input().unwrap_or(Cow::Borrowed("None"))
    }

    /// `payload.name` on LLM_START/LLM_END when non-empty, else `""`.
    pub fn llm_name(self) -> &'f str {
        match self.event_type() {
            EventType::LlmStart | EventType::LlmEnd => self.label(),
            _ => "",
        }
    }

    /// `payload.name` on TOOL_START/TOOL_END when non-empty, else `""`.
    pub fn tool_name(self) -> &'f str {
        match self.event_type() {
            EventType::ToolStart | EventType::ToolEnd => self.label(),
            _ => "",
        }
    }

    fn label(self) -> &'f str {
        self.frame.strings.get(self.frame.columns.label[self.i])
    }

    /// `None` when the step's `function_ancestry` was JSON `null`.
    pub fn ancestry(self) -> Option<&'f InvocationNode> {
        match self.frame.columns.node[self.i] {
            NONE => None,
            n => Some(&self.frame.nodes[n as usize]),
        }
    }

    pub fn function_name(self) -> Option<&'f str> {
        self.ancestry().map(|a| a.function_name.as_str())
    }

    pub fn uuid(self) -> &'f str {
        self.frame.strings.get(self.frame.columns.uuid[self.i])
    }

    pub fn framework(self) -> Option<Framework> {
        self.frame.columns.framework[self.i]
    }

    /// The span's start, which END steps may carry (nat 1.9's prediction trie reads it).
    pub fn span_event_timestamp(self) -> Option<f64> {
        match self.frame.columns.span_timestamp[self.i] {
            NO_TIME => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// nat 1.9's top-level `parent_id`: the parent span's UUID.
    pub fn parent_id(self) -> Option<&'f str> {
        match self.frame.columns.parent[self.i] {
            NONE => None,
            id => Some(self.frame.strings.get(id)),
        }
    }
}

/// Consecutive rows of a frame: a request's, or all of them.
#[derive(Clone, Copy)]
pub struct Rows<'f> {
    frame: &'f Frame,
    range: (usize, usize),
}

impl<'f> Rows<'f> {
    pub fn len(self) -> usize {
        self.range.1 - self.range.0
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The `i`-th row of these (not of the frame).
    pub fn get(self, i: usize) -> Row<'f> {
        assert!(i < self.len(), "row {i} of {}", self.len());
        self.frame.row(self.range.0 + i)
    }

    pub fn first(self) -> Option<Row<'f>> {
        (!self.is_empty()).then(|| self.get(0))
    }

    pub fn iter(self) -> impl DoubleEndedIterator<Item = Row<'f>> + ExactSizeIterator {
        let frame = self.frame;
        (self.range.0..self.range.1).map(move |i| frame.row(i))
    }

    /// The rows' timestamps, in row order.
    pub fn timestamps(self) -> &'f [f64] {
        &self.frame.columns.timestamp[self.range.0..self.range.1]
    }

    /// The rows' event types, in row order.
    pub fn event_types(self) -> &'f [EventType] {
        &self.frame.columns.event_type[self.range.0..self.range.1]
    }
}

/// Fills `order` with the indices (within `rows`) of the rows in time order. Stable: rows with
/// equal timestamps keep their input order, where the reference's order is unspecified
/// (docs/deviations.md#d5); every analysis that walks a request in time goes through here so
/// they agree.
pub fn time_order(rows: Rows<'_>, order: &mut Vec<usize>) {
    let ts = rows.timestamps();
    order.clear();
    order.extend(0..ts.len());
    order.sort_by(|a, b| ts[*a].total_cmp(&ts[*b]));
}

/// The earliest and the latest timestamp among `rows`; `None` for no rows.
pub fn time_span(rows: Rows<'_>) -> Option<(f64, f64)> {
    let ts = rows.timestamps();
    let first = *ts.first()?;
    Some(
        ts.iter()
            .fold((first, first), |(lo, hi), t| (lo.min(*t), hi.max(*t))),
    )
}

impl Frame {
    /// Builds the frame from requests given as `(number, steps)`, already in ascending number
    /// order (see `Batch::into_numbered`).
    pub fn from_requests<'a, I>(requests: I) -> Frame
    where
        I: IntoIterator<Item = (i64, &'a [IntermediateStep])>,
    {
        let mut builder = FrameBuilder::default();
        for (number, steps) in requests {
            builder.push_request(number, steps.iter().map(StepColumns::from_step));
        }
        builder.finish()
    }

    /// The frame of a parsed document: requests numbered as `Batch::into_numbered` numbers them.
    pub fn from_batch(batch: Batch) -> Frame {
        Frame::from_numbered(&batch.into_numbered())
    }

    /// The frame of requests already numbered, for callers that still need the steps after.
    pub fn from_numbered(requests: &[NumberedRequest]) -> Frame {
        Frame::from_requests(requests.iter().map(|r| (r.number, r.steps.as_slice())))
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.columns.event_type.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn row(&self, i: usize) -> Row<'_> {
        assert!(i < self.len(), "row {i} of {}", self.len());
        Row { frame: self, i }
    }

    /// Every row, in order.
    pub fn rows(&self) -> Rows<'_> {
        Rows {
            frame: self,
            range: (0, self.len()),
        }
    }

    pub fn request_rows(&self, r: &RequestSlice) -> Rows<'_> {
        Rows {
            frame: self,
            range: (r.rows.start, r.rows.end),
        }
    }

    /// Iterates `(request, rows)` in request order.
    pub fn iter_requests(&self) -> impl Iterator<Item = (&RequestSlice, Rows<'_>)> {
        self.requests.iter().map(|r| (r, self.request_rows(r)))
    }

    /// Whether the reference would have a standardized DataFrame at all. It builds the frame
    /// from every step or, when any step lacks a `function_ancestry` (JSON null) or there are no
    /// steps, returns an empty one on which every frame-based analysis aborts (B1;
    /// docs/deviations.md#d1). We give those analyses their empty result instead.
    pub fn is_standardized(&self) -> bool {
        !self.is_empty() && self.columns.node.iter().all(|n| *n != NONE)
    }

    /// The bytes the frame holds, itself included (what the service's frame cache weighs).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Frame>()
            + self.columns.heap_bytes()
            + self.strings.heap_bytes()
            + self.texts.heap_bytes()
            + self.requests.capacity() * std::mem::size_of::<RequestSlice>()
            + self
                .requests
                .iter()
                .map(|r| r.external_id.as_ref().map_or(0, String::capacity))
                .sum::<usize>()
            + self.nodes.capacity() * std::mem::size_of::<InvocationNode>()
            + self
                .nodes
                .iter()
                .map(|n| {
                    n.function_id.capacity()
                        + n.function_name.capacity()
                        + n.parent_id.as_ref().map_or(0, String::capacity)
                        + n.parent_name.as_ref().map_or(0, String::capacity)
                })
                .sum::<usize>()
            + self.usages.capacity() * std::mem::size_of::<Usage>()
    }

    /// How many bytes the steps' texts take once assembled (what an analysis that copies them
    /// would hold), without assembling them.
    pub fn text_bytes(&self) -> usize {
        self.columns
            .text
            .iter()
            .filter(|t| **t != TEXT_EMPTY && **t != TEXT_NULL)
            .map(|t| self.texts.len(*t))
            .sum()
    }
}

/// Assembles a [`Frame`] request by request; requests must arrive in ascending number order.
#[derive(Default)]
pub struct FrameBuilder {
    frame: Frame,
    strings: strings::Interner,
    texts: strings::TextsBuilder,
    nodes: rustc_hash::FxHashMap<InvocationNode, u32>,
}

impl std::fmt::Debug for FrameBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBuilder")
            .field("rows", &self.frame.len())
            .field("requests", &self.frame.requests.len())
            .finish()
    }
}

impl FrameBuilder {
    /// A builder with room for `rows` rows of `requests` requests, when the caller knows them
    /// (the store keeps both per request): the columns then grow once instead of doubling,
    /// which at its peak held half again as much as the frame.
    pub fn with_capacity(rows: usize, requests: usize) -> FrameBuilder {
        let mut b = FrameBuilder::default();
        let c = &mut b.frame.columns;
        c.event_type.reserve_exact(rows);
        c.timestamp.reserve_exact(rows);
        c.request.reserve_exact(rows);
        c.uuid.reserve_exact(rows);
        c.label.reserve_exact(rows);
        c.node.reserve_exact(rows);
        c.parent.reserve_exact(rows);
        c.framework.reserve_exact(rows);
        c.span_timestamp.reserve_exact(rows);
        c.usage.reserve_exact(rows);
        c.text.reserve_exact(rows);
        b.frame.requests.reserve_exact(requests);
        b
    }

    /// Starts a request; rows pushed next belong to it.
    pub fn begin_request(&mut self, number: i64, external_id: Option<String>) {
        let at = self.frame.len();
        self.frame.requests.push(RequestSlice {
            number,
            rows: at..at,
            external_id,
        });
    }

    /// Appends a step's columns as a row of the request begun last (begun now if none was).
    pub fn push_step(&mut self, number: i64, step: StepColumns) {
        if self.frame.requests.is_empty() {
            self.begin_request(number, None);
        }
        let request = self.frame.requests.len() - 1;
        let et = step.event_type;
        let label = match (&step.name, et) {
            (
                Some(n),
                EventType::LlmStart | EventType::LlmEnd | EventType::ToolStart | EventType::ToolEnd,
            ) => self.strings.intern(n),
            _ => EMPTY,
        };
        let text = match step.text {
            None => TEXT_NULL,
            Some(t) if t.is_empty() => TEXT_EMPTY,
            Some(t) => self.texts.push((label, et as u8), &t),
        };
        let uuid = self.strings.intern(&step.uuid);
        let parent = step.parent_id.map_or(NONE, |p| self.strings.intern(&p));
        let node = step.ancestry.map_or(NONE, |a| self.node(a));
        let usage = Usage {
            prompt: step.prompt_tokens,
            completion: step.completion_tokens,
            total: step.total_tokens,
            cached: step.cached_tokens,
            seconds_between_calls: step.seconds_between_calls,
        };
        let usage = if usage == Usage::default() {
            NONE
        } else {
            self.frame.usages.push(usage);
            u32::try_from(self.frame.usages.len() - 1).expect("fewer than 2^32 rows")
        };
        let c = &mut self.frame.columns;
        c.event_type.push(et);
        c.timestamp.push(step.event_timestamp);
        c.request
            .push(u32::try_from(request).expect("fewer than 2^32 requests"));
        c.uuid.push(uuid);
        c.label.push(label);
        c.node.push(node);
        c.parent.push(parent);
        c.framework.push(step.framework);
        c.span_timestamp
            .push(step.span_event_timestamp.map_or(NO_TIME, f64::to_bits));
        c.usage.push(usage);
        c.text.push(text);
        let end = self.frame.len();
        if let Some(last) = self.frame.requests.last_mut() {
            last.rows.end = end;
        }
    }

    /// A request and its steps.
    pub fn push_request(&mut self, number: i64, steps: impl IntoIterator<Item = StepColumns>) {
        self.begin_request(number, None);
        for step in steps {
            self.push_step(number, step);
        }
    }

    pub fn finish(mut self) -> Frame {
        self.frame.columns.shrink();
        self.frame.requests.shrink_to_fit();
        self.frame.usages.shrink_to_fit();
        self.frame.strings = self.strings.finish();
        self.frame.texts = self.texts.finish();
        let mut nodes: Vec<(u32, InvocationNode)> =
            self.nodes.into_iter().map(|(n, i)| (i, n)).collect();
        nodes.sort_unstable_by_key(|(i, _)| *i);
        self.frame.nodes = nodes.into_iter().map(|(_, n)| n).collect();
        self.frame
    }

    /// The id of a function invocation, the same for every row that ran in it: a run has a few
    /// invocations per request but some twenty steps.
    fn node(&mut self, node: InvocationNode) -> u32 {
        let next = u32::try_from(self.nodes.len()).expect("fewer than 2^32 invocations");
        *self.nodes.entry(node).or_insert(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn frame_of(steps: Value) -> Frame {
        crate::profiler::testutil::frame_of_json(json!([steps]))
    }

    #[test]
    fn rows_of_one_invocation_share_its_node() {
        let anc = |id: &str| json!({"function_id": id, "function_name": "f", "parent_id": "root", "parent_name": "root"});
        let step = |id: &str, et: &str, ts: f64| json!({"function_ancestry": anc(id), "payload": {"event_type": et, "event_timestamp": ts, "UUID": format!("{id}{ts}")}});
        let frame = frame_of(json!([
            step("a", "LLM_START", 1.0),
            step("b", "LLM_START", 2.0),
            step("a", "LLM_END", 3.0),
            {"function_ancestry": null, "payload": {"event_type": "LLM_END", "event_timestamp": 4.0, "UUID": "n"}},
        ]));
        let node = |i: usize| frame.row(i).ancestry().expect("an ancestry");
        assert!(std::ptr::eq(node(0), node(2)), "one invocation, one node");
        assert!(!std::ptr::eq(node(0), node(1)));
        assert_eq!(node(1).function_id, "b");
        assert!(frame.row(3).ancestry().is_none());
        assert_eq!(frame.nodes.len(), 2);
        assert!(!frame.is_standardized());
    }

    #[test]
    fn text_columns_follow_event_type() {
        let frame = frame_of(json!([
            {"payload": {"event_type": "LLM_START", "name": "m", "data": {"input": [{"role": "user"}], "output": "x"}}},
            {"payload": {"event_type": "LLM_END", "name": "m", "data": {"input": "p", "output": "answer"},
                         "usage_info": {"token_usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}}},
            {"payload": {"event_type": "LLM_NEW_TOKEN", "name": "m", "data": {"chunk": null}}},
            {"payload": {"event_type": "TOOL_START", "name": "search", "data": {"input": "q"}}},
            {"payload": {"event_type": "LLM_START", "name": "", "data": {"input": null}}},
            {"payload": {"event_type": "LLM_START", "name": "m"}}
        ]));
        assert_eq!(
            frame.row(0).llm_text_input().as_deref(),
            Some("[{'role': 'user'}]")
        );
        assert_eq!(frame.row(0).llm_text_output().as_deref(), Some(""));
        assert_eq!(frame.row(1).llm_text_output().as_deref(), Some("answer"));
        assert_eq!(frame.row(1).llm_text_input().as_deref(), Some(""));
        assert_eq!(
            (
                frame.row(1).prompt_tokens(),
                frame.row(1).completion_tokens(),
                frame.row(1).total_tokens()
            ),
            (3, 4, 7)
        );
        assert_eq!(frame.row(2).llm_new_token(), None);
        assert_eq!(
            frame.row(2).llm_name(),
            "",
            "LLM_NEW_TOKEN rows get no llm_name (B17)"
        );
        assert_eq!(frame.row(3).tool_name(), "search");
        assert_eq!(frame.row(3).llm_text_input().as_deref(), Some(""));
        assert_eq!(frame.row(4).llm_text_input(), None);
        assert_eq!(frame.row(4).text_input_as_str(), "None");
        assert_eq!(frame.row(4).llm_name(), "");
        assert_eq!(
            frame.row(5).llm_text_input().as_deref(),
            Some(""),
            "no data -> empty text"
        );
    }

    #[test]
    fn requests_sorted_by_number_and_merged() {
        let frame = crate::profiler::testutil::frame_of_json(json!([
            {"request_number": 5, "intermediate_steps": [{"payload": {"event_type": "TOOL_START", "event_timestamp": 1.0}}]},
            {"request_number": 2, "intermediate_steps": []},
            {"request_number": 5, "intermediate_steps": [{"payload": {"event_type": "TOOL_END", "event_timestamp": 2.0}}]}
        ]));
        let numbers: Vec<i64> = frame.requests.iter().map(|r| r.number).collect();
        assert_eq!(numbers, [2, 5]);
        assert_eq!(frame.requests[1].rows, 0..2);
        assert_eq!(frame.row(1).event_type(), EventType::ToolEnd);
        assert!(frame.is_standardized());
    }
}
