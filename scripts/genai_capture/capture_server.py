#!/usr/bin/env python3
"""OTLP capture sink: stores every trace export body, in arrival order, as received.

- OTLP/HTTP  on 127.0.0.1:$CAPTURE_HTTP_PORT (default 14318): POST /v1/traces (protobuf). The body is
  stored inflated (gzip / deflate Content-Encoding is undone) unless the capture was started with
  keep_compressed=true, in which case the exact wire bytes are stored (file suffix .pb.gz).
  POST /v1/logs and /v1/metrics are answered 200 and only counted.
- OTLP/gRPC  on 127.0.0.1:$CAPTURE_GRPC_PORT (default 14317):
  opentelemetry.proto.collector.trace.v1.TraceService/Export. The handler takes the request bytes as
  gRPC delivered them (already decompressed by gRPC), parses them with opentelemetry-proto's
  ExportTraceServiceRequest to validate, and stores the bytes; `reserialized_equal` in the index says
  whether request.SerializeToString() gives the same bytes.
- Control (HTTP port): POST /_capture/start {"dir": "...", "keep_compressed": false} empties nothing,
  starts numbering at 0001 in that dir; POST /_capture/stop returns and clears the current capture;
  GET /_capture/status. Every request is also listed in <dir>/requests.json (headers / metadata, sizes,
  span counts).

Run: python capture_server.py
"""
from __future__ import annotations

import gzip
import json
import os
import sys
import threading
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Capture:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.dir: str | None = None
        self.keep_compressed = False
        self.seq = 0
        self.index: list[dict] = []
        self.ignored: list[dict] = []

    def start(self, d: str, keep_compressed: bool) -> None:
        with self.lock:
            os.makedirs(d, exist_ok=True)
            self.dir, self.keep_compressed, self.seq, self.index, self.ignored = d, keep_compressed, 0, [], []

    def stop(self) -> dict:
        with self.lock:
            out = {"dir": self.dir, "count": self.seq, "spans": sum(e["spans"] for e in self.index), "ignored": self.ignored}
            self.dir = None
            return out

    def store(self, transport: str, wire: bytes, stored: bytes, suffix: str, meta: dict) -> None:
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(meta.pop("_plain"))
        spans = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        with self.lock:
            if self.dir is None:
                print(f"capture_server: {transport} export with no capture started; dropped", file=sys.stderr, flush=True)
                return
            self.seq += 1
            name = f"{self.seq:04d}{suffix}"
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(stored)
            self.index.append(dict(seq=self.seq, file=name, transport=transport, wire_bytes=len(wire), stored_bytes=len(stored), spans=spans, **meta))
            with open(os.path.join(self.dir, "requests.json"), "w", encoding="utf-8") as f:
                json.dump(self.index, f, indent=1, sort_keys=True)
                f.write("\n")


CAP = Capture()


def inflate(body: bytes, encoding: str) -> bytes:
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_capture/status":
            with CAP.lock:
                st = {"dir": CAP.dir, "count": CAP.seq}
            return self._reply(200, json.dumps(st).encode(), "application/json")
        self._reply(404, b"", "text/plain")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        wire = self.rfile.read(n)
        path = self.path.split("?")[0]
        if path == "/_capture/start":
            cfg = json.loads(wire or b"{}")
            CAP.start(cfg["dir"], bool(cfg.get("keep_compressed")))
            return self._reply(200, b'{"ok":true}', "application/json")
        if path == "/_capture/stop":
            return self._reply(200, json.dumps(CAP.stop()).encode(), "application/json")
        if path in ("/v1/logs", "/v1/metrics"):
            with CAP.lock:
                CAP.ignored.append({"path": path, "bytes": len(wire)})
            return self._reply(200, b"", "application/x-protobuf")
        if path != "/v1/traces":
            return self._reply(404, b"", "text/plain")
        ctype = self.headers.get("Content-Type", "")
        if "protobuf" not in ctype:
            return self._reply(415, b"only application/x-protobuf is captured", "text/plain")
        enc = self.headers.get("Content-Encoding", "")
        try:
            plain = inflate(wire, enc)
        except Exception as e:  # noqa: BLE001
            return self._reply(400, str(e).encode(), "text/plain")
        keep = CAP.keep_compressed and enc.lower() not in ("", "identity")
        stored = wire if keep else plain
        suffix = ".pb.gz" if keep and enc.lower() == "gzip" else ".pb"
        headers = {k.lower(): v for k, v in self.headers.items()}
        CAP.store("http", wire, stored, suffix, {"path": path, "headers": headers, "content_encoding": enc or None,
                                                   "inflated_bytes": len(plain), "stored_compressed": keep, "_plain": plain})
        self._reply(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


def grpc_export(raw: bytes, context: grpc.ServicerContext) -> bytes:
    req = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
    md = {k: v for k, v in context.invocation_metadata() if not isinstance(v, bytes)}
    CAP.store("grpc", raw, raw, ".pb", {"path": EXPORT_METHOD, "headers": md, "content_encoding": md.get("grpc-encoding"),
                                         "reserialized_equal": req.SerializeToString() == raw, "_plain": raw})
    return trace_service_pb2.ExportTraceServiceResponse().SerializeToString()


def main() -> None:
    http_port = int(os.environ.get("CAPTURE_HTTP_PORT", "14318"))
    grpc_port = int(os.environ.get("CAPTURE_GRPC_PORT", "14317"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(grpc_export, request_deserializer=None, response_serializer=None)},
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    server.start()
    httpd = ThreadingHTTPServer(("127.0.0.1", http_port), HttpHandler)
    print(f"capture_server: http 127.0.0.1:{http_port} grpc 127.0.0.1:{grpc_port}", file=sys.stderr, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(0)


if __name__ == "__main__":
    main()
