"""The hand-written tool-calling agent loop on the `openai` client, shared by agent_openai_v2.py and
agent_openllmetry.py. The client instrumentation (the library under test) makes the chat spans; the
agent (invoke_agent) and tool (execute_tool) spans are made by this program through a `spans`
object, so each program decides how (util-genai TelemetryHandler, or the plain OTel API).

One trace per question; q4 is sent with stream=True + stream_options.include_usage.
"""
from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Protocol

import genai_common as gc
from fake_openai import QUESTIONS, convert, weather

IMPLS = {"get_weather": lambda a: weather(a["city"]), "convert_temperature": lambda a: convert(a["celsius"])}
DESCRIPTIONS = {t["function"]["name"]: t["function"]["description"] for t in gc.TOOLS_OPENAI}
STREAMED = ("q4",)


class AgentHandle(Protocol):
    span_id: int
    trace_id: int

    def finish(self, final: str, input_tokens: int, output_tokens: int) -> None: ...


class ToolHandle(Protocol):
    span_id: int

    def finish(self, result: dict) -> None: ...


class HandMadeSpans(Protocol):
    def agent(self, question: str, conversation_id: str) -> AbstractContextManager[AgentHandle]: ...

    def tool(self, name: str, call_id: str, description: str, arguments: dict) -> AbstractContextManager[ToolHandle]: ...


