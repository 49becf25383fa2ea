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

import logging
import time
import uuid
from typing import Any

from pydantic import Field

from nat.builder.builder import Builder
from nat.builder.context import ContextState
from nat.cli.register_workflow import register_telemetry_exporter
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
    try:
        yield AgentprofExporter(sender, config.flush_timeout)
    finally:
        sender.close(config.flush_timeout)
        client.close()
