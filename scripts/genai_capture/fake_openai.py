#!/usr/bin/env python3
"""A tiny, deterministic OpenAI-compatible chat completions server (offline, 127.0.0.1).

POST /v1/chat/completions answers from a canned SCRIPT. The question is recognised by the
first user message; the step is the number of assistant messages already in the request.
Every answer carries a fixed `model`, `id` and `usage` (with prompt_tokens_details.cached_tokens
and completion_tokens_details.reasoning_tokens), so every program that talks to it sees the same
numbers. `stream: true` is answered as SSE chunks; with `stream_options.include_usage` the last
chunk carries the usage (choices = []), as OpenAI does.

Every served answer is appended as one JSON line to $FAKE_OPENAI_LOG (if set), so the ground truth
can be checked against what was really served.

Run: python fake_openai.py [--port 18080]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"  # request model is gpt-4o-mini; the response names a snapshot
CREATED = 1767225600  # 2026-01-01T00:00:00Z, fixed so bodies are reproducible


def weather(city: str) -> dict:
    """The tool implementation every agent program uses (deterministic)."""
    table = {
        "Paris": (18, "cloudy"),
        "Tokyo": (24, "sunny"),
        "Oslo": (7, "rain"),
        "Cairo": (33, "clear"),
    }
    t, c = table.get(city, (20, "unknown"))
    return {"city": city, "temp_c": t, "conditions": c}


def convert(celsius: float) -> dict:
    return {"celsius": celsius, "fahrenheit": round(celsius * 9 / 5 + 32, 1)}


def _tc(call_id: str, name: str, args: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args, separators=(",", ":"))}}


def _usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# question key -> (marker in the first user message, [step answers])
# a step answer is {"tool_calls": [...]} or {"content": "..."}, plus "usage".
SCRIPT: dict[str, tuple[str, list[dict]]] = {
    "q1": (
        "weather in Paris",
        [
            {"tool_calls": [_tc("call_q1_1", "get_weather", {"city": "Paris"})], "usage": _usage(82, 17, 0, 0)},
            {"content": "It is 18 °C and cloudy in Paris.", "usage": _usage(121, 12, 64, 0)},
        ],
    ),
    "q2": (
        "Tokyo and Oslo",
        [
            {
                "tool_calls": [
                    _tc("call_q2_1", "get_weather", {"city": "Tokyo"}),
                    _tc("call_q2_2", "get_weather", {"city": "Oslo"}),
                ],
                "usage": _usage(88, 34, 0, 16),
            },
            {"content": "Tokyo is sunny at 24 °C; Oslo has rain at 7 °C, so Tokyo is 17 °C warmer.", "usage": _usage(165, 29, 64, 8)},
        ],
    ),
    "q3": (
        "Cairo in Fahrenheit",
        [
            {"tool_calls": [_tc("call_q3_1", "get_weather", {"city": "Cairo"})], "usage": _usage(90, 18, 0, 0)},
            {"tool_calls": [_tc("call_q3_2", "convert_temperature", {"celsius": 33})], "usage": _usage(133, 21, 64, 32)},
            {"content": "Cairo is clear and 33 °C, which is 91.4 °F.", "usage": _usage(170, 15, 128, 0)},
        ],
    ),
    "q4": (
        "Say hello",
        [
            {"content": "Hello! Ask me about the weather.", "usage": _usage(75, 9, 0, 0)},
        ],
    ),
}

QUESTIONS = {
    "q1": "What is the weather in Paris?",
    "q2": "Compare the weather in Tokyo and Oslo.",
    "q3": "How warm is it in Cairo in Fahrenheit?",
    "q4": "Say hello in one short sentence.",
}


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def plan(request: dict) -> tuple[str, int, dict]:
    """(question key, step, scripted answer) for a chat completions request."""
    msgs = request.get("messages") or []
    first_user = next((_content_text(m.get("content")) for m in msgs if m.get("role") == "user"), "")
    key = next((k for k, (marker, _) in SCRIPT.items() if marker.lower() in first_user.lower()), None)
    if key is None:
        raise KeyError(f"no scripted question matches {first_user!r}")
    step = sum(1 for m in msgs if m.get("role") == "assistant")
    steps = SCRIPT[key][1]
    if step >= len(steps):
        raise KeyError(f"{key}: no scripted step {step}")
    return key, step, steps[step]


def completion(key: str, step: int, ans: dict) -> dict:
    msg: dict = {"role": "assistant", "content": ans.get("content"), "refusal": None}
    finish = "stop"
    if "tool_calls" in ans:
        msg["tool_calls"] = ans["tool_calls"]
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-fake-{key}-s{step}",
        "object": "chat.completion",
        "created": CREATED + step,
        "model": RESPONSE_MODEL,
        "system_fingerprint": "fp_fake0001",
        "service_tier": "default",
        "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}],
        "usage": ans["usage"],
    }


def stream_chunks(key: str, step: int, ans: dict, include_usage: bool) -> list[dict]:
    base = {
        "id": f"chatcmpl-fake-{key}-s{step}",
        "object": "chat.completion.chunk",
        "created": CREATED + step,
        "model": RESPONSE_MODEL,
        "system_fingerprint": "fp_fake0001",
        "service_tier": "default",
    }
    extra = {"usage": None} if include_usage else {}
    out = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}], **extra)]
    if "tool_calls" in ans:
        for i, tc in enumerate(ans["tool_calls"]):
            out.append(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [{"index": i, "id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}]}, "logprobs": None, "finish_reason": None}], **extra))
            out.append(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": tc["function"]["arguments"]}}]}, "logprobs": None, "finish_reason": None}], **extra))
        finish = "tool_calls"
    else:
        words = ans["content"].split(" ")
        for i, w in enumerate(words):
            out.append(dict(base, choices=[{"index": 0, "delta": {"content": w if i == 0 else " " + w}, "logprobs": None, "finish_reason": None}], **extra))
        finish = "stop"
    out.append(dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}], **extra))
    if include_usage:
        out.append(dict(base, choices=[], usage=ans["usage"]))
    return out


_log_lock = threading.Lock()


def _log(entry: dict) -> None:
    path = os.environ.get("FAKE_OPENAI_LOG")
    if not path:
        return
    with _log_lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _json(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/") == "/health":
            return self._json(200, {"ok": True})
        if self.path.rstrip("/") == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "fake"}]})
        self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        try:
            req = json.loads(raw)
            key, step, ans = plan(req)
        except Exception as e:  # noqa: BLE001
            return self._json(400, {"error": {"message": str(e), "type": "invalid_request_error"}})
        stream = bool(req.get("stream"))
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        _log({
            "id": f"chatcmpl-fake-{key}-s{step}", "question": key, "step": step,
            "request_model": req.get("model"), "response_model": RESPONSE_MODEL,
            "stream": stream, "include_usage": include_usage, "usage": ans["usage"],
            "tool_calls": ans.get("tool_calls"), "content": ans.get("content"),
            "n_messages": len(req.get("messages") or []), "n_tools": len(req.get("tools") or []),
        })
        if not stream:
            return self._json(200, completion(key, step, ans))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for ch in stream_chunks(key, step, ans, include_usage):
            self.wfile.write(b"data: " + json.dumps(ch).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("FAKE_OPENAI_PORT", "18080")))
    a = ap.parse_args()
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    print(f"fake_openai listening on http://{a.host}:{a.port}/v1", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
