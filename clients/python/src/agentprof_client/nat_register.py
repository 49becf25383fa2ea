"""The NeMo Agent Toolkit plugin: a telemetry exporter that streams every IntermediateStep to an
agentprof run.

.. code-block:: yaml

    general:
      telemetry:
        tracing:
          agentprof:
            _type: agentprof
            endpoint: http://127.0.0.1:8080   # required
            api_key: ${AGENTPROF_API_KEY}     # optional
            run_name: nightly-eval            # optional
            compare_with: nightly-baseline    # optional: gate this eval against a baseline run
            compare_fail: true                # optional: exit 1 when a metric is worse

The toolkit finds this module through the ``nat.components`` entry point. Each workflow run is
one request of the run (keyed by the toolkit's ``workflow_run_id``); steps are sent in the
background by a :class:`~agentprof_client.sender.StepSender`, so a slow or absent server never
blocks or fails the workflow, and the exporter flushes when the toolkit stops it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import pathlib
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from pydantic import Field

from nat.builder.builder import Builder
from nat.builder.context import ContextState
from nat.cli.register_workflow import register_eval_callback, register_telemetry_exporter
from nat.data_models.intermediate_step import IntermediateStep
from nat.data_models.telemetry_exporter import TelemetryExporterBaseConfig
from nat.observability.exporter.base_exporter import BaseExporter

from agentprof_client.client import AgentprofClient
from agentprof_client.sender import StepSender

logger = logging.getLogger(__name__)


class AgentprofTelemetryExporterConfig(TelemetryExporterBaseConfig, name="agentprof"):
    """Streams the workflow's IntermediateSteps to an agentprof run."""

    endpoint: str = Field(description="The agentprof server, e.g. http://127.0.0.1:8080.")
    api_key: str | None = Field(default=None, description="A write key, when the server has keys.")
    run_name: str | None = Field(
        default=None, description="The run's name; default: the workflow's name and the start time."
    )
    max_buffer: int = Field(default=50_000, description="Steps held while the server is slow; beyond, dropped.")
    batch_size: int = Field(default=2_000, description="Steps per batch at most.")
    flush_interval: float = Field(default=2.0, description="Seconds a batch waits to fill before it is sent.")
    flush_timeout: float = Field(default=60.0, description="Seconds the exporter waits for the last steps at exit.")
    compare_with: str | None = Field(
        default=None,
        description="A baseline run (id, or the newest run of that name): at the end of `nat eval` this eval's "
        "requests are compared with it, the report is written to the eval's output folder as "
        "agentprof_compare.md and the verdict is printed.",
    )
    compare_fail: bool = Field(
        default=False, description="Make `nat eval` exit 1 when a metric is significantly worse than the baseline."
    )
    compare_alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="The level of the comparison's tests.")
    compare_max_regression: dict[str, float] = Field(
        default_factory=dict,
        description="Percent of the baseline's mean a significant worsening must exceed to count, by metric.",
    )
    compare_lower_is_better: list[str] = Field(
        default_factory=list, description="Evaluators whose scores are better lower."
    )


class AgentprofExporter(BaseExporter):
    """Hands each step to the shared sender; all its work happens off the event loop."""

    def __init__(self, sender: StepSender, flush_timeout: float, context_state: ContextState | None = None) -> None:
        super().__init__(context_state=context_state)
        self._sender = sender
        self._flush_timeout = flush_timeout

    @property
    def sender(self) -> StepSender:
        return self._sender

    def export(self, event: IntermediateStep) -> None:
        if not isinstance(event, IntermediateStep):
            return
        request_id = self._request_id()
        if event.event_type.value == "WORKFLOW_START":
            # Under nat eval each item's workflow runs with a pre-generated root span id, which
            # the eval's results carry: remember which request it was.
            root = getattr(self._context_state, "_root_span_id", None)
            root_id = root.get() if root is not None else None
            if root_id is not None:
                _ROOTS[int(root_id)] = request_id
        self._sender.submit(request_id, event.model_dump(mode="json"))

    def _request_id(self) -> str:
        try:
            run_id = self._context_state.workflow_run_id.get()
        except LookupError:
            run_id = None
        return str(run_id) if run_id else "workflow"

    async def _cleanup(self) -> None:
        # The toolkit stops an exporter when its workflow (or eval) ends: send what is left.
        import asyncio

        await asyncio.to_thread(self._sender.flush, self._flush_timeout)


#: The sender of the last exporter built in this process, for the eval callback.
_SENDERS: list[StepSender] = []
#: Root span id of an eval item's workflow run -> the request its steps went to.
_ROOTS: dict[int, str] = {}


