//! The standardized frame (docs/toolkit-semantics.md#standardized-frame): one row per step, in input order, request by
//! request. Every analysis reads these rows, never the raw steps, so the service can build them
//! straight from stored columns without re-parsing step JSON.

use crate::py::repr::py_str;
use crate::trace::{
    Batch, EventType, Framework, IntermediateStep, InvocationNode, NumberedRequest,
};
use serde_json::Value;
use std::ops::Range;
use std::sync::Arc;

/// One step as the profiler sees it: the columns of `create_standardized_dataframe`, plus
/// `seconds_between_calls` for forecasting.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub event_type: EventType,
    pub event_timestamp: f64,
    /// The request's number (the reference's `example_number`).
    pub example_number: i64,
    /// Token counts; 0 when `usage_info` is null.
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub seconds_between_calls: i64,
    /// `str(data.input)` on LLM_START with data, `""` otherwise; `None` for a null input.
    pub llm_text_input: Option<String>,
    /// `str(data.output)` on LLM_END with data, `""` otherwise; `None` for a null output.
    pub llm_text_output: Option<String>,
    /// `str(data.chunk)` on LLM_NEW_TOKEN with data, `""` otherwise; `None` for a null chunk.
    pub llm_new_token: Option<String>,
    /// `payload.name` on LLM_START/LLM_END when non-empty, else `""`.
    pub llm_name: String,
    /// `payload.name` on TOOL_START/TOOL_END when non-empty, else `""`.
    pub tool_name: String,
    /// `None` when the step's `function_ancestry` was JSON `null`. Shared by every row of the
    /// frame that ran in the same function invocation (see [`FrameBuilder`]).
    pub ancestry: Option<Arc<InvocationNode>>,
    pub uuid: String,
    pub framework: Option<Framework>,
    /// The span's start, which END steps may carry (nat 1.9's prediction trie reads it).
    pub span_event_timestamp: Option<f64>,
    /// nat 1.9's top-level `parent_id`: the parent span's UUID.
    pub parent_id: Option<String>,
}

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
            seconds_between_calls: p.usage_info.as_ref().map_or(0, |u| u.seconds_between_calls),
            text,
            span_event_timestamp: p.span_event_timestamp,
            parent_id: step.parent_id.clone(),
        }
    }

    /// The frame row of this step in request `example_number`.
    pub fn into_row(self, example_number: i64) -> Row {
        let et = self.event_type;
        let name_if = |types: [EventType; 2]| match &self.name {
            Some(n) if !n.is_empty() && types.contains(&et) => n.clone(),
            _ => String::new(),
        };
        let llm_name = name_if([EventType::LlmStart, EventType::LlmEnd]);
        let tool_name = name_if([EventType::ToolStart, EventType::ToolEnd]);
        let empty = || Some(String::new());
        let (llm_text_input, llm_text_output, llm_new_token) = match et {
            EventType::LlmStart => (self.text, empty(), empty()),
            EventType::LlmEnd => (empty(), self.text, empty()),
            EventType::LlmNewToken => (empty(), empty(), self.text),
            _ => (empty(), empty(), empty()),
        };
        Row {
            event_type: et,
            event_timestamp: self.event_timestamp,
            example_number,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            seconds_between_calls: self.seconds_between_calls,
            llm_text_input,
            llm_text_output,
            llm_new_token,
            llm_name,
            tool_name,
            ancestry: self.ancestry.map(Arc::new),
            uuid: self.uuid,
            framework: self.framework,
            span_event_timestamp: self.span_event_timestamp,
            parent_id: self.parent_id,
        }
    }
}

impl Row {
    pub fn from_step(step: &IntermediateStep, example_number: i64) -> Row {
        StepColumns::from_step(step).into_row(example_number)
    }

    /// `llm_text_input.astype(str)`: a null input reads as the string `"None"`.
    pub fn text_input_as_str(&self) -> &str {
        self.llm_text_input.as_deref().unwrap_or("None")
    }

    pub fn function_name(&self) -> Option<&str> {
        self.ancestry.as_ref().map(|a| a.function_name.as_str())
    }
}

/// Fills `order` with the indices of a request's rows in time order. Stable: rows with equal
/// timestamps keep their input order, where the reference's order is unspecified
/// (docs/deviations.md#d5); every analysis that walks a request in time goes through here so
/// they agree.
pub fn time_order(rows: &[Row], order: &mut Vec<usize>) {
    order.clear();
    order.extend(0..rows.len());
    order.sort_by(|a, b| {
        rows[*a]
            .event_timestamp
            .total_cmp(&rows[*b].event_timestamp)
    });
}

/// The earliest and the latest timestamp among `rows`; `None` for no rows.
pub fn time_span(rows: &[Row]) -> Option<(f64, f64)> {
    let first = rows.first()?.event_timestamp;
    Some(rows.iter().fold((first, first), |(lo, hi), r| {
        (lo.min(r.event_timestamp), hi.max(r.event_timestamp))
    }))
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
    pub rows: Vec<Row>,
    pub requests: Vec<RequestSlice>,
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
            builder.push_request(number, steps.iter().map(|s| Row::from_step(s, number)));
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

    pub fn request_rows(&self, r: &RequestSlice) -> &[Row] {
        &self.rows[r.rows.clone()]
    }

    /// Iterates `(request, rows)` in request order.
    pub fn iter_requests(&self) -> impl Iterator<Item = (&RequestSlice, &[Row])> {
        self.requests.iter().map(|r| (r, self.request_rows(r)))
    }

    /// Whether the reference would have a standardized DataFrame at all. It builds the frame
    /// from every step or, when any step lacks a `function_ancestry` (JSON null) or there are no
    /// steps, returns an empty one on which every frame-based analysis aborts (B1; docs/deviations.md#d1). We give
    /// those analyses their empty result instead.
    pub fn is_standardized(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.ancestry.is_some())
    }
}

