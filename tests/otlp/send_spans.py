"""Replays a workflow's IntermediateSteps as OpenTelemetry spans with OpenInference attributes,
through the real OpenTelemetry SDK, to an OTLP/HTTP endpoint or into files.

Each START/END step pair becomes one span (LLM -> LLM, TOOL -> TOOL, FUNCTION and WORKFLOW ->
CHAIN), started and ended at the steps' own timestamps, with the parent span given by the
steps' ``parent_id``; LLM_NEW_TOKEN steps become ``new_token`` span events. Spans are ended in
END-time order, so children reach the exporter before their parents, as in a live agent.

    python send_spans.py STEPS.json[.gz] --endpoint http://127.0.0.1:8080/v1/traces [--json]
    python send_spans.py STEPS.json[.gz] --capture DIR          # protobuf and OTLP/JSON bodies

Needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pathlib
import sys
from typing import Any, Sequence

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

KIND = {"LLM": "LLM", "TOOL": "TOOL", "FUNCTION": "CHAIN", "WORKFLOW": "CHAIN"}


def load_requests(path: pathlib.Path) -> list[list[dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    return [item["intermediate_steps"] or [] for item in doc]


def text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def replay(requests: list[list[dict[str, Any]]], tracer: trace.Tracer) -> int:
    """Starts and ends one span per START/END pair; returns the number of spans."""
    count = 0
    for steps in requests:
        ends = {s["payload"]["UUID"]: s for s in steps if s["payload"]["event_type"].endswith("_END")}
        chunks: dict[str, list[dict[str, Any]]] = {}
        for s in steps:
            if s["payload"]["event_type"] == "LLM_NEW_TOKEN":
                chunks.setdefault(s["payload"]["UUID"], []).append(s)
        spans: dict[str, Any] = {}
        starts = sorted(
            (s for s in steps if s["payload"]["event_type"].endswith("_START")),
            key=lambda s: s["payload"]["event_timestamp"],
        )
        for start in starts:
            p = start["payload"]
            category = p["event_type"].rsplit("_", 1)[0]
            end = ends.get(p["UUID"])
            if category not in KIND or end is None:
                continue
            parent = spans.get(start.get("parent_id"))
            ctx = trace.set_span_in_context(parent) if parent is not None else None
            attrs: dict[str, Any] = {"openinference.span.kind": KIND[category]}
            if category == "LLM" and p.get("name"):
                attrs["llm.model_name"] = p["name"]
            if category == "TOOL" and p.get("name"):
                attrs["tool.name"] = p["name"]
            data = p.get("data") or {}
            if data.get("input") is not None:
                attrs["input.value"] = text(data["input"])
                if not isinstance(data["input"], str):
                    attrs["input.mime_type"] = "application/json"
            span = tracer.start_span(
                p.get("name") or p["event_type"],
                context=ctx,
                start_time=int(round(p["event_timestamp"] * 1e9)),
                attributes=attrs,
            )
            for chunk in chunks.get(p["UUID"], []):
                span.add_event(
                    "new_token",
                    {"chunk": text(chunk["payload"]["data"]["chunk"]) or ""},
                    timestamp=int(round(chunk["payload"]["event_timestamp"] * 1e9)),
                )
            spans[p["UUID"]] = span
        for uuid, end in sorted(ends.items(), key=lambda kv: kv[1]["payload"]["event_timestamp"]):
            span = spans.get(uuid)
            if span is None:
                continue
            p = end["payload"]
            out = (p.get("data") or {}).get("output")
            if out is not None:
                span.set_attribute("output.value", text(out))
                if not isinstance(out, str):
                    span.set_attribute("output.mime_type", "application/json")
            usage = (p.get("usage_info") or {}).get("token_usage") or {}
            for key, attr in (
                ("prompt_tokens", "llm.token_count.prompt"),
                ("completion_tokens", "llm.token_count.completion"),
                ("total_tokens", "llm.token_count.total"),
                ("cached_tokens", "llm.token_count.prompt_details.cache_read"),
            ):
                if usage.get(key):
                    span.set_attribute(attr, int(usage[key]))
            span.end(end_time=int(round(p["event_timestamp"] * 1e9)))
            count += 1
    return count


def otlp_json(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP/JSON form of an export: the protobuf JSON mapping, but with hex trace and span
    ids, as the OTLP specification requires."""
    doc = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in sp:
                        sp[key] = __import__("base64").b64decode(sp[key]).hex()
    return json.dumps(doc).encode()


class JsonExporter(SpanExporter):
    """OTLP/HTTP with JSON bodies (the Python SDK only ships protobuf)."""

    def __init__(self, endpoint: str, headers: dict[str, str]) -> None:
        import requests

        self._session = requests.Session()
        self._endpoint = endpoint
        self._headers = {"Content-Type": "application/json", **headers}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        r = self._session.post(self._endpoint, data=otlp_json(spans), headers=self._headers, timeout=30)
        return SpanExportResult.SUCCESS if r.ok else SpanExportResult.FAILURE


class CaptureExporter(SpanExporter):
    """Writes each export as the protobuf body OTLPSpanExporter would send, and its OTLP/JSON."""

    def __init__(self, folder: pathlib.Path) -> None:
        self._folder = folder
        self._n = 0
        folder.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._n += 1
        (self._folder / f"export_{self._n:04d}.pb").write_bytes(encode_spans(spans).SerializeToString())
        (self._folder / f"export_{self._n:04d}.json").write_bytes(otlp_json(spans))
        return SpanExportResult.SUCCESS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("steps", type=pathlib.Path)
    ap.add_argument("--endpoint")
    ap.add_argument("--json", action="store_true", help="send OTLP/JSON instead of protobuf")
    ap.add_argument("--capture", type=pathlib.Path)
    ap.add_argument("--service", default="otel-replay")
    ap.add_argument("--header", action="append", default=[], help="NAME=VALUE, repeatable")
    ap.add_argument("--batch", type=int, default=64, help="max spans per export")
    args = ap.parse_args(argv)
    headers = dict(h.split("=", 1) for h in args.header)
    if args.capture:
        exporter: SpanExporter = CaptureExporter(args.capture)
    elif args.json:
        exporter = JsonExporter(args.endpoint, headers)
    else:
        exporter = OTLPSpanExporter(endpoint=args.endpoint, headers=headers)
    provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=args.batch))
    n = replay(load_requests(args.steps), provider.get_tracer("agentprof.replay"))
    provider.force_flush()
    provider.shutdown()
    print(f"{n} spans", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
