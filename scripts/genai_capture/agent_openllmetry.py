#!/usr/bin/env python3
"""Hand-written tool-calling agent loop (openai_loop.py) on the `openai` client, instrumented by
OpenLLMetry's opentelemetry-instrumentation-openai (traceloop) for the chat spans. The invoke_agent
and execute_tool spans are made by this program with the plain OpenTelemetry API, following the
GenAI conventions (scope `agentprof.genai_capture.handmade`, schema 1.37.0). traceloop-sdk (and its
@agent/@tool decorators) is not used.

Usage: python agent_openllmetry.py --transport http|grpc --out DIR
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager

os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "true")  # OpenLLMetry's content switch (default true)

import genai_common as gc  # noqa: E402
import openai_loop  # noqa: E402

LIBRARY = "openllmetry"
SERVICE = "genai-capture-openllmetry"


def _j(x) -> str:
    return json.dumps(x, separators=(",", ":"), ensure_ascii=False)


class PlainSpans:
    def __init__(self, provider):
        from opentelemetry.trace import SpanKind

        self.kind = SpanKind.INTERNAL
        self.tracer = provider.get_tracer("agentprof.genai_capture.handmade", "0.1.0",
                                          schema_url="https://opentelemetry.io/schemas/1.37.0")

    @contextmanager
    def agent(self, question, conversation_id):
        attrs = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "openai",
            "gen_ai.agent.name": gc.AGENT_NAME,
            "gen_ai.agent.description": "Answers weather questions with two tools.",
            "gen_ai.conversation.id": conversation_id,
            "gen_ai.request.model": gc.REQUEST_MODEL,
            "gen_ai.system_instructions": _j([{"type": "text", "content": gc.SYSTEM_PROMPT}]),
            "gen_ai.input.messages": _j([{"role": "user", "parts": [{"type": "text", "content": question}]}]),
            "gen_ai.tool.definitions": _j([{"type": "function", **t["function"]} for t in gc.TOOLS_OPENAI]),
        }
        with self.tracer.start_as_current_span(f"invoke_agent {gc.AGENT_NAME}", kind=self.kind, attributes=attrs) as span:
            class H:
                span_id = span.get_span_context().span_id
                trace_id = span.get_span_context().trace_id

                def finish(self, final, input_tokens, output_tokens):
                    span.set_attribute("gen_ai.output.messages", _j([{"role": "assistant", "parts": [{"type": "text", "content": final}], "finish_reason": "stop"}]))
                    span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
                    span.set_attribute("gen_ai.usage.output_tokens", output_tokens)

            yield H()

    @contextmanager
    def tool(self, name, call_id, description, arguments):
        attrs = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.description": description,
            "gen_ai.agent.name": gc.AGENT_NAME,
            "gen_ai.tool.call.arguments": _j(arguments),
        }
        with self.tracer.start_as_current_span(f"execute_tool {name}", kind=self.kind, attributes=attrs) as span:
            class H:
                span_id = span.get_span_context().span_id

                def finish(self, result):
                    span.set_attribute("gen_ai.tool.call.result", _j(result))

            yield H()


def main() -> None:
    transport, out = gc.transport_from_argv()
    provider, memory = gc.setup_tracing(SERVICE, transport)

    from openai import OpenAI
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = OpenAI(base_url=gc.FAKE_BASE_URL, api_key="sk-fake-offline", max_retries=0)
    truth = gc.TruthWriter(
        LIBRARY, transport, SERVICE,
        gc.versions("openai", "opentelemetry-instrumentation-openai", "opentelemetry-semantic-conventions-ai"),
        {
            "hand_made_spans": "invoke_agent and execute_tool spans are made by this program with the plain OpenTelemetry API "
                               "(scope agentprof.genai_capture.handmade); chat spans come from OpenLLMetry's "
                               "opentelemetry-instrumentation-openai",
            "content_capture": "TRACELOOP_TRACE_CONTENT=" + os.environ["TRACELOOP_TRACE_CONTENT"],
            "streamed_questions": list(openai_loop.STREAMED),
            "one_trace_per_question": True,
            "tool_arguments_note": "tool_calls[].arguments is the JSON string the model sent; arguments_parsed what the tool got; "
                                   "result the tool's return value; result_sent_to_model the tool message content",
        },
    )
    openai_loop.run(LIBRARY, client, PlainSpans(provider), provider, memory, truth,
                    chat_made_by="opentelemetry-instrumentation-openai (OpenLLMetry)",
                    reasoning_keys=("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens"))
    provider.shutdown()
    truth.finish(list(memory.get_finished_spans()), out)


if __name__ == "__main__":
    main()
