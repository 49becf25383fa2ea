//! The six "NOVA" columns that `compute_llm_metrics` appends to the CSV (docs/toolkit-semantics.md#nova-llm-metrics).

use crate::profiler::core::frame::Frame;
use crate::trace::EventType;
use std::collections::HashMap;

/// NOVA values of one row; `NOVA-Event-ID` is the row's `function_name`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NovaRow {
    /// LLM_STARTs of the row's (request, function) strictly after it; -1 when the group has none.
    pub requests_remaining: f64,
    /// Milliseconds to the next such LLM_START, or -1.
    pub time_to_next_event: f64,
    /// Milliseconds to the group's last LLM_START when it is still ahead, or -1.
    pub time_to_event_end: f64,
    /// On LLM_START rows: the completion tokens of the LLM_END with the same UUID.
    pub predicted_osl: Option<f64>,
    /// Milliseconds to the request's last event.
    pub time_to_session_end: f64,
}

/// The NOVA columns for every row of the frame, in row order.
#[derive(Debug, Clone, PartialEq)]
pub struct NovaColumns {
    pub rows: Vec<NovaRow>,
    /// pandas keeps `NOVA-Requests-Remaining-In-Event` an integer column (`-1`) unless some
    /// group had an LLM_START, which turns the whole column into floats (`-1.0`, `2.0`).
    pub requests_remaining_is_float: bool,
}

pub fn compute(frame: &Frame) -> NovaColumns {
    let mut rows: Vec<NovaRow> = frame
        .rows()
        .iter()
        .map(|_| NovaRow {
            requests_remaining: -1.0,
            time_to_next_event: -1.0,
            time_to_event_end: -1.0,
            predicted_osl: None,
            time_to_session_end: 0.0,
        })
        .collect();
    let mut any_group_with_starts = false;
    for (req, req_rows) in frame.iter_requests() {
        let base = req.rows.start;
        // Groups by function_name; rows without ancestry belong to no group (pandas drops NaN keys).
        let mut groups: HashMap<&str, Vec<f64>> = HashMap::new();
        for r in req_rows.iter() {
            if let Some(f) = r.function_name() {
                let starts = groups.entry(f).or_default();
                if r.event_type() == EventType::LlmStart {
                    starts.push(r.event_timestamp());
                }
            }
        }
        for starts in groups.values_mut() {
            starts.sort_by(f64::total_cmp);
            any_group_with_starts |= !starts.is_empty();
        }
        let session_end = req_rows
            .iter()
            .map(|r| r.event_timestamp())
            .fold(f64::NEG_INFINITY, f64::max);
        for (i, r) in req_rows.iter().enumerate() {
            let out = &mut rows[base + i];
            let t = r.event_timestamp();
            out.time_to_session_end = (session_end - t) * 1000.0;
            let Some(starts) = r.function_name().and_then(|f| groups.get(f)) else {
                continue;
            };
            if starts.is_empty() {
                continue;
            }
            // searchsorted(side="right"): starts at exactly t are not ahead.
            let idx = starts.partition_point(|s| *s <= t);
            let remaining = starts.len() - idx;
            out.requests_remaining = remaining as f64;
            out.time_to_next_event = starts.get(idx).map_or(-1.0, |s| (s - t) * 1000.0);
            let last = starts[starts.len() - 1];
            out.time_to_event_end = if remaining > 0 && last > t {
                (last - t) * 1000.0
            } else {
                -1.0
            };
        }
    }
    // Predicted output length: LLM_END completion tokens by UUID, the last END winning.
    let mut completion_by_uuid: HashMap<&str, i64> = HashMap::new();
    for r in frame.rows().iter() {
        if r.event_type() == EventType::LlmEnd {
            completion_by_uuid.insert(r.uuid(), r.completion_tokens());
        }
    }
    for (r, out) in frame.rows().iter().zip(rows.iter_mut()) {
        if r.event_type() == EventType::LlmStart {
            out.predicted_osl = completion_by_uuid.get(r.uuid()).map(|c| *c as f64);
        }
    }
    NovaColumns {
        rows,
        requests_remaining_is_float: any_group_with_starts,
    }
}
