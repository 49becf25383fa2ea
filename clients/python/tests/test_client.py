from __future__ import annotations

import gzip
import json
import pathlib

from datetime import datetime, timezone

import httpx
import pytest

from agentprof_client import AgentprofClient, AgentprofError
from agentprof_client.cli import main as cli_main

FIXTURES = pathlib.Path(__file__).resolve().parents[3] / "tests" / "fixtures"


def small_case() -> list[dict]:
    raw = (FIXTURES / "cases" / "small_5" / "input.json").read_bytes()
    return json.loads(raw)


def test_create_read_and_compare(server: str) -> None:
    with AgentprofClient(server) as client:
        run = client.create_run("py-small", steps=small_case())
        assert run.request_count == 5
        again = client.get_run(run.id)
        assert again.step_count == run.step_count > 0
        metrics = client.output(run.id, "metrics")
        assert "confidence_intervals" in metrics
        assert "BOTTLENECK REPORT" in client.output(run.id, "report")
        # The README's example config: the toolkit's field names, nested as in ProfilerConfig.
        other = client.create_run(
            "py-small-2", steps=small_case(), profiler_config={"prompt_caching_prefixes": {"min_frequency": 0.1}}
        )
        comparison = client.compare(run.id, other.id)
        assert comparison["baseline"]["run_id"] == run.id
        assert "gate" not in comparison


def test_gate_by_run_name(server: str) -> None:
    with AgentprofClient(server) as client:
        base = client.create_run("py-gate-baseline", steps=small_case())
        # The newest run of a name is the one meant.
        middle = client.create_run("py-gate-baseline", steps=small_case())
        newest = client.create_run("py-gate-baseline", steps=small_case())
        assert client.find_run("py-gate-baseline") == newest.id
        assert client.find_run("py-gate-baseline", exclude=newest.id) == middle.id
        assert client.find_run(base.id) == base.id
        with pytest.raises(AgentprofError):
            client.find_run("py-gate-no-such-run")
        answer = client.compare(base.id, newest.id, alpha=0.01, gate={"max_regression": {"llm_latency": 5}})
        gate = answer["gate"]
        assert gate["exit_code"] == 0 and gate["worse"] == []
        assert gate["markdown"].startswith("### ") and "| metric |" in gate["markdown"]
        assert answer["alpha"] == 0.01


def _starts(doc: list[dict]) -> list[float]:
    """When each item's request started: its earliest step."""
    return [min(s["payload"]["event_timestamp"] for s in item["intermediate_steps"]) for item in doc]


def test_series_and_retention(server: str) -> None:
    doc = small_case()
    with AgentprofClient(server) as client:
        run = client.create_run("py-series", steps=doc, retention_seconds=86_400)
        assert run.raw["retention_seconds"] == 86_400
        series = client.series(run.id, step=60)
        assert series["step"] == 60
        assert sum(b["requests"] for b in series["buckets"]) == run.request_count
        llm_ends = sum(
            1 for item in doc for s in item["intermediate_steps"] if s["payload"]["event_type"] == "LLM_END"
        )
        assert sum(b["llm_calls"] for b in series["buckets"]) == llm_ends
        # A window of it, and the retention taken off again.
        starts = sorted(_starts(doc))
        assert client.series(run.id, from_=starts[-1] + 3600)["buckets"] != series["buckets"]
        assert client.update_run(run.id, {"retention_seconds": None}).raw["retention_seconds"] is None
        with pytest.raises(AgentprofError) as e:
            client.series(run.id, step=61)
        assert e.value.status == 400 and e.value.problem["errors"][0]["path"] == "/step"


