"""Streams steps to a run in the background: a bounded buffer, batched sends, never blocking the
caller.

A workflow must not slow down or fail because its profiler is slow or down. ``submit`` only puts a
step in a bounded queue and returns; a daemon thread drains it into batches (by size or by time)
and posts them with retries, each batch under one Idempotency-Key so a retry never stores it
twice. When the queue is full, or a batch keeps failing, steps are dropped, counted, and logged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from agentprof_client.client import AgentprofClient

logger = logging.getLogger(__name__)


@dataclass
class SenderStats:
    """What happened to the steps submitted so far."""

    submitted: int = 0
    sent: int = 0
    dropped_full: int = 0
    dropped_failed: int = 0
    batches: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_failed


_STOP = object()


class StepSender:
    """Sends ``(request_id, step)`` pairs to one run, created on first use by ``create_run``.

    ``step`` is a JSON-ready dict in the toolkit's schema; ``request_id`` groups steps into the
    run's requests (the eval form's ``id``), so one workflow run is one request.
    """

    def __init__(
        self,
        client: AgentprofClient,
        create_run: Callable[[AgentprofClient], str],
        *,
        max_buffer: int = 50_000,
        batch_size: int = 2_000,
        flush_interval: float = 2.0,
    ) -> None:
        self._client = client
        self._create_run = create_run
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_buffer)
        self._batch_size = batch_size
        self._interval = flush_interval
        self.stats = SenderStats()
        self.run_id: str | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._warned_full = False
        self._thread = threading.Thread(target=self._loop, name="agentprof-sender", daemon=True)
        self._thread.start()

    def submit(self, request_id: str, step: dict[str, Any]) -> bool:
        """Queues a step; ``False`` (and a count) when the buffer is full."""
        with self._lock:
            self.stats.submitted += 1
            self._pending += 1
        try:
            self._queue.put_nowait((request_id, step))
            return True
        except queue.Full:
            with self._lock:
                self.stats.dropped_full += 1
                self._pending -= 1
                self._idle.notify_all()
                first = not self._warned_full
                self._warned_full = True
            if first:
                logger.warning("agentprof: the step buffer is full; dropping steps (see the final count)")
            return False

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits until every queued step is sent or dropped; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 30.0) -> SenderStats:
        """Flushes, stops the thread and logs what was dropped."""
        self.flush(timeout)
        self._queue.put(_STOP)
        self._thread.join(timeout=5.0)
        if self.stats.dropped:
            logger.warning(
                "agentprof: %d of %d steps were dropped (%d: buffer full, %d: sending failed)",
                self.stats.dropped,
                self.stats.submitted,
                self.stats.dropped_full,
                self.stats.dropped_failed,
            )
        return self.stats

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if first is _STOP:
                return
            # A batch: what arrives within the flush interval, up to the batch size.
            batch = [first]
            stop = False
            deadline = time.monotonic() + self._interval
            while len(batch) < self._batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._send(batch)
            if stop:
                return

    def _send(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        requests: dict[str, list[dict[str, Any]]] = {}
        for request_id, step in batch:
            requests.setdefault(request_id, []).append(step)
        document = [{"id": rid, "intermediate_steps": steps} for rid, steps in requests.items()]
        try:
            if self.run_id is None:
                self.run_id = self._create_run(self._client)
            self._client.append_steps(self.run_id, document)
            ok = True
        except Exception as e:  # noqa: BLE001 - the sending thread must outlive any failure
            logger.warning("agentprof: a batch of %d steps could not be sent: %s", len(batch), e)
            ok = False
        with self._lock:
            self.stats.batches += 1
            if ok:
                self.stats.sent += len(batch)
            else:
                self.stats.dropped_failed += len(batch)
            self._pending -= len(batch)
            self._idle.notify_all()