def _call(client, messages: list[dict], stream: bool) -> tuple[dict, list[dict], str | None]:
    if not stream:
        r = client.chat.completions.create(model=gc.REQUEST_MODEL, messages=messages, tools=gc.TOOLS_OPENAI, temperature=0.0)
        msg = r.choices[0].message
        u = r.usage
        chat = {
            "response_id": r.id, "response_model": r.model, "finish_reason": r.choices[0].finish_reason,
            "input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
            "cached_tokens": u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else None,
            "reasoning_tokens": u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else None,
            "streamed": False,
        }
        tool_calls = [{"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments} for tc in (msg.tool_calls or [])]
        return chat, tool_calls, msg.content
    chunks = list(client.chat.completions.create(
        model=gc.REQUEST_MODEL, messages=messages, tools=gc.TOOLS_OPENAI, temperature=0.0,
        stream=True, stream_options={"include_usage": True}))
    content = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    fin = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    u = next(c.usage for c in chunks if c.usage)
    chat = {
        "response_id": chunks[0].id, "response_model": chunks[0].model, "finish_reason": fin[-1],
        "input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
        "cached_tokens": u.prompt_tokens_details.cached_tokens, "reasoning_tokens": u.completion_tokens_details.reasoning_tokens,
        "streamed": True, "chunks": len(chunks),
    }
    return chat, [], content  # the streamed question (q4) is scripted without tool calls


def run(library: str, client, spans: HandMadeSpans, provider, memory, truth: gc.TruthWriter, chat_made_by: str,
        reasoning_keys=("gen_ai.usage.reasoning.output_tokens",)) -> None:
    for qkey, question in QUESTIONS.items():
        stream = qkey in STREAMED
        conv_id = f"conv-{library}-{qkey}"
        messages: list[dict] = [{"role": "system", "content": gc.SYSTEM_PROMPT}, {"role": "user", "content": question}]
        seen_chats: list[dict] = []
        seen_tools: list[dict] = []
        final = None
        before = len(memory.get_finished_spans())
        with spans.agent(question, conv_id) as agent:
            tot_in = tot_out = 0
            for step in range(5):
                chat, tool_calls, content = _call(client, messages, stream)
                chat["request_model"] = gc.REQUEST_MODEL
                chat["tool_calls_requested"] = [t["id"] for t in tool_calls]
                for k, v in truth.expected_chat(qkey, step).items():
                    truth.check(f"{qkey} step {step} {k} vs fake server script", v, chat[k])
                seen_chats.append(chat)
                tot_in += chat["input_tokens"]
                tot_out += chat["output_tokens"]
                if not tool_calls:
                    final = content
                    break
                messages.append({"role": "assistant", "content": content, "tool_calls": [
                    {"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}} for t in tool_calls]})
                for t in tool_calls:
                    args = json.loads(t["arguments"])
                    with spans.tool(t["name"], t["id"], DESCRIPTIONS[t["name"]], args) as th:
                        result = IMPLS[t["name"]](args)
                        th.finish(result)
                    result_s = json.dumps(result)
                    seen_tools.append({"tool_name": t["name"], "tool_call_id": t["id"], "arguments": t["arguments"],
                                       "arguments_parsed": args, "result": result, "result_sent_to_model": result_s,
                                       "span_id": gc.hx(th.span_id, 16)})
                    messages.append({"role": "tool", "tool_call_id": t["id"], "content": result_s})
            agent.finish(final or "", tot_in, tot_out)
        provider.force_flush()

        got = memory.get_finished_spans()[before:]
        rec = {"trace_id": gc.hx(agent.trace_id, 32), "question_key": qkey, "question": question, "final_answer": final,
               "conversation_id": conv_id, "agent_invocations": [], "chat_calls": [], "tool_calls": [], "other_spans": []}
        if any(s.context.trace_id != agent.trace_id for s in got):
            truth.disagree(f"{qkey}: spans outside the agent's trace")
        matched = set()
        for c in seen_chats:
            s = next((x for x in got if gc.attrs(x).get("gen_ai.response.id") == c["response_id"]), None)
            if s is None:
                truth.disagree(f"{qkey}: no span with gen_ai.response.id={c['response_id']}")
                continue
            matched.add(s.context.span_id)
            a = gc.attrs(s)
            truth.check(f"{c['response_id']} input_tokens", c["input_tokens"], a.get("gen_ai.usage.input_tokens"))
            truth.check(f"{c['response_id']} output_tokens", c["output_tokens"], a.get("gen_ai.usage.output_tokens"))
            truth.check(f"{c['response_id']} response model", c["response_model"], a.get("gen_ai.response.model"))
            truth.check(f"{c['response_id']} request model", c["request_model"], a.get("gen_ai.request.model"))
            if (a.get("gen_ai.usage.cache_read.input_tokens") or 0) != (c["cached_tokens"] or 0):
                truth.disagree(f"{c['response_id']} cached_tokens: program saw {c['cached_tokens']}, span gen_ai.usage.cache_read.input_tokens={a.get('gen_ai.usage.cache_read.input_tokens')!r}")
            rt = next((a[k] for k in reasoning_keys if k in a), None)
            if (rt or 0) != (c["reasoning_tokens"] or 0):
                truth.disagree(f"{c['response_id']} reasoning_tokens: program saw {c['reasoning_tokens']}, span {'/'.join(reasoning_keys)}={rt!r}")
            if s.parent is None or s.parent.span_id != agent.span_id:
                truth.disagree(f"{c['response_id']}: chat span is not a child of the agent span")
            rec["chat_calls"].append({**gc.span_ids(s), **c, "made_by": chat_made_by, "hand_made": False})
        for t in seen_tools:
            s = next((x for x in got if gc.hx(x.context.span_id, 16) == t["span_id"]), None)
            if s is None:
                truth.disagree(f"{qkey}: tool span {t['span_id']} missing")
                continue
            matched.add(s.context.span_id)
            a = gc.attrs(s)
            truth.check(f"{t['tool_call_id']} tool.call.id", t["tool_call_id"], a.get("gen_ai.tool.call.id"))
            truth.check(f"{t['tool_call_id']} tool.name", t["tool_name"], a.get("gen_ai.tool.name"))
            rec["tool_calls"].append({**gc.span_ids(s), **{k: v for k, v in t.items() if k != "span_id"}, "hand_made": True})
        for s in got:
            if s.context.span_id in matched:
                continue
            if s.context.span_id == agent.span_id:
                a = gc.attrs(s)
                truth.check(f"{qkey} agent span input tokens", tot_in, a.get("gen_ai.usage.input_tokens"))
                rec["agent_invocations"].append({**gc.span_ids(s), "agent_name": gc.AGENT_NAME, "conversation_id": conv_id,
                                                 "input_tokens_sum": tot_in, "output_tokens_sum": tot_out, "hand_made": True})
            else:
                rec["other_spans"].append({**gc.span_ids(s), "hand_made": False})
        truth.add_trace(rec)
