"""The NeMo Agent Toolkit exporter, with the real toolkit's step model (skipped without it).

The end-to-end check, a real `nat eval` streaming to a server, is scripts/nat-plugin-check.sh.
"""

from __future__ import annotations

import gzip
import json
import pathlib

import pytest

nat = pytest.importorskip("nat")

from nat.builder.context import ContextState  # noqa: E402
from nat.data_models.intermediate_step import IntermediateStep  # noqa: E402

from agentprof_client import AgentprofClient, StepSender  # noqa: E402
from agentprof_client.nat_register import AgentprofExporter, AgentprofTelemetryExporterConfig  # noqa: E402

CASE = pathlib.Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "cases" / "realnat_react_12"


def test_the_config_is_registered_under_agentprof() -> None:
    config = AgentprofTelemetryExporterConfig(endpoint="http://127.0.0.1:8080")
    assert config.type == "agentprof"
    assert config.max_buffer > 0


def test_every_step_of_every_workflow_run_reaches_one_run(server: str) -> None:
    items = json.loads(gzip.decompress((CASE / "input.json.gz").read_bytes()))
    client = AgentprofClient(server)
    config = json.loads((CASE / "agentprof_config.json").read_text())
    sender = StepSender(
        client, lambda c: c.create_run("py-nat", profiler_config=config).id, flush_interval=0.05
    )
    exporter = AgentprofExporter(sender, flush_timeout=30, context_state=ContextState.get())
    state = ContextState.get()
    total = 0
    for item in items:
        token = state.workflow_run_id.set(f"run-{item['id']}")
        try:
            for raw in item["intermediate_steps"]:
                exporter.export(IntermediateStep.model_validate(raw))
                total += 1
        finally:
            state.workflow_run_id.reset(token)
    stats = sender.close()
    assert (stats.sent, stats.dropped) == (total, 0)
    run = client.get_run(sender.run_id or "")
    assert (run.request_count, run.step_count) == (len(items), total)
    assert run.toolkit == "nat-1.9"
    # What the toolkit's own profiler wrote for this eval.
    expected = json.loads((CASE / "expected_nat" / "inference_optimization.json").read_text())
    assert_close(expected, client.output(run.id, "metrics"))
    csv = (CASE / "expected_nat" / "standardized_data_all.csv").read_text()
    assert csv == client.output(run.id, "standardized.csv")
    # The report is byte-equal up to its PrefixSpan lines, where agentprof reads `min_support` by
    # value (docs/deviations.md#d7) and finds the patterns the toolkit's float 2.0 hides.
    report = (CASE / "expected_nat" / "workflow_profiling_report.txt").read_text()
    ours = client.output(run.id, "report")
    cut = report.index("No frequent patterns found by PrefixSpan")
    assert ours[:cut] == report[:cut]


def assert_close(expected: object, got: object, at: str = "") -> None:
    if isinstance(expected, dict) and isinstance(got, dict):
        assert expected.keys() == got.keys(), at
        for k in expected:
            assert_close(expected[k], got[k], f"{at}/{k}")
    elif isinstance(expected, list) and isinstance(got, list):
        assert len(expected) == len(got), at
        for i, (a, b) in enumerate(zip(expected, got)):
            assert_close(a, b, f"{at}/{i}")
    elif isinstance(expected, float) or isinstance(got, float):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), at
    else:
        assert expected == got, at
