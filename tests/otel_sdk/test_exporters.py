"""The real OpenTelemetry SDK's OTLP exporters pointed at agentprof: the gRPC exporter and the
HTTP exporter, given the same finished spans, make the same stored steps."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time
from typing import Iterator, Sequence

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from grpc import Compression as GrpcCompression

REPO = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str]]:
    """agentprof on SQLite with its gRPC port open: (HTTP base URL, gRPC host:port)."""
    given = os.environ.get("AGENTPROF_BIN")
    binary = pathlib.Path(given) if given else REPO / "target" / "debug" / "agentprof"
    if not binary.is_file():
        pytest.skip("no agentprof binary: run `cargo build` or set AGENTPROF_BIN")
    port, grpc_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {
            **os.environ,
            "AGENTPROF_DATA_DIR": data,
            "AGENTPROF_BIND": f"127.0.0.1:{port}",
            "AGENTPROF_OTLP_GRPC_BIND": f"127.0.0.1:{grpc_port}",
            "RUST_LOG": "warn",
        }
        env.pop("DATABASE_URL", None)
        env.pop("AGENTPROF_API_KEYS", None)
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            else:
                raise RuntimeError("agentprof did not become ready")
            yield url, f"127.0.0.1:{grpc_port}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def agent_spans() -> Sequence[ReadableSpan]:
    """Three agent invocations in the GenAI conventions, each a chat call and a tool call, made
    by the SDK's tracer and kept finished in memory, so both exporters get the very same spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-sdk-check"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("agentprof.tests")
    for q in range(3):
        with tracer.start_as_current_span(
            "invoke_agent weather",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "weather"},
        ):
            with tracer.start_as_current_span(
                "chat gpt-4o-mini",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 80 + q,
                    "gen_ai.usage.output_tokens": 10 + q,
                },
            ):
                time.sleep(0.002)
            with tracer.start_as_current_span(
                "execute_tool get_weather",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.id": f"call_{q}",
                },
            ):
                time.sleep(0.001)
    provider.shutdown()
    return memory.get_finished_spans()


def _new_run(url: str, name: str) -> str:
    r = httpx.post(f"{url}/v1/runs", json={"name": name})
    r.raise_for_status()
    return str(r.json()["id"])


def _stored(url: str, run: str) -> bytes:
    r = httpx.get(f"{url}/v1/runs/{run}/requests")
    r.raise_for_status()
    return r.content


@pytest.mark.parametrize("gzip", [False, True])
def test_grpc_and_http_exporters_store_the_same_steps(server: tuple[str, str], gzip: bool) -> None:
    url, grpc_addr = server
    spans = agent_spans()
    over_grpc, over_http = _new_run(url, "sdk-grpc"), _new_run(url, "sdk-http")
    grpc_exporter = GrpcExporter(
        endpoint=grpc_addr,
        insecure=True,
        headers={"x-agentprof-run-id": over_grpc},
        compression=GrpcCompression.Gzip if gzip else GrpcCompression.NoCompression,
    )
    http_exporter = HttpExporter(
        endpoint=f"{url}/v1/traces",
        headers={"x-agentprof-run-id": over_http},
        compression=HttpCompression.Gzip if gzip else HttpCompression.NoCompression,
    )
    try:
        assert grpc_exporter.export(spans) == SpanExportResult.SUCCESS
        assert http_exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        grpc_exporter.shutdown()
        http_exporter.shutdown()

    a, b = _stored(url, over_grpc), _stored(url, over_http)
    assert a == b
    requests = json.loads(a)
    assert len(requests) == 3, "one request per trace"
    ends = [s["payload"] for r in requests for s in r["intermediate_steps"] if s["payload"]["event_type"].endswith("_END")]
    llm = [p for p in ends if p["event_type"] == "LLM_END"]
    tools = [p for p in ends if p["event_type"] == "TOOL_END"]
    assert sorted(p["usage_info"]["token_usage"]["prompt_tokens"] for p in llm) == [80, 81, 82]
    assert {p["name"] for p in llm} == {"gpt-4o-mini"}
    assert [p["name"] for p in tools] == ["get_weather"] * 3
