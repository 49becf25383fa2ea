"""A small typed client for agentprof's REST API (see the server's /docs for every endpoint)."""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Mapping, Sequence, Union
from urllib.parse import urlencode

import httpx

#: A time bound of a window: Unix seconds, a timezone-aware ``datetime``, or RFC 3339 text.
Time = Union[float, int, datetime, str]

DEFAULT_URL = "http://127.0.0.1:8080"

def _load_outputs() -> tuple[dict[str, Any], ...]:
    # The server's registry of outputs as `agentprof outputs` prints it; a test of the server
    # keeps this copy equal to it.
    text = resources.files("agentprof_client").joinpath("outputs.json").read_text("utf-8")
    return tuple(json.loads(text))


#: Outputs of a run as the server lists them: name, path, file, content type, nat-only.
OUTPUT_INFO = _load_outputs()

#: Outputs of a run, by the last segment of their path.
OUTPUTS = tuple(o["path"] for o in OUTPUT_INFO)


class AgentprofError(Exception):
    """A request agentprof refused or could not answer; ``problem`` is its problem+json body."""

    def __init__(self, status: int, problem: Mapping[str, Any] | None, text: str) -> None:
        self.status = status
        self.problem = dict(problem or {})
        detail = self.problem.get("detail") or text[:200]
        super().__init__(f"agentprof answered {status}: {detail}")


