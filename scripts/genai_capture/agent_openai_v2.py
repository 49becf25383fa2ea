#!/usr/bin/env python3
"""Hand-written tool-calling agent loop (openai_loop.py) on the `openai` client, instrumented by
opentelemetry-instrumentation-openai-v2 (chat spans). The invoke_agent and execute_tool spans are
made by this program through opentelemetry-util-genai's TelemetryHandler, the helper the contrib
GenAI instrumentations use themselves.

Runs in its own venv (see run_all.sh): openai-v2 2.4b0 imports `httpx` and
`opentelemetry.util.genai.instruments`, so it needs an httpx-based openai (2.x) and util-genai 1.1b0.

Usage: python agent_openai_v2.py --transport http|grpc --out DIR
"""
from __future__ import annotations

import os
from contextlib import contextmanager

# content capture on span attributes (the latest-experimental GenAI conventions; the legacy value
# `true` is not a valid mode any more in util-genai and means no content)
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")

import genai_common as gc  # noqa: E402
import openai_loop  # noqa: E402

LIBRARY = os.environ.get("CAPTURE_LIBRARY", "openai_v2")
SERVICE = "genai-capture-openai-v2"


class UtilGenaiSpans:
    def __init__(self, handler):
        from opentelemetry.util.genai.types import FunctionToolDefinition, InputMessage, OutputMessage, Text

        self.h = handler
        self.T = (InputMessage, OutputMessage, Text)
        self.tool_defs = [FunctionToolDefinition(name=t["function"]["name"], description=t["function"]["description"],
                                                 parameters=t["function"]["parameters"]) for t in gc.TOOLS_OPENAI]

    @contextmanager
    def agent(self, question, conversation_id):
        InputMessage, OutputMessage, Text = self.T
        with self.h.invoke_local_agent(agent_name=gc.AGENT_NAME, request_model=gc.REQUEST_MODEL) as inv:
            inv.conversation_id = conversation_id
            inv.agent_description = "Answers weather questions with two tools."
            inv.system_instruction = [Text(content=gc.SYSTEM_PROMPT)]
            inv.tool_definitions = self.tool_defs
            inv.input_messages = [InputMessage(role="user", parts=[Text(content=question)])]

            class H:
                span_id = inv.span.get_span_context().span_id
                trace_id = inv.span.get_span_context().trace_id

                def finish(self, final, input_tokens, output_tokens):
                    inv.output_messages = [OutputMessage(role="assistant", parts=[Text(content=final)], finish_reason="stop")]
                    inv.input_tokens = input_tokens
                    inv.output_tokens = output_tokens

            yield H()

    @contextmanager
    def tool(self, name, call_id, description, arguments):
        with self.h.tool(name, tool_call_id=call_id, tool_type="function", tool_description=description) as inv:
            inv.arguments = arguments

            class H:
                span_id = inv.span.get_span_context().span_id

                def finish(self, result):
                    inv.tool_result = result

            yield H()


def main() -> None:
    transport, out = gc.transport_from_argv()
    provider, memory = gc.setup_tracing(SERVICE, transport)

    from openai import OpenAI
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.util.genai.handler import TelemetryHandler

    OpenAIInstrumentor().instrument(tracer_provider=provider)
    # util-genai 1.1b0 takes no scope name: the hand-made spans share the scope
    # `opentelemetry.util.genai.handler` with openai-v2's chat spans.
    handler = TelemetryHandler(tracer_provider=provider)
    client = OpenAI(base_url=gc.FAKE_BASE_URL, api_key="sk-fake-offline", max_retries=0)

    truth = gc.TruthWriter(
        LIBRARY, transport, SERVICE,
        gc.versions("openai", "opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai"),
        {
            "hand_made_spans": "invoke_agent and execute_tool spans are made by this program with opentelemetry-util-genai "
                               "TelemetryHandler (1.1b0: same scope name opentelemetry.util.genai.handler as the chat spans); "
                               "chat spans come from opentelemetry-instrumentation-openai-v2",
            "content_capture": "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=" + os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"],
            "streamed_questions": list(openai_loop.STREAMED),
            "one_trace_per_question": True,
            "tool_arguments_note": "tool_calls[].arguments is the JSON string the model sent; arguments_parsed what the tool got; "
                                   "result the tool's return value; result_sent_to_model the tool message content",
            "library_gaps": "openai-v2 2.4b0 sets no gen_ai.usage.cache_read.input_tokens / reasoning tokens on chat-completions "
                            "spans (the fake server sends them): listed under disagreements",
        },
    )
    openai_loop.run(LIBRARY, client, UtilGenaiSpans(handler), provider, memory, truth,
                    chat_made_by="opentelemetry-instrumentation-openai-v2")
    provider.shutdown()
    truth.finish(list(memory.get_finished_spans()), out)


if __name__ == "__main__":
    main()