class AgentprofEvalCallback:
    """At the end of ``nat eval``: the run gets the eval's config as metadata, its profiler section
    as the run's ``profiler_config`` (so the run's outputs are the ones the eval's own profiler
    wrote), and each item's evaluator scores with the request they belong to."""

    #: Ask the eval loop for per-item root span ids, which tie items to requests.
    needs_root_span_ids = True

    def __init__(self, config: AgentprofTelemetryExporterConfig) -> None:
        self._config = config
        self._alias: str | None = None
        self._started: float | None = None

    def on_eval_started(self, *, workflow_alias: str, eval_input: Any, config: Any, job_id: str | None = None) -> None:
        self._alias = workflow_alias
        # The eval's window of the run: a long-lived run (one run_name for many evals) then still
        # gives each eval's own profile, from its requests alone.
        self._started = time.time()

    def on_eval_complete(self, result: Any) -> None:
        if not _SENDERS:
            logger.warning("agentprof: no exporter ran during this eval; nothing to annotate")
            return
        sender = _SENDERS[-1]
        sender.flush(self._config.flush_timeout)
        if sender.run_id is None:
            return
        effective = _dump(getattr(result, "effective_config", None))
        profiler = ((effective.get("eval") or {}).get("general") or {}).get("profiler")
        items = [
            {
                "id": item.item_id,
                "request": _ROOTS.get(int(item.root_span_id)) if item.root_span_id is not None else None,
                "scores": dict(item.scores),
            }
            for item in result.items
        ]
        eval_window = {"from": self._started, "to": time.time()} if self._started is not None else None
        changes: dict[str, Any] = {
            "metadata": {
                "source": "nat-plugin",
                "eval": {
                    "workflow": self._alias,
                    "metric_scores": dict(result.metric_scores),
                    "items": items,
                    "config": effective,
                    "window": eval_window,
                },
            }
        }
        if isinstance(profiler, dict):
            changes["profiler_config"] = profiler
        try:
            with AgentprofClient(self._config.endpoint, self._config.api_key) as client:
                client.update_run(sender.run_id, json.loads(json.dumps(changes, default=str)))
                where = client.api_url(sender.run_id) + "/metrics"
            if eval_window is not None:
                where += "?" + urlencode({k: repr(v) for k, v in eval_window.items()})
            logger.info("agentprof: the eval's config and scores are on run %s; its profile: %s", sender.run_id, where)
        except Exception as e:  # noqa: BLE001 - never fail the eval over its profile
            logger.warning("agentprof: could not annotate run %s: %s", sender.run_id, e)
        if self._config.compare_with:
            _output = ((effective.get("eval") or {}).get("general") or {}).get("output") or {}
            out_dir = _output.get("dir") or ((effective.get("eval") or {}).get("general") or {}).get("output_dir")
            self._gate(sender.run_id, eval_window, out_dir)

    def _gate(self, run_id: str, eval_window: dict[str, float] | None, out_dir: str | None) -> None:
        """Compares this eval's requests with the baseline run as ``agentprof compare`` would,
        writes the markdown report beside the eval's outputs and prints the verdict. A worse
        metric fails ``nat eval`` only when ``compare_fail`` is set, and only once the eval has
        finished: the toolkit ignores a callback's errors, and its own output files are written
        by a callback that runs after this one, so the exit status is set at interpreter exit."""
        config = self._config
        try:
            with AgentprofClient(config.endpoint, config.api_key) as client:
                baseline = client.find_run(str(config.compare_with), exclude=run_id)
                window = (eval_window["from"], eval_window["to"]) if eval_window else None
                answer = client.compare(
                    baseline,
                    run_id,
                    candidate_window=window,
                    alpha=config.compare_alpha,
                    gate={
                        "max_regression": dict(config.compare_max_regression),
                        "lower_is_better": list(config.compare_lower_is_better),
                    },
                )
            gate = answer["gate"]
            markdown = str(gate["markdown"])
            failed = bool(gate["exit_code"])
            if out_dir:
                path = pathlib.Path(out_dir)
                path.mkdir(parents=True, exist_ok=True)
                (path / "agentprof_compare.md").write_text(markdown)
        except Exception as e:  # noqa: BLE001 - the comparison failing is reported, not raised
            print(f"agentprof compare: could not compare with {config.compare_with!r}: {e}", flush=True)
            logger.warning("agentprof: could not compare run %s with %s: %s", run_id, config.compare_with, e)
            return
        # The report's first line is its verdict.
        print(markdown.splitlines()[0].lstrip("# ") if markdown else "agentprof compare: no report", flush=True)
        if failed and config.compare_fail:
            _GATE_FAILED.append(run_id)


#: Runs whose eval the gate failed: the process exits 1 at its very end.
_GATE_FAILED: list[str] = []


def _exit_if_gate_failed() -> None:
    """At interpreter exit: status 1 when the gate failed an eval. Registered when the toolkit
    imports this plugin, before the toolkit's own exit handlers, so that it runs after them
    (atexit runs the last registered first) and skips nothing but the interpreter's teardown."""
    if _GATE_FAILED:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


atexit.register(_exit_if_gate_failed)


def _dump(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if hasattr(config, "model_dump"):
        return dict(config.model_dump(mode="json", by_alias=True))
    return dict(config) if isinstance(config, dict) else {}


@register_eval_callback(config_type=AgentprofTelemetryExporterConfig)
def agentprof_eval_callback(config: AgentprofTelemetryExporterConfig) -> AgentprofEvalCallback:
    return AgentprofEvalCallback(config)


def _default_run_name(builder: Builder) -> str:
    try:
        workflow = builder.get_workflow_config().type
    except Exception:  # noqa: BLE001 - a name is a nicety; never fail the workflow over it
        workflow = "workflow"
    return f"{workflow} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"


@register_telemetry_exporter(config_type=AgentprofTelemetryExporterConfig)
async def agentprof_telemetry_exporter(config: AgentprofTelemetryExporterConfig, builder: Builder) -> Any:
    client = AgentprofClient(config.endpoint, config.api_key)
    name = config.run_name or _default_run_name(builder)
    metadata = {"source": "nat-plugin", "session": str(uuid.uuid4())}

    def create_run(c: AgentprofClient) -> str:
        run = c.create_run(name, metadata=metadata)
        logger.info("agentprof: streaming steps to %s", c.run_url(run.id))
        return run.id

    sender = StepSender(
        client,
        create_run,
        max_buffer=config.max_buffer,
        batch_size=config.batch_size,
        flush_interval=config.flush_interval,
    )
    _SENDERS.append(sender)
    try:
        yield AgentprofExporter(sender, config.flush_timeout)
    finally:
        sender.close(config.flush_timeout)
        client.close()
