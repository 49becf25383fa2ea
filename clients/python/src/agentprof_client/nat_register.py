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

The toolkit finds this module through the ``nat.components`` entry point. Each workflow run is
one request of the run (keyed by the toolkit's ``workflow_run_id``); steps are sent in the
background by a :class:`~agentprof_client.sender.StepSender`, so a slow or absent server never
blocks or fails the workflow, and the exporter flushes when the toolkit stops it.
"""

from __future__ import annotations

import json
import logging
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
