//! Seeded synthetic runs for benchmarks and load tests: ReAct-style requests as the toolkit's
//! LangChain handler records them (an agent function, 1-5 LLM/tool iterations with a long shared
//! system prompt and a growing scratchpad, nested tool functions, some streamed tokens), with
//! requests overlapping in time like `aiq eval` with 8 concurrent workers. The same seed always
//! gives the same run.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

const SYSTEM_PROMPT: &str = "Answer the following questions as best you can. You may ask the human to use the following tools:\n\n\
wikipedia_search: Search Wikipedia and return the top article extract for a query.\n\
current_datetime: Returns the current date and time in ISO-8601 format.\n\
calculator_multiply: Multiply two numbers given as a JSON list, e.g. [3, 4].\n\
webpage_summarizer: Fetch a web page and return a short bullet-point summary of it.\n\n\
Use the following format:\n\nQuestion: the input question you must answer\nThought: you should always think about what to do\n\
Action: the action to take, should be one of [wikipedia_search, current_datetime, calculator_multiply, webpage_summarizer]\n\
Action Input: the input to the action\nObservation: the result of the action\n... (this Thought/Action/Action Input/Observation can repeat N times)\n\
Thought: I now know the final answer\nFinal Answer: the final answer to the original input question\n\nBegin!\n\nQuestion: ";

const WORDS: [&str; 24] = [
    "glacier",
    "orbit",
    "canal",
    "memory",
    "protein",
    "dynasty",
    "lens",
    "matrix",
    "velocity",
    "season",
    "compiler",
    "particle",
    "telescope",
    "vector",
    "climate",
    "frequency",
    "charge",
    "reef",
    "signal",
    "galaxy",
    "carbon",
    "route",
    "empire",
    "thread",
];

const TOOLS: [&str; 4] = [
    "wikipedia_search",
    "current_datetime",
    "calculator_multiply",
    "webpage_summarizer",
];

struct Gen {
    rng: ChaCha8Rng,
    next_id: u64,
}

impl Gen {
    fn uuid(&mut self) -> String {
        self.next_id += 1;
        let a: u64 = self.rng.random_range(0..u64::MAX);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            self.next_id & 0xfff,
            self.next_id
        )
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| WORDS[self.rng.random_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One step's fields; `data`, `usage` and `span` default to null.
struct Ev<'a> {
    event_type: &'a str,
    ts: f64,
    uuid: &'a str,
    name: &'a str,
    ancestry: &'a Value,
    data: Value,
    usage: Value,
    span: Option<f64>,
}

impl Ev<'_> {
    fn json(self) -> Value {
        let framework = if self.event_type.starts_with("LLM") || self.event_type.starts_with("TOOL")
        {
            json!("langchain")
        } else {
            Value::Null
        };
        json!({
            "function_ancestry": self.ancestry,
            "payload": {
                "event_type": self.event_type, "event_timestamp": self.ts, "span_event_timestamp": self.span,
                "framework": framework, "name": self.name, "tags": null, "metadata": null, "data": self.data,
                "usage_info": self.usage, "UUID": self.uuid
            }
        })
    }
}

fn usage(prompt: i64, completion: i64, seconds: i64) -> Value {
    json!({"token_usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
           "num_llm_calls": 1, "seconds_between_calls": seconds})
}

