#!/usr/bin/env python3
"""pydantic-ai Agent with two tools, instrumented by pydantic-ai's own OpenTelemetry support
(InstrumentationSettings, no logfire), talking to the fake OpenAI server through OpenAIChatModel.

pydantic-ai makes every span itself (agent run / chat / tool spans). --format N picks
InstrumentationSettings(version=N) (pydantic-ai's "data format" version: 2..6 in 2.78; 5 is the
default, 2-4 are deprecated, 6 is opt-in). One agent.run_sync() per question.

Usage: python agent_pydantic_ai.py --format 5 --transport http|grpc --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import warnings

import genai_common as gc
from fake_openai import QUESTIONS, convert, weather

ap = argparse.ArgumentParser()
ap.add_argument("--format", type=int, default=5)
args, _ = ap.parse_known_args()
FMT = args.format
from importlib import metadata  # noqa: E402

PAI_MAJOR = int(metadata.version("pydantic-ai-slim").split(".")[0])
# pydantic-ai 2.x: pydantic_ai_v{N}; pydantic-ai 1.x (its own venv): pydantic_ai_1x_v{N}
LIBRARY = f"pydantic_ai_v{FMT}" if PAI_MAJOR >= 2 else f"pydantic_ai_{PAI_MAJOR}x_v{FMT}"
SERVICE = "genai-capture-" + LIBRARY.replace("_", "-")


def main() -> None:
    transport, out = gc.transport_from_argv()
    provider, memory = gc.setup_tracing(SERVICE, transport)

    from opentelemetry import trace
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    import inspect

    extra = {"event_mode": "attributes"} if FMT == 1 else {}  # version 1 (pydantic-ai 1.x only): events as a span attribute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old versions warn that they are deprecated
        settings = InstrumentationSettings(tracer_provider=provider, include_content=True, version=FMT, **extra)

    model = OpenAIChatModel(gc.REQUEST_MODEL, provider=OpenAIProvider(base_url=gc.FAKE_BASE_URL, api_key="sk-fake-offline"))
    if "instrument" in inspect.signature(Agent.__init__).parameters:  # pydantic-ai 1.x
        agent = Agent(model, name=gc.AGENT_NAME, instructions=gc.SYSTEM_PROMPT, model_settings={"temperature": 0.0}, instrument=settings)
    else:  # 2.x: `Agent(instrument=...)` is gone; the property / instrument_all remain
        agent = Agent(model, name=gc.AGENT_NAME, instructions=gc.SYSTEM_PROMPT, model_settings={"temperature": 0.0})
        agent.instrument = settings
    run_params = inspect.signature(agent.run_sync).parameters
    executed: list[dict] = []

    def _record(name: str, a: dict, result: dict) -> None:
        sc = trace.get_current_span().get_span_context()
        executed.append({"tool_name": name, "arguments": a, "result": result, "current_span_id": gc.hx(sc.span_id, 16)})

    @agent.tool_plain
    def get_weather(city: str) -> dict:
        """Current weather for a city."""
        r = weather(city)
        _record("get_weather", {"city": city}, r)
        return r

    @agent.tool_plain
    def convert_temperature(celsius: float) -> dict:
        """Convert a Celsius temperature to Fahrenheit."""
        r = convert(celsius)
        _record("convert_temperature", {"celsius": celsius}, r)
        return r

    truth = gc.TruthWriter(
        LIBRARY, transport, SERVICE, gc.versions("pydantic-ai-slim", "openai"),
        {
            "hand_made_spans": "none: every span is made by pydantic-ai",
            "instrumentation_settings": {"version": FMT, "include_content": True, **extra,
                                         "use_aggregated_usage_attribute_names": getattr(settings, "use_aggregated_usage_attribute_names", None),
                                         "include_model_request_parameters": getattr(settings, "include_model_request_parameters", None)},
            "pydantic_ai_version": metadata.version("pydantic-ai-slim"),
            "one_trace_per_question": True,
            "tool_arguments_note": "tool_calls[].arguments is the JSON string the model sent; arguments_parsed is what the tool function received; result is the tool's return value (structured)",
        },
    )

    for qkey, question in QUESTIONS.items():
        conv_id = f"conv-{LIBRARY}-{qkey}"
        run_id = f"run-{LIBRARY}-{qkey}"
        before = len(memory.get_finished_spans())
        n_exec = len(executed)
        kw = {k: v for k, v in (("conversation_id", conv_id), ("run_id", run_id)) if k in run_params}
        if "run_id" not in kw:
            run_id = None
        if "conversation_id" not in kw:
            conv_id = None
        result = agent.run_sync(question, **kw)
        provider.force_flush()
        spans = memory.get_finished_spans()[before:]
        trace_ids = {s.context.trace_id for s in spans}
        if len(trace_ids) != 1:
            truth.disagree(f"{qkey}: run spans over {len(trace_ids)} traces")
        roots = [s for s in spans if s.parent is None]
        root = roots[0]
        rec = {"trace_id": gc.hx(root.context.trace_id, 32), "question_key": qkey, "question": question,
               "final_answer": result.output, "conversation_id": conv_id, "run_id": run_id,
               "agent_invocations": [], "chat_calls": [], "tool_calls": [], "other_spans": []}

        # what the program saw: the run's messages
        responses = [m for m in result.all_messages() if isinstance(m, ModelResponse)]
        returns = {p.tool_call_id: p for m in result.all_messages() if isinstance(m, ModelRequest)
                   for p in m.parts if isinstance(p, ToolReturnPart)}
        chat_spans = [s for s in spans if gc.attrs(s).get("gen_ai.operation.name") == "chat"]
        by_resp = {gc.attrs(s).get("gen_ai.response.id"): s for s in chat_spans}
        tool_spans = [s for s in spans if gc.attrs(s).get("gen_ai.operation.name") == "execute_tool"
                      or gc.attrs(s).get("gen_ai.tool.call.id")]
        by_call = {gc.attrs(s).get("gen_ai.tool.call.id"): s for s in tool_spans}
        used = set()
        for step, resp in enumerate(responses):
            u = resp.usage
            chat = {
                "response_id": resp.provider_response_id, "response_model": resp.model_name,
                "request_model": gc.REQUEST_MODEL, "finish_reason": resp.provider_details.get("finish_reason") if resp.provider_details else None,
                "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                "cached_tokens": u.cache_read_tokens, "reasoning_tokens": (u.details or {}).get("reasoning_tokens"),
                "streamed": False,
                "tool_calls_requested": [p.tool_call_id for p in resp.parts if isinstance(p, ToolCallPart)],
            }
            exp = truth.expected_chat(qkey, step)
            for k, v in exp.items():
                truth.check(f"{qkey} step {step} {k} vs fake server script", v, chat[k])
            s = by_resp.get(chat["response_id"])
            if s is None:
                truth.disagree(f"{qkey}: no chat span with gen_ai.response.id={chat['response_id']}")
                continue
            used.add(s.context.span_id)
            a = gc.attrs(s)
            truth.check(f"{chat['response_id']} input_tokens", chat["input_tokens"], a.get("gen_ai.usage.input_tokens"))
            truth.check(f"{chat['response_id']} output_tokens", chat["output_tokens"], a.get("gen_ai.usage.output_tokens"))
            truth.check(f"{chat['response_id']} response model", chat["response_model"], a.get("gen_ai.response.model"))
            truth.check(f"{chat['response_id']} request model", chat["request_model"], a.get("gen_ai.request.model"))
            if (a.get("gen_ai.usage.cache_read.input_tokens") or 0) != (chat["cached_tokens"] or 0):
                truth.disagree(f"{chat['response_id']} cached_tokens: program saw {chat['cached_tokens']}, span gen_ai.usage.cache_read.input_tokens={a.get('gen_ai.usage.cache_read.input_tokens')!r}")
            rtok = a.get("gen_ai.usage.reasoning.output_tokens", a.get("gen_ai.usage.details.reasoning_tokens"))
            if (rtok or 0) != (chat["reasoning_tokens"] or 0):
                truth.disagree(f"{chat['response_id']} reasoning_tokens: program saw {chat['reasoning_tokens']}, span says {rtok!r}")
            rec["chat_calls"].append({**gc.span_ids(s), **chat, "hand_made": False})
            for p in resp.parts:
                if not isinstance(p, ToolCallPart):
                    continue
                ts = by_call.get(p.tool_call_id)
                ex = next((e for e in executed[n_exec:] if e.get("tool_call_id") is None and e["tool_name"] == p.tool_name
                           and e["arguments"] == json.loads(p.args if isinstance(p.args, str) else json.dumps(p.args))), None)
                if ex is None:
                    truth.disagree(f"{p.tool_call_id}: no executed tool call matches")
                    continue
                ex["tool_call_id"] = p.tool_call_id
                ret = returns.get(p.tool_call_id)
                if ts is None:
                    truth.disagree(f"{qkey}: no tool span with gen_ai.tool.call.id={p.tool_call_id}")
                    continue
                used.add(ts.context.span_id)
                if ex["current_span_id"] != gc.hx(ts.context.span_id, 16):
                    truth.disagree(f"{p.tool_call_id}: current span during the tool function is {ex['current_span_id']}, tool span is {gc.hx(ts.context.span_id, 16)}")
                ta = gc.attrs(ts)
                truth.check(f"{p.tool_call_id} tool name", p.tool_name, ta.get("gen_ai.tool.name"))
                rec["tool_calls"].append({**gc.span_ids(ts), "tool_name": p.tool_name, "tool_call_id": p.tool_call_id,
                                          "arguments": p.args if isinstance(p.args, str) else json.dumps(p.args),
                                          "arguments_parsed": ex["arguments"],
                                          "result": ret.content if ret is not None else None,
                                          "hand_made": False})
        for s in spans:
            if s.context.span_id in used:
                continue
            a = gc.attrs(s)
            if s.parent is None:
                rec["agent_invocations"].append({**gc.span_ids(s), "agent_name": a.get("gen_ai.agent.name", a.get("agent_name")),
                                                 "operation_name": a.get("gen_ai.operation.name"), "hand_made": False})
            else:
                rec["other_spans"].append({**gc.span_ids(s), "operation_name": a.get("gen_ai.operation.name"), "hand_made": False})
        if len(executed) - n_exec != len(rec["tool_calls"]):
            truth.disagree(f"{qkey}: {len(executed) - n_exec} tool executions, {len(rec['tool_calls'])} tool spans matched")
        truth.add_trace(rec)

    provider.shutdown()
    truth.finish(list(memory.get_finished_spans()), out)


if __name__ == "__main__":
    main()
