//! `workflow_output_atif.json`: each request's steps as an ATIF v1.7 trajectory (the Agent
//! Trajectory Interchange Format), as nvidia-nat 1.9's `nat eval` writes them
//! (docs/toolkit-semantics.md#atif-trajectories).
//!
//! A trajectory is the user's input, then one agent step per LLM call carrying the tool and
//! function calls that ended before the next LLM call, then the workflow's final answer when it
//! differs from the last LLM output. Texts are Python's `str()` of the step data, timestamps
//! `datetime.isoformat()`, so the file equals nat's byte for byte.

use crate::py::literal::literal_eval;
use crate::py::repr::{py_repr, py_str};
use crate::py::time::{isoformat_utc, to_microseconds};
use crate::trace::{EventType, IntermediateStep, InvocationNode};
use serde::Serialize;
use serde_json::{Map, Value};

/// One eval item: what identified it, and what the trajectory is built from.
#[derive(Debug, Clone)]
pub struct AtifItem<'a> {
    /// The dataset's id (the request number when the run has no eval ids).
    pub item_id: Value,
    /// The dataset's answer.
    pub expected_output: Value,
    /// The workflow's answer.
    pub output: Value,
    pub steps: &'a [IntermediateStep],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AtifSample {
    /// The dataset's id, any JSON value.
    pub item_id: Value,
    pub trajectory: Trajectory,
    /// The dataset's answer, any JSON value.
    pub expected_output_obj: Value,
    /// The workflow's answer, any JSON value.
    pub output_obj: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trajectory {
    /// Always `ATIF-v1.7`.
    pub schema_version: &'static str,
    /// Python's `module.type:repr(id)` of the item id, e.g. `builtins.int:1`.
    pub session_id: String,
    pub trajectory_id: Option<String>,
    pub agent: Agent,
    pub steps: Vec<Step>,
    pub notes: Option<String>,
    pub final_metrics: Option<FinalMetrics>,
    pub continued_trajectory_ref: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub subagent_trajectories: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    pub name: String,
    pub version: &'static str,
    /// The first LLM call's model.
    pub model_name: Option<String>,
    /// Only a live run's trace metadata carries them; never an eval file.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub tool_definitions: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Step {
    pub step_id: usize,
    pub timestamp: String,
    /// `user` or `agent`.
    pub source: &'static str,
    pub model_name: Option<String>,
    pub reasoning_effort: Option<String>,
    pub message: String,
    pub reasoning_content: Option<String>,
    pub tool_calls: Option<Vec<ToolCall>>,
    pub observation: Option<Observation>,
    pub metrics: Option<Metrics>,
    pub is_copied_context: Option<bool>,
    /// `ancestry`, `invocation` and the calls' `tool_ancestry` / `tool_invocations`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<Map<String, Value>>,
    pub llm_call_count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolCall {
    pub tool_call_id: String,
    pub function_name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub arguments: Map<String, Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Observation {
    pub results: Vec<ObservationResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObservationResult {
    pub source_call_id: String,
    pub content: String,
    pub subagent_trajectory_ref: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metrics {
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub prompt_token_ids: Option<Vec<i64>>,
    pub completion_token_ids: Option<Vec<i64>>,
    pub logprobs: Option<Vec<f64>>,
    /// `{"reasoning_tokens": n}` when the call reported some.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FinalMetrics {
    /// Sums of per-call counts, which may each be any i64: Python's sums never overflow, and
    /// in 128 bits neither do ours.
    pub total_prompt_tokens: Option<i128>,
    pub total_completion_tokens: Option<i128>,
    pub total_cached_tokens: Option<i128>,
    pub total_cost_usd: Option<f64>,
    /// Agent steps.
    pub total_steps: usize,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<Value>,
}

/// The file: one sample per item, in order.
pub fn samples(items: &[AtifItem]) -> Vec<AtifSample> {
    items
        .iter()
        .map(|item| AtifSample {
            item_id: item.item_id.clone(),
            trajectory: convert(item.steps, session_id(&item.item_id)),
            expected_output_obj: item.expected_output.clone(),
            output_obj: item.output.clone(),
            metadata: Map::new(),
        })
        .collect()
}

/// `f"{type(id).__module__}.{type(id).__qualname__}:{id!r}"`.
fn session_id(id: &Value) -> String {
    let kind = match id {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    format!("builtins.{kind}:{}", py_repr(id))
}

/// A tool or function call seen while an LLM turn was open.
struct Invocation {
    order_key: f64,
    call: ToolCall,
    result: ObservationResult,
    ancestry: Value,
    invocation: Value,
}

/// An agent turn: an LLM_END, then the calls that end before the next one.
struct Turn {
    message: String,
    timestamp: f64,
    model_name: Option<String>,
    metrics: Option<Metrics>,
    ancestry: Value,
    invocation: Value,
    calls: Vec<Invocation>,
}

struct Builder {
    steps: Vec<Step>,
    /// Each step's epoch seconds, for reading its timestamp back.
    times: Vec<f64>,
    pending: Option<Turn>,
}

impl Builder {
    fn push(&mut self, source: &'static str, message: String, ts: f64) -> &mut Step {
        self.times.push(ts);
        self.steps.push(Step {
            step_id: self.steps.len() + 1,
            timestamp: isoformat_utc(ts).unwrap_or_default(),
            source,
            model_name: None,
            reasoning_effort: None,
            message,
            reasoning_content: None,
            tool_calls: None,
            observation: None,
            metrics: None,
            is_copied_context: None,
            extra: None,
            llm_call_count: None,
        });
        let last = self.steps.len() - 1;
        &mut self.steps[last]
    }

    fn flush(&mut self) {
        let Some(mut turn) = self.pending.take() else {
            return;
        };
        turn.calls
            .sort_by(|a, b| a.order_key.total_cmp(&b.order_key));
        let mut extra = Map::new();
        extra.insert("ancestry".to_owned(), turn.ancestry);
        extra.insert("invocation".to_owned(), turn.invocation);
        extra.insert(
            "tool_ancestry".to_owned(),
            Value::Array(turn.calls.iter().map(|c| c.ancestry.clone()).collect()),
        );
        if !turn.calls.is_empty() {
            extra.insert(
                "tool_invocations".to_owned(),
                Value::Array(turn.calls.iter().map(|c| c.invocation.clone()).collect()),
            );
        }
        let (calls, results): (Vec<ToolCall>, Vec<ObservationResult>) =
            turn.calls.into_iter().map(|c| (c.call, c.result)).unzip();
        let step = self.push("agent", turn.message, turn.timestamp);
        step.model_name = turn.model_name;
        step.metrics = turn.metrics;
        step.observation = (!results.is_empty()).then_some(Observation { results });
        step.tool_calls = (!calls.is_empty()).then_some(calls);
        step.extra = Some(extra);
    }
}

/// `IntermediateStepToATIFConverter.convert`.
fn convert(steps: &[IntermediateStep], session_id: String) -> Trajectory {
    let mut agent = Agent {
        name: "nat-agent".to_owned(),
        version: "0.0.0",
        model_name: None,
        tool_definitions: None,
        extra: None,
    };
    let mut trajectory = Trajectory {
        schema_version: "ATIF-v1.7",
        session_id,
        trajectory_id: None,
        agent: agent.clone(),
        steps: Vec::new(),
        notes: None,
        final_metrics: None,
        continued_trajectory_ref: None,
        extra: None,
        subagent_trajectories: None,
    };
    if steps.is_empty() {
        return trajectory;
    }
    let mut order: Vec<&IntermediateStep> = steps.iter().collect();
    order.sort_by(|a, b| {
        a.payload
            .event_timestamp
            .total_cmp(&b.payload.event_timestamp)
    });
    let mut b = Builder {
        steps: Vec::new(),
        times: Vec::new(),
        pending: None,
    };
    let (mut prompt, mut completion, mut cached) = (0i128, 0i128, 0i128);
    for step in order {
        let p = &step.payload;
        let ts = p.event_timestamp;
        let data = p.data.as_ref();
        match p.event_type {
            EventType::WorkflowStart => {
                let message = data
                    .map(|d| &d.input)
                    .filter(|v| !v.is_null())
                    .map_or_else(String::new, user_input);
                if let Some(name) = step
                    .function_ancestry
                    .as_ref()
                    .map(|a| a.function_name.as_str())
                    .filter(|n| !n.is_empty() && *n != "root")
                {
                    agent.name = name.to_owned();
                }
                let extra = ancestry_and_invocation(step);
                b.push("user", message, ts).extra = Some(extra);
            }
            EventType::WorkflowEnd => {
                b.flush();
                let last = b.steps.iter().rposition(|s| s.source == "agent");
                let final_text = data
                    .map(|d| &d.output)
                    .filter(|v| !v.is_null())
                    .map_or_else(String::new, py_str);
                // nat reads the last agent step's timestamp text back: microsecond-rounded.
                let (last_message, last_ts) = match last {
                    Some(i) => (b.steps[i].message.as_str(), to_microseconds(b.times[i])),
                    None => ("", None),
                };
                let later = last_ts.is_some_and(|t| ts > t);
                if !final_text.is_empty() && (final_text != last_message || later) {
                    let extra = ancestry_and_invocation(step);
                    b.push("agent", final_text, ts).extra = Some(extra);
                }
            }
            EventType::LlmEnd => {
                b.flush();
                let metrics = metrics_of(step);
                if let Some(m) = &metrics {
                    prompt += i128::from(m.prompt_tokens.unwrap_or(0));
                    completion += i128::from(m.completion_tokens.unwrap_or(0));
                    cached += i128::from(m.cached_tokens.unwrap_or(0));
                }
                if agent.model_name.is_none() {
                    agent.model_name = p.name.clone().filter(|n| !n.is_empty());
                }
                b.pending = Some(Turn {
                    message: data.map_or_else(String::new, |d| text_of(&d.output)),
                    timestamp: ts,
                    model_name: p.name.clone(),
                    metrics,
                    ancestry: ancestry(step),
                    invocation: invocation(step, None),
                    calls: Vec::new(),
                });
            }
            EventType::ToolEnd | EventType::FunctionEnd => {
                let Some(call) = observed(step) else {
                    continue;
                };
                if let Some(turn) = &mut b.pending {
                    turn.calls.push(call);
                    continue;
                }
                // A call before any LLM call (a prompt template, say) is a step of its own.
                let mut extra = ancestry_and_invocation(step);
                extra.insert(
                    "tool_invocations".to_owned(),
                    Value::Array(vec![call.invocation]),
                );
                extra.insert(
                    "tool_ancestry".to_owned(),
                    Value::Array(vec![call.ancestry]),
                );
                let s = b.push("agent", String::new(), ts);
                s.tool_calls = Some(vec![call.call]);
                s.observation = Some(Observation {
                    results: vec![call.result],
                });
                s.extra = Some(extra);
            }
            _ => {}
        }
    }
    b.flush();
    let agent_steps = b.steps.iter().filter(|s| s.source == "agent").count();
    if prompt != 0 || completion != 0 || cached != 0 || agent_steps > 0 {
        trajectory.final_metrics = Some(FinalMetrics {
            total_prompt_tokens: (prompt != 0).then_some(prompt),
            total_completion_tokens: (completion != 0).then_some(completion),
            total_cached_tokens: (cached != 0).then_some(cached),
            total_cost_usd: None,
            total_steps: agent_steps,
            extra: None,
        });
    }
    trajectory.agent = agent;
    trajectory.steps = b.steps;
    trajectory
}

/// `str()` of a value, `""` for null.
fn text_of(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        py_str(v)
    }
}

/// Python's truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `extract_user_input`: the text itself, an `input_message`, the last user message of a chat,
/// or `str()` of whatever else it is.
fn user_input(v: &Value) -> String {
    if let Value::Object(o) = v {
        if let Some(m) = o.get("input_message").filter(|m| truthy(m)) {
            return py_str(m);
        }
        if let Some(Value::Array(messages)) = o.get("messages").filter(|m| truthy(m)) {
            let mut last = &Value::String(String::new());
            for m in messages {
                if let Value::Object(m) = m
                    && m.get("role").and_then(Value::as_str) == Some("user")
                {
                    last = m.get("content").unwrap_or(&Value::Null);
                }
            }
            if truthy(last) {
                return py_str(last);
            }
        }
    }
    py_str(v)
}

fn ancestry(step: &IntermediateStep) -> Value {
    let node = step
        .function_ancestry
        .clone()
        .unwrap_or_else(InvocationNode::not_available);
    let mut m = Map::new();
    m.insert("function_id".to_owned(), Value::from(node.function_id));
    m.insert("function_name".to_owned(), Value::from(node.function_name));
    if let Some(id) = node.parent_id {
        m.insert("parent_id".to_owned(), Value::from(id));
    }
    if let Some(name) = node.parent_name {
        m.insert("parent_name".to_owned(), Value::from(name));
    }
    Value::Object(m)
}

/// The invocation record: the span's times (an END with a span start), an id, the framework.
fn invocation(step: &IntermediateStep, id: Option<&str>) -> Value {
    let p = &step.payload;
    let mut m = Map::new();
    if let Some(start) = p.span_event_timestamp {
        m.insert("start_timestamp".to_owned(), Value::from(start));
        m.insert("end_timestamp".to_owned(), Value::from(p.event_timestamp));
    }
    if let Some(id) = id {
        m.insert("invocation_id".to_owned(), Value::from(id));
    }
    m.insert("status".to_owned(), Value::from("completed"));
    if let Some(f) = p.framework {
        m.insert("framework".to_owned(), Value::from(f.as_str()));
    }
    Value::Object(m)
}

fn ancestry_and_invocation(step: &IntermediateStep) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ancestry".to_owned(), ancestry(step));
    m.insert("invocation".to_owned(), invocation(step, None));
    m
}

/// A TOOL_END or FUNCTION_END as a call with its result; the workflow function itself is none.
fn observed(step: &IntermediateStep) -> Option<Invocation> {
    let p = &step.payload;
    let name = p
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown_tool".to_owned());
    if name == "<workflow>" {
        return None;
    }
    let (arguments, content) = match &p.data {
        Some(d) => (tool_arguments(&d.input), text_of(&d.output)),
        None => (Map::new(), String::new()),
    };
    let id = format!("call_{}", p.uuid);
    Some(Invocation {
        order_key: p
            .span_event_timestamp
            .filter(|s| *s != 0.0)
            .unwrap_or(p.event_timestamp),
        call: ToolCall {
            tool_call_id: id.clone(),
            function_name: name,
            arguments,
            extra: None,
        },
        result: ObservationResult {
            source_call_id: id.clone(),
            content,
            subagent_trajectory_ref: None,
            extra: None,
        },
        ancestry: ancestry(step),
        invocation: invocation(step, Some(&id)),
    })
}

/// A tool's input as arguments: an object as it is, a string that holds a JSON object or a Python
/// dict literal as that object, any other text as `{"input": text}`.
fn tool_arguments(input: &Value) -> Map<String, Value> {
    let single = |text: String| {
        let mut m = Map::new();
        m.insert("input".to_owned(), Value::from(text));
        m
    };
    match input {
        Value::Object(o) => o.clone(),
        Value::Null => Map::new(),
        Value::String(s) => {
            let parsed = serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .or_else(|| literal_eval(s).filter(Value::is_object));
            match parsed {
                Some(Value::Object(o)) => o,
                _ if s.is_empty() => Map::new(),
                _ => single(s.clone()),
            }
        }
        other => single(py_str(other)),
    }
}

/// The call's token counts, or none when it reported no usage (or all zeros).
fn metrics_of(step: &IntermediateStep) -> Option<Metrics> {
    let t = &step.payload.usage_info.as_ref()?.token_usage;
    if t.prompt_tokens == 0 && t.completion_tokens == 0 && t.total_tokens == 0 {
        return None;
    }
    let some = |n: i64| (n != 0).then_some(n);
    let reasoning = t.reasoning_tokens.unwrap_or(0);
    Some(Metrics {
        prompt_tokens: some(t.prompt_tokens),
        completion_tokens: some(t.completion_tokens),
        cached_tokens: some(t.cached_tokens.unwrap_or(0)),
        cost_usd: None,
        prompt_token_ids: None,
        completion_token_ids: None,
        logprobs: None,
        extra: (reasoning != 0).then(|| serde_json::json!({ "reasoning_tokens": reasoning })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{ParseOptions, parse_value};
    use serde_json::json;

    /// Token totals are sums of any i64 counts, as Python's unbounded ints are; two calls of
    /// `i64::MAX` prompt tokens used to overflow.
    #[test]
    fn token_totals_do_not_overflow() {
        let call = |uuid: &str, t: f64| {
            json!([
                {"payload": {"event_type": "LLM_START", "event_timestamp": t, "UUID": uuid, "name": "m"}},
                {"payload": {"event_type": "LLM_END", "event_timestamp": t + 1.0, "UUID": uuid, "name": "m",
                    "usage_info": {"token_usage": {"prompt_tokens": i64::MAX, "completion_tokens": 1, "total_tokens": 1}}}}
            ])
        };
        let mut steps = call("a", 1.0).as_array().unwrap().clone();
        steps.extend(call("b", 3.0).as_array().unwrap().clone());
        let batch = parse_value(json!([steps]), &ParseOptions::default()).unwrap();
        let steps: Vec<IntermediateStep> = batch.requests[0].steps.clone();
        let out = samples(&[AtifItem {
            item_id: json!(0),
            expected_output: Value::Null,
            output: Value::Null,
            steps: &steps,
        }]);
        let totals = out[0].trajectory.final_metrics.as_ref().unwrap();
        assert_eq!(totals.total_prompt_tokens, Some(2 * i128::from(i64::MAX)));
        let text = String::from_utf8(crate::py::json::to_vec(&out)).unwrap();
        assert!(text.contains("18446744073709551614"), "{text}");
    }
}