/// Assembles a [`Frame`] request by request; requests must arrive in ascending number order.
///
/// Rows that ran in the same function invocation share one [`InvocationNode`]: a run has a few
/// invocations per request but some twenty steps, and four strings per row were a large part of
/// a frame's memory, which is what the service's frame cache holds.
#[derive(Debug, Default)]
pub struct FrameBuilder {
    frame: Frame,
    ancestries: rustc_hash::FxHashSet<Arc<InvocationNode>>,
}

impl FrameBuilder {
    /// Starts a request; rows pushed next belong to it.
    pub fn begin_request(&mut self, number: i64, external_id: Option<String>) {
        let at = self.frame.rows.len();
        self.frame.requests.push(RequestSlice {
            number,
            rows: at..at,
            external_id,
        });
    }

    /// Appends a row to the request begun last.
    pub fn push_row(&mut self, row: Row) {
        let row = self.shared(row);
        self.frame.rows.push(row);
        if let Some(last) = self.frame.requests.last_mut() {
            last.rows.end = self.frame.rows.len();
        }
    }

    pub fn push_request(&mut self, number: i64, rows: impl IntoIterator<Item = Row>) {
        let start = self.frame.rows.len();
        for row in rows {
            let row = self.shared(row);
            self.frame.rows.push(row);
        }
        let end = self.frame.rows.len();
        self.frame.requests.push(RequestSlice {
            number,
            rows: start..end,
            external_id: None,
        });
    }

    pub fn finish(self) -> Frame {
        self.frame
    }

    /// The row with its ancestry replaced by an equal one already in the frame, if any.
    fn shared(&mut self, mut row: Row) -> Row {
        if let Some(node) = row.ancestry.take() {
            row.ancestry = Some(match self.ancestries.get(&*node) {
                Some(seen) => Arc::clone(seen),
                None => {
                    self.ancestries.insert(Arc::clone(&node));
                    node
                }
            });
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn rows_of(steps: Value) -> Vec<Row> {
        crate::profiler::testutil::frame_of_json(json!([steps])).rows
    }

    #[test]
    fn rows_of_one_invocation_share_its_node() {
        let anc = |id: &str| json!({"function_id": id, "function_name": "f", "parent_id": "root", "parent_name": "root"});
        let step = |id: &str, et: &str, ts: f64| json!({"function_ancestry": anc(id), "payload": {"event_type": et, "event_timestamp": ts, "UUID": format!("{id}{ts}")}});
        let rows = rows_of(json!([
            step("a", "LLM_START", 1.0),
            step("b", "LLM_START", 2.0),
            step("a", "LLM_END", 3.0),
            {"function_ancestry": null, "payload": {"event_type": "LLM_END", "event_timestamp": 4.0, "UUID": "n"}},
        ]));
        let node = |i: usize| rows[i].ancestry.as_ref().expect("an ancestry");
        assert!(Arc::ptr_eq(node(0), node(2)), "one invocation, one node");
        assert!(!Arc::ptr_eq(node(0), node(1)));
        assert_eq!(node(1).function_id, "b");
        assert!(rows[3].ancestry.is_none());
    }

    #[test]
    fn text_columns_follow_event_type() {
        let rows = rows_of(json!([
            {"payload": {"event_type": "LLM_START", "name": "m", "data": {"input": [{"role": "user"}], "output": "x"}}},
            {"payload": {"event_type": "LLM_END", "name": "m", "data": {"input": "p", "output": "answer"},
                         "usage_info": {"token_usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}}},
            {"payload": {"event_type": "LLM_NEW_TOKEN", "name": "m", "data": {"chunk": null}}},
            {"payload": {"event_type": "TOOL_START", "name": "search", "data": {"input": "q"}}},
            {"payload": {"event_type": "LLM_START", "name": "", "data": {"input": null}}},
            {"payload": {"event_type": "LLM_START", "name": "m"}}
        ]));
        assert_eq!(
            rows[0].llm_text_input.as_deref(),
            Some("[{'role': 'user'}]")
        );
        assert_eq!(rows[0].llm_text_output.as_deref(), Some(""));
        assert_eq!(rows[1].llm_text_output.as_deref(), Some("answer"));
        assert_eq!(rows[1].llm_text_input.as_deref(), Some(""));
        assert_eq!(
            (
                rows[1].prompt_tokens,
                rows[1].completion_tokens,
                rows[1].total_tokens
            ),
            (3, 4, 7)
        );
        assert_eq!(rows[2].llm_new_token, None);
        assert_eq!(
            rows[2].llm_name, "",
            "LLM_NEW_TOKEN rows get no llm_name (B17)"
        );
        assert_eq!(rows[3].tool_name, "search");
        assert_eq!(rows[3].llm_text_input.as_deref(), Some(""));
        assert_eq!(rows[4].llm_text_input, None);
        assert_eq!(rows[4].text_input_as_str(), "None");
        assert_eq!(rows[4].llm_name, "");
        assert_eq!(
            rows[5].llm_text_input.as_deref(),
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
        assert_eq!(frame.rows[1].event_type, EventType::ToolEnd);
        assert!(frame.is_standardized());
    }
}