@dataclass(frozen=True)
class Run:
    """A run as the server shows it."""

    id: str
    name: str
    toolkit: str
    request_count: int
    step_count: int
    raw: Mapping[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Run:
        return cls(
            id=str(body["id"]),
            name=str(body.get("name", "")),
            toolkit=str(body.get("toolkit", "")),
            request_count=int(body.get("request_count", 0)),
            step_count=int(body.get("step_count", 0)),
            raw=body,
        )


class AgentprofClient:
    """The REST API. Writes that may be retried carry an ``Idempotency-Key``, so a retry after a
    timeout never doubles a run or a batch; 429/503 answers are retried after their
    ``Retry-After``.

    The server comes from ``url``, else ``AGENTPROF_URL``, else ``http://127.0.0.1:8080``; the API
    key from ``api_key``, else ``AGENTPROF_API_KEY``.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("AGENTPROF_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("AGENTPROF_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries = retries
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentprofClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_url(self, run_id: str) -> str:
        """Where a person reads the run: its page in the dashboard."""
        return f"{self.url}/ui/runs/{run_id}"

    def api_url(self, run_id: str) -> str:
        """The run's resource in the REST API."""
        return f"{self.url}/v1/runs/{run_id}"

    def create_run(
        self,
        name: str = "",
        *,
        steps: Sequence[Any] | None = None,
        toolkit: str | None = None,
        profiler_config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        retention_seconds: int | None = None,
        prices: Mapping[str, Any] | None = None,
    ) -> Run:
        """Creates a run, with its first steps (any input form) if given; with
        ``retention_seconds``, the server deletes requests whose last step is older than that;
        with ``prices`` (``{"models": {name: {"input", "output", "cached_input"}}}``, USD per
        million tokens), the run is costed with them instead of the server's table."""
        body: dict[str, Any] = {"name": name}
        if prices is not None:
            body["prices"] = dict(prices)
        if retention_seconds is not None:
            body["retention_seconds"] = retention_seconds
        if toolkit is not None:
            body["toolkit"] = toolkit
        if profiler_config is not None:
            body["profiler_config"] = dict(profiler_config)
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if steps is not None:
            body["requests"] = list(steps)
        r = self._send("POST", "/v1/runs", json_body=body, idempotent=True)
        return Run.from_json(r.json())

    def append_steps(self, run_id: str, document: Sequence[Any]) -> dict[str, Any]:
        """Appends a batch in any input form (gzip-compressed on the way); returns what the
        server stored. Each call is one batch under its own Idempotency-Key: its retries store
        nothing twice, while a second call with the same steps stores them again, as a workflow
        that repeats a step would."""
        r = self._send("POST", f"/v1/runs/{run_id}/steps", json_body=document, idempotent=True)
        return dict(r.json())

    def update_run(self, run_id: str, changes: Mapping[str, Any]) -> Run:
        """A JSON merge patch of the run: name, toolkit, profiler_config, metadata,
        retention_seconds (``None`` keeps everything), prices (a price table replaces the run's;
        ``None`` takes the server's as it is now)."""
        r = self._send(
            "PATCH",
            f"/v1/runs/{run_id}",
            json_body=dict(changes),
            content_type="application/merge-patch+json",
            idempotent=True,
        )
        return Run.from_json(r.json())

    def get_run(self, run_id: str) -> Run:
        return Run.from_json(self._send("GET", f"/v1/runs/{run_id}").json())

    def output(self, run_id: str, name: str, *, from_: Time | None = None, to: Time | None = None) -> Any:
        """An output of the run (see ``OUTPUTS``): parsed JSON, or text for the report, CSV and
        SVG. With ``from_`` and/or ``to``, the output of the requests that started in that window
        (a 413 ``window-too-large`` :class:`AgentprofError` names a window that fits)."""
        if name not in OUTPUTS:
            raise ValueError(f"unknown output {name!r}; one of {', '.join(OUTPUTS)}")
        r = self._send("GET", f"/v1/runs/{run_id}/{name}" + _query(window(from_, to)))
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    def timeline(
        self,
        run_id: str,
        offset: int = 0,
        limit: int = 20,
        *,
        from_: Time | None = None,
        to: Time | None = None,
    ) -> dict[str, Any]:
        """A page of the run's (or a window's) timeline: its requests' nested calls, and the
        concurrency, latencies and tokens the dashboard draws."""
        params = {"offset": str(offset), "limit": str(limit), **window(from_, to)}
        r = self._send("GET", f"/v1/runs/{run_id}/timeline" + _query(params))
        return dict(r.json())

    def series(
        self,
        run_id: str,
        *,
        step: int | None = None,
        from_: Time | None = None,
        to: Time | None = None,
    ) -> dict[str, Any]:
        """The run's trends per bucket of ``step`` seconds (a multiple of 60; by default the
        server picks one giving at most 720 buckets): requests, LLM, tool and workflow calls,
        tokens per model and latency percentiles, read from rollups kept at ingest, so it is
        cheap on a run of any size."""
        params = {**window(from_, to)}
        if step is not None:
            params["step"] = str(step)
        r = self._send("GET", f"/v1/runs/{run_id}/series" + _query(params))
        return dict(r.json())

    def compare(
        self,
        baseline: str,
        candidate: str,
        *,
        baseline_window: tuple[Time | None, Time | None] | None = None,
        candidate_window: tuple[Time | None, Time | None] | None = None,
        alpha: float | None = None,
        gate: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Per-metric significance tests of candidate against baseline; each side may be a
        window ``(from, to)`` of its run, so that a run can be compared with itself earlier.

        With ``gate`` (``{}``, or ``{"max_regression": {"llm_latency": 10}, "lower_is_better":
        [...]}``), the answer's ``gate`` says what ``agentprof compare`` decides: ``exit_code``,
        ``worse`` and the report as ``markdown``."""
        body: dict[str, Any] = {"baseline": baseline, "candidate": candidate}
        if alpha is not None:
            body["alpha"] = alpha
        if gate is not None:
            body["gate"] = dict(gate)
        for side, w in (("baseline", baseline_window), ("candidate", candidate_window)):
            for bound, text in window(*(w or (None, None))).items():
                body[f"{side}_{bound}"] = text
        r = self._send("POST", "/v1/compare", json_body=body)
        return dict(r.json())

    def find_run(self, id_or_name: str, *, exclude: str | None = None) -> str:
        """The id of a run given by id, or else the newest run with exactly this name (other
        than ``exclude``: a run gated against the previous run of its own name)."""
        try:
            return str(uuid.UUID(id_or_name))
        except ValueError:
            pass
        # The server's name filter matches parts of names: page on until an exact match.
        params = {"name": id_or_name, "limit": "100"}
        while True:
            page = self._send("GET", "/v1/runs" + _query(params)).json()
            for item in page.get("items", []):
                if item.get("name") == id_or_name and item.get("id") != exclude:
                    return str(item["id"])
            cursor = page.get("next_cursor")
            if not cursor:
                raise AgentprofError(404, None, f"no run is named {id_or_name!r}")
            params["cursor"] = str(cursor)

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content_type: str = "application/json",
        idempotent: bool = False,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers["Content-Type"] = content_type
            if len(content) > 4096 and method == "POST":
                content = gzip.compress(content, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
        if idempotent:
            # One key for this request and all its retries.
            headers["Idempotency-Key"] = str(uuid.uuid4())
        attempt = 0
        while True:
            try:
                r = self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError:
                if attempt >= self.retries or not (idempotent or method == "GET"):
                    raise
                attempt += 1
                time.sleep(min(2.0**attempt * 0.1, 5.0))
                continue
            if r.status_code in (429, 502, 503, 504) and attempt < self.retries:
                attempt += 1
                time.sleep(_retry_after(r, attempt))
                continue
            if r.status_code >= 400:
                try:
                    problem = r.json()
                except ValueError:
                    problem = None
                raise AgentprofError(r.status_code, problem if isinstance(problem, dict) else None, r.text)
            return r


def time_text(t: Time) -> str:
    """A window bound as the server reads it: Unix seconds, or RFC 3339 text."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"{t!r} has no timezone: give an aware datetime (e.g. tzinfo=timezone.utc)")
        return t.isoformat()
    if isinstance(t, bool):
        raise ValueError(f"{t!r} is not a time")
    if isinstance(t, (int, float)):
        return repr(float(t))
    return str(t)


def window(from_: Time | None, to: Time | None) -> dict[str, str]:
    """The ``from`` and ``to`` parameters of a window; either may be open."""
    out: dict[str, str] = {}
    if from_ is not None:
        out["from"] = time_text(from_)
    if to is not None:
        out["to"] = time_text(to)
    return out


def _query(params: Mapping[str, str]) -> str:
    return "?" + urlencode(params) if params else ""


def _retry_after(r: httpx.Response, attempt: int) -> float:
    """The server's ``Retry-After`` in seconds, else an exponential backoff; never over 30 s."""
    value = r.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), 30.0)
    except ValueError:
        return min(2.0**attempt * 0.1, 30.0)
