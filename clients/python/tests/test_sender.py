from __future__ import annotations

import threading
import time

import httpx

from agentprof_client import AgentprofClient, StepSender


def step(uuid: str, t: float, kind: str = "LLM_START") -> dict:
    return {"payload": {"event_type": kind, "event_timestamp": t, "UUID": uuid, "name": "m"}}


def test_steps_reach_the_run_grouped_by_request(server: str) -> None:
    client = AgentprofClient(server)
    sender = StepSender(client, lambda c: c.create_run("py-sender").id, batch_size=7, flush_interval=0.05)
    for r in range(3):
        for i in range(10):
            sender.submit(f"request-{r}", step(f"{r}-{i}", 1.0 + i))
    stats = sender.close()
    assert stats.sent == 30 and stats.dropped == 0 and stats.batches >= 5
    assert sender.run_id is not None
    run = client.get_run(sender.run_id)
    assert (run.request_count, run.step_count) == (3, 30)


def test_a_slow_server_never_blocks_and_drops_are_counted() -> None:
    release = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        release.wait(5)
        return httpx.Response(200, json={"id": "run", "steps": {"stored": 1}})

    client = AgentprofClient("http://agentprof.test", transport=httpx.MockTransport(slow), retries=0)
    sender = StepSender(client, lambda c: "run", max_buffer=100, batch_size=10, flush_interval=0.01)
    started = time.monotonic()
    accepted = sum(sender.submit("r", step(str(i), float(i))) for i in range(1_000))
    assert time.monotonic() - started < 0.5, "submit must not wait for the server"
    assert accepted < 1_000
    release.set()
    stats = sender.close(timeout=10)
    assert stats.dropped_full == 1_000 - accepted
    assert stats.sent + stats.dropped == stats.submitted == 1_000


def test_a_server_that_is_down_costs_steps_not_the_workflow() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = AgentprofClient("http://agentprof.test", transport=httpx.MockTransport(down), retries=1)
    sender = StepSender(client, lambda c: c.create_run("x").id, flush_interval=0.01)
    for i in range(5):
        assert sender.submit("r", step(str(i), float(i)))
    stats = sender.close(timeout=10)
    assert stats.dropped_failed == 5 and stats.sent == 0
