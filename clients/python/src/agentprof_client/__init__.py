"""A client for agentprof, the agent workflow profiler service.

``AgentprofClient`` wraps the REST API; ``StepSender`` streams IntermediateSteps to a run in the
background with a bounded buffer; ``agentprof_client.nat_register`` is the NeMo Agent Toolkit
plugin that uses it (``_type: agentprof`` under ``general.telemetry.tracing``).
"""

from agentprof_client.client import AgentprofClient, AgentprofError, Run
from agentprof_client.sender import SenderStats, StepSender

__all__ = ["AgentprofClient", "AgentprofError", "Run", "SenderStats", "StepSender"]
