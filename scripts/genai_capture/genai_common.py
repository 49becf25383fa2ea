"""Shared plumbing for the agent_*.py capture programs.

setup_tracing() installs the two span processors every program uses:
  - BatchSpanProcessor(real OTLP exporter, HTTP or gRPC, pointed at capture_server)
  - SimpleSpanProcessor(InMemorySpanExporter) for the ground truth
and TruthWriter turns the program's own record of what it did, cross-checked against the in-memory
spans, into truth.json.
"""
from __future__ import annotations

import json
import os
import sys
from importlib import metadata

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fake_openai  # noqa: E402

FAKE_BASE_URL = os.environ.get("FAKE_OPENAI_BASE_URL", "http://127.0.0.1:18080/v1")
CAPTURE_HTTP = os.environ.get("CAPTURE_HTTP_ENDPOINT", "http://127.0.0.1:14318/v1/traces")
CAPTURE_GRPC = os.environ.get("CAPTURE_GRPC_ENDPOINT", "127.0.0.1:14317")
REQUEST_MODEL = "gpt-4o-mini"
AGENT_NAME = "weather_agent"
SYSTEM_PROMPT = "You are a weather assistant. Use the tools to answer; be brief."
# BatchSpanProcessor batch size: small, so that a trace's spans are split over several export
# requests (as happens in long runs); every program also force-flushes after each question.
BATCH_SIZE = int(os.environ.get("CAPTURE_BSP_BATCH", "4"))

TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "convert_temperature",
            "description": "Convert a Celsius temperature to Fahrenheit.",
            "parameters": {"type": "object", "properties": {"celsius": {"type": "number"}}, "required": ["celsius"]},
        },
    },
]


def versions(*dists: str) -> dict[str, str]:
    out = {}
    for d in ("opentelemetry-sdk", "opentelemetry-api", "opentelemetry-exporter-otlp-proto-http",
              "opentelemetry-exporter-otlp-proto-grpc", "opentelemetry-semantic-conventions", *dists):
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def transport_from_argv() -> tuple[str, str]:
    """--transport http|grpc  --out DIR (the fixture folder for this transport run)."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", choices=["http", "grpc", "none"], default="none")
    ap.add_argument("--out", default=None, help="where truth.json goes (default: print a summary only)")
    a, _ = ap.parse_known_args()
    return a.transport, a.out


def setup_tracing(service_name: str, transport: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if transport == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        # compression comes from OTEL_EXPORTER_OTLP_COMPRESSION (run_all.sh sets gzip for http_gzip)
        provider.add_span_processor(BatchSpanProcessor(HttpExporter(endpoint=CAPTURE_HTTP), max_export_batch_size=BATCH_SIZE))
    elif transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        provider.add_span_processor(BatchSpanProcessor(GrpcExporter(endpoint=CAPTURE_GRPC, insecure=True), max_export_batch_size=BATCH_SIZE))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return provider, memory


def hx(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def span_ids(span: ReadableSpan) -> dict:
    return {
        "span_id": hx(span.context.span_id, 16),
        "parent_span_id": hx(span.parent.span_id, 16) if span.parent else None,
        "name": span.name,
        "start_unix_nano": span.start_time,
        "end_unix_nano": span.end_time,
    }


def attrs(span: ReadableSpan) -> dict:
    return dict(span.attributes or {})


class TruthWriter:
    """Collects per-trace records and checks them against the in-memory spans."""

    def __init__(self, library: str, transport: str, service_name: str, versions: dict, notes: dict):
        self.doc = {
            "library": library,
            "transport": transport,
            "compression": os.environ.get("OTEL_EXPORTER_OTLP_COMPRESSION") or None,
            "service_name": service_name,
            "versions": versions,
            "request_model": REQUEST_MODEL,
            "response_model": fake_openai.RESPONSE_MODEL,
            "notes": notes,
            "traces": [],
            "disagreements": [],
        }

    def disagree(self, msg: str) -> None:
        self.doc["disagreements"].append(msg)
        print("DISAGREEMENT:", msg, file=sys.stderr)

    def check(self, what: str, program_value, span_value) -> None:
        if program_value != span_value:
            self.disagree(f"{what}: program saw {program_value!r}, span says {span_value!r}")

    def expected_chat(self, qkey: str, step: int) -> dict:
        ans = fake_openai.SCRIPT[qkey][1][step]
        u = ans["usage"]
        return {
            "response_id": f"chatcmpl-fake-{qkey}-s{step}",
            "input_tokens": u["prompt_tokens"],
            "output_tokens": u["completion_tokens"],
            "cached_tokens": u["prompt_tokens_details"]["cached_tokens"],
            "reasoning_tokens": u["completion_tokens_details"]["reasoning_tokens"],
            "finish_reason": "tool_calls" if "tool_calls" in ans else "stop",
        }

    def add_trace(self, rec: dict) -> None:
        self.doc["traces"].append(rec)

    def finish(self, all_spans: list[ReadableSpan], out_dir: str | None) -> dict:
        tr = self.doc["traces"]
        self.doc["totals"] = {
            "traces": len(tr),
            "spans": len(all_spans),
            "agent_invocations": sum(len(t["agent_invocations"]) for t in tr),
            "chat_calls": sum(len(t["chat_calls"]) for t in tr),
            "tool_calls": sum(len(t["tool_calls"]) for t in tr),
            "other_spans": sum(len(t.get("other_spans", [])) for t in tr),
        }
        accounted = sum(len(t["agent_invocations"]) + len(t["chat_calls"]) + len(t["tool_calls"]) + len(t.get("other_spans", [])) for t in tr)
        if accounted != len(all_spans):
            self.disagree(f"{accounted} spans accounted for in traces, in-memory exporter has {len(all_spans)}")
        if len({s.context.trace_id for s in all_spans}) != len(tr):
            self.disagree("number of distinct trace ids differs from number of agent runs")
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "truth.json"), "w", encoding="utf-8") as f:
                json.dump(self.doc, f, indent=1, ensure_ascii=False)
                f.write("\n")
        t = self.doc["totals"]
        print(f"{self.doc['library']}/{self.doc['transport']}: {t} disagreements={len(self.doc['disagreements'])}", file=sys.stderr)
        return self.doc