/// One request's steps, starting at `t0`; returns the steps and the request's end time.
fn request(g: &mut Gen, t0: f64) -> (Vec<Value>, f64) {
    let mut steps = Vec::new();
    let agent_id = g.uuid();
    let root = json!({"function_id": agent_id, "function_name": "react_agent", "parent_id": "root", "parent_name": "root"});
    let question = format!("Tell me about the {} and the {}.", g.words(2), g.words(1));
    let mut t = t0;
    steps.push(
        Ev {
            event_type: "FUNCTION_START",
            ts: t,
            uuid: &agent_id,
            name: "react_agent",
            ancestry: &root,
            data: json!({"input": question, "output": null, "chunk": null}),
            usage: Value::Null,
            span: None,
        }
        .json(),
    );
    let mut scratchpad = String::new();
    let iterations = g.rng.random_range(1..=5);
    for i in 0..iterations {
        t += g.rng.random_range(0.001..0.02);
        let llm = g.uuid();
        let prompt = format!("{SYSTEM_PROMPT}{question}\n{scratchpad}");
        let inside = json!({"function_id": agent_id, "function_name": "react_agent", "parent_id": agent_id, "parent_name": "root"});
        let start = t;
        steps.push(
            Ev {
                event_type: "LLM_START",
                ts: t,
                uuid: &llm,
                name: "meta/llama-3.1-70b-instruct",
                ancestry: &inside,
                data: json!({"input": prompt, "output": null, "chunk": null}),
                usage: usage(0, 0, g.rng.random_range(0..3)),
                span: None,
            }
            .json(),
        );
        if g.rng.random_range(0..4) == 0 {
            for _ in 0..3 {
                t += g.rng.random_range(0.01..0.05);
                steps.push(
                    Ev {
                        event_type: "LLM_NEW_TOKEN",
                        ts: t,
                        uuid: &llm,
                        name: "meta/llama-3.1-70b-instruct",
                        ancestry: &inside,
                        data: json!({"input": null, "output": null, "chunk": g.words(1)}),
                        usage: usage(0, 0, 0),
                        span: None,
                    }
                    .json(),
                );
            }
        }
        t += g.rng.random_range(0.3..1.2);
        let thought = format!(
            "Thought: {}\nAction: {}\nAction Input: {}\n",
            g.words(6),
            TOOLS[i % TOOLS.len()],
            g.words(2)
        );
        let completion = g.rng.random_range(15..60);
        steps.push(
            Ev {
                event_type: "LLM_END",
                ts: t,
                uuid: &llm,
                name: "meta/llama-3.1-70b-instruct",
                ancestry: &inside,
                data: json!({"input": question, "output": thought, "chunk": null}),
                usage: usage((prompt.len() / 4) as i64, completion, 0),
                span: Some(start),
            }
            .json(),
        );
        if i + 1 == iterations {
            break;
        }
        // One tool call, sometimes two in parallel.
        let parallel = if g.rng.random_range(0..5) == 0 { 2 } else { 1 };
        let mut end = t;
        for p in 0..parallel {
            let tool = TOOLS[(i + p) % TOOLS.len()];
            let tool_id = g.uuid();
            let fn_id = g.uuid();
            let ts = t + g.rng.random_range(0.001..0.01);
            let te = ts + g.rng.random_range(0.02..0.6);
            steps.push(
                Ev {
                    event_type: "TOOL_START",
                    ts,
                    uuid: &tool_id,
                    name: tool,
                    ancestry: &inside,
                    data: json!({"input": g.words(3), "output": null, "chunk": null}),
                    usage: usage(0, 0, 0),
                    span: None,
                }
                .json(),
            );
            let fn_anc = json!({"function_id": fn_id, "function_name": tool, "parent_id": tool_id, "parent_name": "react_agent"});
            steps.push(
                Ev {
                    event_type: "FUNCTION_START",
                    ts: ts + 0.001,
                    uuid: &fn_id,
                    name: tool,
                    ancestry: &fn_anc,
                    data: json!({"input": g.words(3), "output": null, "chunk": null}),
                    usage: Value::Null,
                    span: None,
                }
                .json(),
            );
            let observation = g.words(12);
            steps.push(
                Ev {
                    event_type: "FUNCTION_END",
                    ts: te - 0.001,
                    uuid: &fn_id,
                    name: tool,
                    ancestry: &fn_anc,
                    data: json!({"input": null, "output": observation, "chunk": null}),
                    usage: Value::Null,
                    span: Some(ts + 0.001),
                }
                .json(),
            );
            steps.push(
                Ev {
                    event_type: "TOOL_END",
                    ts: te,
                    uuid: &tool_id,
                    name: tool,
                    ancestry: &inside,
                    data: json!({"input": null, "output": observation, "chunk": null}),
                    usage: usage(0, 0, 0),
                    span: Some(ts),
                }
                .json(),
            );
            scratchpad.push_str(&format!("{thought}Observation: {observation}\n"));
            end = end.max(te);
        }
        t = end;
    }
    t += g.rng.random_range(0.001..0.01);
    steps.push(
        Ev {
            event_type: "FUNCTION_END",
            ts: t,
            uuid: &agent_id,
            name: "react_agent",
            ancestry: &root,
            data: json!({"input": null, "output": "Final Answer", "chunk": null}),
            usage: Value::Null,
            span: Some(t0),
        }
        .json(),
    );
    (steps, t)
}

/// A run of `requests` requests in the profiler form
/// (`[{"request_number", "intermediate_steps"}]`), about 20 steps and 25 KB per request.
pub fn profiler_document(requests: usize, seed: u64) -> Value {
    profiler_document_from(0, requests, seed)
}

/// Like [`profiler_document`], numbering requests from `first`.
pub fn profiler_document_from(first: usize, requests: usize, seed: u64) -> Value {
    profiler_document_with(first, requests, seed, 8)
}

/// Like [`profiler_document_from`], with `workers` requests in flight at once (an eval's
/// concurrency) instead of 8.
pub fn profiler_document_with(first: usize, requests: usize, seed: u64, workers: usize) -> Value {
    profiler_document_at(first, requests, seed, workers, 1_748_779_200.0)
}

/// Like [`profiler_document_with`], the workers starting at `t0` (Unix seconds): consecutive
/// batches of a long run, each starting where the previous one's last request started, read as
/// one stream of traffic.
pub fn profiler_document_at(
    first: usize,
    requests: usize,
    seed: u64,
    workers: usize,
    t0: f64,
) -> Value {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
        next_id: seed << 32,
    };
    let mut slots = vec![t0; workers.max(1)];
    let docs: Vec<Value> = (0..requests)
        .map(|i| {
            let k = (0..slots.len())
                .min_by(|a, b| slots[*a].total_cmp(&slots[*b]))
                .unwrap_or(0);
            let t0 = slots[k] + g.rng.random_range(0.001..0.03);
            let (steps, end) = request(&mut g, t0);
            slots[k] = end;
            json!({"request_number": first + i, "intermediate_steps": steps})
        })
        .collect();
    Value::Array(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{ParseOptions, parse_value};

    #[test]
    fn deterministic_and_valid() {
        let a = profiler_document(5, 1);
        assert_eq!(a, profiler_document(5, 1));
        assert_ne!(a, profiler_document(5, 2));
        let batch = parse_value(a, &ParseOptions::default()).expect("valid steps");
        assert_eq!(batch.requests.len(), 5);
        assert!(batch.step_count() > 20);
    }
}
