#!/usr/bin/env python3
"""Reads the captured bodies of one library (tests/fixtures/otlp_genai/<library>/), checks them
against each transport's truth.json, and writes <library>/attributes.md: per span kind, the
attribute keys (with their OTLP AnyValue type and one truncated example), the event names and
their attribute keys, the scopes (name, version, schema_url) and the resource.

Usage: python summarize.py FIXTURE_DIR [--semconv-note TEXT]
Exit status 1 if a capture disagrees with its truth.json.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from collections import OrderedDict

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

KIND = {v: k.replace("SPAN_KIND_", "") for k, v in trace_pb2.Span.SpanKind.items()}


def any_type(v) -> str:
    w = v.WhichOneof("value")
    if w == "array_value":
        inner = sorted({any_type(x) for x in v.array_value.values})
        return f"array<{'|'.join(inner) or 'empty'}>"
    return {"string_value": "string", "int_value": "int", "double_value": "double", "bool_value": "bool",
            "kvlist_value": "kvlist", "bytes_value": "bytes", None: "empty"}[w]


def any_py(v):
    w = v.WhichOneof("value")
    if w == "array_value":
        return [any_py(x) for x in v.array_value.values]
    if w == "kvlist_value":
        return {kv.key: any_py(kv.value) for kv in v.kvlist_value.values}
    if w == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, w) if w else None


def short(x, n=110) -> str:
    s = x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
    s = s.replace("\n", "\\n").replace("|", "\\|")
    return s if len(s) <= n else s[: n - 1] + "…"


def load(dirpath: str) -> list[tuple[str, trace_service_pb2.ExportTraceServiceRequest]]:
    out = []
    for f in sorted(os.listdir(dirpath)):
        if not (f.endswith(".pb") or f.endswith(".pb.gz")):
            continue
        raw = open(os.path.join(dirpath, f), "rb").read()
        if f.endswith(".gz"):
            raw = gzip.decompress(raw)
        out.append((f, trace_service_pb2.ExportTraceServiceRequest.FromString(raw)))
    return out


def span_kind_key(span, attrs: dict) -> str:
    op = attrs.get("gen_ai.operation.name")
    if op is not None:
        return f"{op}"
    return f"(no gen_ai.operation.name) {span.name}"


def check_truth(transport_dir: str, reqs) -> list[str]:
    problems = []
    tpath = os.path.join(transport_dir, "truth.json")
    if not os.path.exists(tpath):
        return [f"{transport_dir}: no truth.json"]
    truth = json.load(open(tpath))
    wire = {}
    for _, req in reqs:
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    wire[s.span_id.hex()] = s
    expected = {}
    for t in truth["traces"]:
        for group in ("agent_invocations", "chat_calls", "tool_calls", "other_spans"):
            for rec in t.get(group, []):
                expected[rec["span_id"]] = (t["trace_id"], rec)
    if set(wire) != set(expected):
        problems.append(f"{transport_dir}: span ids differ (wire {len(wire)}, truth {len(expected)}; "
                        f"missing on wire {sorted(set(expected) - set(wire))[:5]}, extra {sorted(set(wire) - set(expected))[:5]})")
    for sid, (tid, rec) in expected.items():
        s = wire.get(sid)
        if s is None:
            continue
        if s.trace_id.hex() != tid:
            problems.append(f"{sid}: trace id {s.trace_id.hex()} != truth {tid}")
        if (s.parent_span_id.hex() or None) != rec["parent_span_id"]:
            problems.append(f"{sid}: parent {s.parent_span_id.hex()} != truth {rec['parent_span_id']}")
        if s.start_time_unix_nano != rec["start_unix_nano"] or s.end_time_unix_nano != rec["end_unix_nano"]:
            problems.append(f"{sid}: times differ from truth")
        if s.name != rec["name"]:
            problems.append(f"{sid}: name {s.name!r} != truth {rec['name']!r}")
    if truth["totals"]["spans"] != len(wire):
        problems.append(f"{transport_dir}: truth totals.spans {truth['totals']['spans']} != wire {len(wire)}")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("fixture_dir")
    ap.add_argument("--semconv-note", default="")
    a = ap.parse_args()
    lib = os.path.basename(os.path.normpath(a.fixture_dir))
    transports = [d for d in ("http", "grpc", "http_gzip") if os.path.isdir(os.path.join(a.fixture_dir, d))]
    kinds: "OrderedDict[str, dict]" = OrderedDict()
    scopes: dict = {}
    resources: dict = {}
    problems: list[str] = []
    counts = {}
    for tr in transports:
        d = os.path.join(a.fixture_dir, tr)
        reqs = load(d)
        problems += check_truth(d, reqs)
        nspans = 0
        traces = set()
        for _, req in reqs:
            for rs in req.resource_spans:
                rkey = tuple(sorted((kv.key, short(any_py(kv.value), 60)) for kv in rs.resource.attributes))
                resources.setdefault(rkey, rs.schema_url)
                for ss in rs.scope_spans:
                    scopes[(ss.scope.name, ss.scope.version, ss.schema_url)] = scopes.get((ss.scope.name, ss.scope.version, ss.schema_url), 0) + len(ss.spans)
                    for s in ss.spans:
                        nspans += 1
                        traces.add(s.trace_id)
                        at = {kv.key: kv.value for kv in s.attributes}
                        py = {k: any_py(v) for k, v in at.items()}
                        key = span_kind_key(s, py)
                        k = kinds.setdefault(key, {"names": OrderedDict(), "kinds": set(), "scopes": set(), "attrs": OrderedDict(),
                                                   "events": OrderedDict(), "count": 0, "status": set(), "links": 0, "root": 0})
                        k["count"] += 1
                        k["names"][s.name] = None
                        k["kinds"].add(KIND.get(s.kind, str(s.kind)))
                        k["scopes"].add(ss.scope.name)
                        k["status"].add(trace_pb2.Status.StatusCode.Name(s.status.code))
                        k["links"] += len(s.links)
                        k["root"] += 0 if s.parent_span_id else 1
                        for kk, vv in at.items():
                            ent = k["attrs"].setdefault(kk, {"types": set(), "example": None, "n": 0})
                            ent["types"].add(any_type(vv))
                            ent["n"] += 1
                            if ent["example"] is None:
                                ent["example"] = py[kk]
                        for ev in s.events:
                            e = k["events"].setdefault(ev.name, {"n": 0, "attrs": OrderedDict()})
                            e["n"] += 1
                            for kv in ev.attributes:
                                ea = e["attrs"].setdefault(kv.key, {"types": set(), "example": any_py(kv.value)})
                                ea["types"].add(any_type(kv.value))
        counts[tr] = {"requests": len(reqs), "spans": nspans, "traces": len(traces)}

    lines = [f"# {lib}: attributes seen on the wire", ""]
    got = ", ".join(f"{t}: {c['requests']} requests, {c['spans']} spans, {c['traces']} traces" for t, c in counts.items())
    lines.append(f"Generated by `scripts/genai_capture/summarize.py` from the captured protobuf bodies ({got}). "
                 "Types are OTLP AnyValue types; examples are the first value seen, truncated.")
    lines.append("")
    if a.semconv_note:
        lines += ["## Semantic conventions", "", a.semconv_note, ""]
    lines += ["## Scopes", "", "| scope name | version | schema_url | spans (all transports) |", "|---|---|---|---|"]
    for (n, v, u), c in sorted(scopes.items()):
        lines.append(f"| `{n}` | `{v}` | `{u or '(none)'}` | {c} |")
    lines += ["", "## Resource", ""]
    for rkey, surl in resources.items():
        lines.append("- " + ", ".join(f"`{k}`={v}" for k, v in rkey) + f" (resource schema_url: `{surl or '(none)'}`)")
    lines.append("")
    for key, k in kinds.items():
        lines += [f"## `{key}`", "",
                  f"{k['count']} spans over all transports; span names: {', '.join('`'+n+'`' for n in list(k['names'])[:6])}"
                  f"{' …' if len(k['names']) > 6 else ''}; SpanKind {'/'.join(sorted(k['kinds']))}; scope {', '.join('`'+s+'`' for s in sorted(k['scopes']))}; "
                  f"status {'/'.join(sorted(k['status']))}; roots {k['root']}; links {k['links']}.", "",
                  "| attribute | type | on spans | example |", "|---|---|---|---|"]
        for kk, ent in k["attrs"].items():
            lines.append(f"| `{kk}` | {'/'.join(sorted(ent['types']))} | {ent['n']}/{k['count']} | {short(ent['example'])} |")
        if k["events"]:
            lines += ["", "Events:", ""]
            for en, e in k["events"].items():
                lines.append(f"- `{en}` ({e['n']}x): " + (", ".join(f"`{ak}` {'/'.join(sorted(av['types']))} e.g. {short(av['example'], 80)}" for ak, av in e["attrs"].items()) or "no attributes"))
        else:
            lines += ["", "Events: none."]
        lines.append("")
    if problems:
        lines += ["## Capture vs truth.json: PROBLEMS", ""] + [f"- {p}" for p in problems] + [""]
    else:
        lines += ["## Capture vs truth.json", "", "Every span id in each transport's truth.json is on the wire with the same trace id, parent, name and start/end times, and no other span is.", ""]
    with open(os.path.join(a.fixture_dir, "attributes.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"{lib}: {counts} problems={len(problems)}", file=sys.stderr)
    for p in problems:
        print("  ", p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