def test_prices_cost_a_run(server: str) -> None:
    prices = {"models": {"canned-react-1": {"input": 2.0, "output": 8.0}}}
    doc = [{"request_number": 0, "intermediate_steps": [
        {"payload": {"event_type": "LLM_START", "event_timestamp": 1.0, "name": "canned-react-1", "UUID": "a"}},
        {"payload": {"event_type": "LLM_END", "event_timestamp": 2.0, "name": "canned-react-1", "UUID": "a",
                     "usage_info": {"token_usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}}}},
    ]}]
    with AgentprofClient(server) as client:
        run = client.create_run("py-cost", steps=doc, prices=prices)
        assert run.raw["prices"] == prices
        cost = client.output(run.id, "stats")["cost"]
        assert cost["total"] == pytest.approx((1000 * 2.0 + 100 * 8.0) / 1e6, abs=1e-12)
        cheaper = {"models": {"canned-react-1": {"input": 1.0, "output": 4.0}}}
        client.update_run(run.id, {"prices": cheaper})
        assert client.output(run.id, "stats")["cost"]["total"] == pytest.approx(cost["total"] / 2, abs=1e-12)


def test_windows_of_a_run(server: str) -> None:
    doc = small_case()
    starts = sorted(_starts(doc))
    cut = (starts[1] + starts[2]) / 2  # two requests before it, three after
    with AgentprofClient(server) as client:
        run = client.create_run("py-windows", steps=doc)
        # The run of the later requests (their items keep their request numbers).
        later = [item for item, t in zip(doc, _starts(doc)) if t >= cut]
        alone = client.create_run("py-later", steps=later)
        assert alone.request_count == len(later) == 3
        as_datetime = datetime.fromtimestamp(cut, tz=timezone.utc)
        for from_ in (cut, as_datetime, as_datetime.isoformat()):
            assert client.output(run.id, "forecast", from_=from_) == client.output(alone.id, "forecast")
        page = client.timeline(run.id, 0, 200, from_=cut)
        assert page["requests"] == 3
        before = client.timeline(run.id, 0, 200, to=cut)
        assert before["requests"] == 2
        # The run's later requests against its earlier ones.
        comparison = client.compare(run.id, run.id, baseline_window=(None, cut), candidate_window=(cut, None))
        assert comparison["baseline"]["run_id"] == run.id
        with pytest.raises(AgentprofError) as e:
            client.output(run.id, "metrics", from_="yesterday")
        assert e.value.status == 400 and e.value.problem["errors"][0]["path"] == "/from"
    with pytest.raises(ValueError):
        client.output(run.id, "metrics", to=datetime(2026, 1, 1))


def test_each_append_is_its_own_batch(server: str) -> None:
    with AgentprofClient(server) as client:
        run = client.create_run("py-append")
        doc = small_case()
        first = client.append_steps(run.id, doc)
        assert first["steps"]["stored"] == 80
        # A new call is a new batch (its own Idempotency-Key): identical steps are kept, as the
        # toolkit keeps repeated steps; only a retry of the same call is stored once.
        second = client.append_steps(run.id, doc)
        assert second["steps"]["stored"] == 80
        assert client.get_run(run.id).step_count == 160


def test_errors_carry_the_problem(server: str) -> None:
    with AgentprofClient(server) as client:
        with pytest.raises(AgentprofError) as e:
            client.get_run("00000000-0000-4000-8000-000000000000")
        assert e.value.status == 404
        assert e.value.problem["code"] == "run-not-found"
        with pytest.raises(ValueError):
            client.output("x", "nope")


def test_retries_keep_one_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) < 3:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"code": "busy"})
        return httpx.Response(200, json={"steps": {"stored": 1}})

    client = AgentprofClient("http://agentprof.test", transport=httpx.MockTransport(handler))
    big = [{"id": "r", "intermediate_steps": [{"payload": {"event_type": "LLM_START", "UUID": "x" * 5000}}]}]
    assert client.append_steps("run", big) == {"steps": {"stored": 1}}
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1
    assert seen[0].headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(seen[0].content)) == big


def test_cli_post_prints_the_run_url(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "cases" / "small_5" / "input.json"
    assert cli_main(["--url", server, "post", str(path), "--name", "nightly"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith(f"{server}/ui/runs/"), url
    page = httpx.get(url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    run_id = url.rsplit("/", 1)[1]
    assert cli_main(["--url", server, "get", run_id]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["name"] == "nightly" and run["request_count"] == 5
    assert cli_main(["--url", server, "get", run_id, "timeline", "--limit", "2"]) == 0
    timeline = json.loads(capsys.readouterr().out)
    assert timeline["requests"] == 5 and timeline["limit"] == 2
    assert {c["request"] for c in timeline["calls"]} <= {0, 1} and timeline["calls"]


def test_cli_reports_errors(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--url", server, "get", "00000000-0000-4000-8000-000000000000", "metrics"]) == 1
    assert "404" in capsys.readouterr().err


def test_cli_says_when_the_server_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    # A port nothing listens on: one line, no traceback.
    code = cli_main(["--url", "http://127.0.0.1:9", "get", "00000000-0000-4000-8000-000000000000"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reach agentprof at http://127.0.0.1:9" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_output_piped_to_a_reader_that_leaves(server: str) -> None:
    import subprocess
    import sys as _sys

    path = FIXTURES / "cases" / "small_5" / "input.json"
    env = {**__import__("os").environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1] / "src")}
    post = subprocess.run(
        [_sys.executable, "-m", "agentprof_client.cli", "--url", server, "post", str(path)],
        capture_output=True, text=True, env=env, check=True,
    )
    run_id = post.stdout.strip().rsplit("/", 1)[1]
    # `| head -n 1`: the reader closes after one line of a long output.
    proc = subprocess.Popen(
        [_sys.executable, "-m", "agentprof_client.cli", "--url", server, "get", run_id, "standardized.csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait() == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err
