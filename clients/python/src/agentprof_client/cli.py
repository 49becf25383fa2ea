"""``agentprof-client``: post a workflow's steps from the command line, print the run's URL."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import sys
from typing import Any

import httpx

from agentprof_client.client import OUTPUTS, AgentprofClient, AgentprofError

#: What ``get`` shows besides the outputs: the run itself and its timeline.
VIEWS = ("run", "timeline")


def _load(path: pathlib.Path) -> Any:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="agentprof-client", description="Talk to an agentprof server.")
    ap.add_argument("--url", help="the server (default: $AGENTPROF_URL, else http://127.0.0.1:8080)")
    sub = ap.add_subparsers(dest="command", required=True)

    post = sub.add_parser("post", help="create a run from a steps file (workflow_output.json, any input form, .gz too)")
    post.add_argument("file", type=pathlib.Path)
    post.add_argument("--name", default="", help="the run's name")
    post.add_argument("--toolkit", choices=["aiq-1.1", "nat-1.9"], help="default: detected from the steps")
    post.add_argument("--profiler-config", type=pathlib.Path, help="a JSON file of ProfilerConfig fields")

    get = sub.add_parser("get", help="print a run, its timeline, or one of its outputs")
    get.add_argument("run_id")
    get.add_argument("output", nargs="?", default="run", choices=VIEWS + OUTPUTS, help="default: the run")
    get.add_argument("--offset", type=int, default=0, help="timeline: the first request")
    get.add_argument("--limit", type=int, default=20, help="timeline: how many requests")
    get.add_argument("--from", dest="from_", help="only requests that started at or after this (Unix seconds or RFC 3339)")
    get.add_argument("--to", help="only requests that started before this (Unix seconds or RFC 3339)")

    cmp = sub.add_parser("compare", help="compare two runs (per-metric significance tests)")
    cmp.add_argument("baseline")
    cmp.add_argument("candidate")
    for side in ("baseline", "candidate"):
        cmp.add_argument(f"--{side}-from", help=f"only the {side}'s requests that started at or after this")
        cmp.add_argument(f"--{side}-to", help=f"only the {side}'s requests that started before this")

    args = ap.parse_args(argv)
    try:
        with AgentprofClient(args.url) as client:
            if args.command == "post":
                config = json.loads(args.profiler_config.read_text()) if args.profiler_config else None
                run = client.create_run(
                    args.name or args.file.name, steps=_load(args.file), toolkit=args.toolkit, profiler_config=config
                )
                print(client.run_url(run.id))
            elif args.command == "get":
                if args.output == "run":
                    out: Any = client.get_run(args.run_id).raw
                elif args.output == "timeline":
                    out = client.timeline(args.run_id, args.offset, args.limit, from_=args.from_, to=args.to)
                else:
                    out = client.output(args.run_id, args.output, from_=args.from_, to=args.to)
                print(out if isinstance(out, str) else json.dumps(out, indent=2))
            else:
                compared = client.compare(
                    args.baseline,
                    args.candidate,
                    baseline_window=(args.baseline_from, args.baseline_to),
                    candidate_window=(args.candidate_from, args.candidate_to),
                )
                print(json.dumps(compared, indent=2))
            sys.stdout.flush()
    except AgentprofError as e:
        print(f"agentprof-client: {e}", file=sys.stderr)
        return 1
    except httpx.TransportError as e:
        url = args.url or os.environ.get("AGENTPROF_URL") or "http://127.0.0.1:8080"
        print(f"agentprof-client: cannot reach agentprof at {url} ({e}); is the server running?", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): what it wanted it has. Point stdout at nothing so that
        # the interpreter's own flush at exit does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (OSError, ValueError) as e:
        print(f"agentprof-client: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
