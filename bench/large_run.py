"""A 10,000-request run on a live server: ingest, cold and cached outputs, the server's memory,
and whether deleting the big run stalls ingest into another run.

Usage: python3 bench/large_run.py BASE_URL SERVER_PID BATCH_FILE_GZ...
Prints a Markdown report. Standard library only.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import urllib.request

BASE, PID, BATCHES = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def call(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[float, bytes]:
    req = urllib.request.Request(f"{BASE}{path}", data=body, method=method, headers=headers or {})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as resp:
        data = resp.read()
    return time.perf_counter() - start, data


def rss_mb() -> float:
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """The server's resident memory every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.02)


def small_batch(i: int) -> bytes:
    steps = []
    for k in range(10):
        t = 1_000_000.0 + i + k * 0.01
        for state in ("START", "END"):
            steps.append({"payload": {"event_type": f"LLM_{state}", "event_timestamp": t + (0.005 if state == "END" else 0),
                                      "UUID": f"b{i}-{k}", "name": "m",
                                      "usage_info": {"token_usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}}})
    return json.dumps([{"request_number": i, "intermediate_steps": steps}]).encode()


def main() -> None:
    print(f"| what | figure |\n|---|---|")
    idle = rss_mb()
    print(f"| server RSS, idle | {idle:.0f} MB |")
    sampler = Sampler()
    sampler.start()
    big = json.loads(call("POST", "/v1/runs", b'{"name": "large"}', {"Content-Type": "application/json"})[1])["id"]
    steps, requests, secs, size = 0, 0, 0.0, 0
    for path in BATCHES:
        gz = open(path, "rb").read()
        size += len(gz)
        took, body = call("POST", f"/v1/runs/{big}/steps", gz, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        out = json.loads(body)
        steps += out["steps"]["stored"]
        requests += out["requests"]["created"]
        secs += took
    print(f"| ingest, {len(BATCHES)} POSTs, {requests:,} requests in all ({size / 1e6:.0f} MB gzip) | {steps:,} steps in {secs:.2f} s = {steps / secs:,.0f} steps/s |")
    print(f"| server RSS peak during ingest | {sampler.peak:.0f} MB |")
    sampler.peak = rss_mb()
    for output in ("metrics", "profiling", "stats", "forecast", "timeline"):
        secs, body = call("GET", f"/v1/runs/{big}/{output}")
        print(f"| cold `/{output}` | {secs * 1000:,.0f} ms ({len(body) / 1e6:.1f} MB) |")
    print(f"| server RSS peak while computing them | {sampler.peak:.0f} MB |")
    # Where the first one's time went: loading the run's frame from the database, then computing.
    prom = call("GET", "/metrics")[1].decode()
    sums = {line.split("{")[0].split(" ")[0] + (line[line.find("{"):line.find("}") + 1] if "{" in line else ""): float(line.rsplit(" ", 1)[1])
            for line in prom.splitlines() if line.startswith(("agentprof_frame_load_seconds_sum", "agentprof_frame_load_seconds_count", "agentprof_computation_seconds_sum"))}
    for key, value in sorted(sums.items()):
        shown = f"{value:.0f}" if key.endswith("_count") else f"{value * 1000:,.0f} ms"
        print(f"| `{key}` | {shown} |")
    warm = [call("GET", f"/v1/runs/{big}/metrics")[0] * 1000 for _ in range(50)]
    print(f"| cached `/metrics`, 50 in a row | p50 {statistics.median(warm):.1f} ms, max {max(warm):.1f} ms |")

    # Ingest into another run while the big one is deleted.
    other = json.loads(call("POST", "/v1/runs", b'{"name": "other"}', {"Content-Type": "application/json"})[1])["id"]
    latencies: list[tuple[float, float]] = []  # (start offset, seconds)
    stop = threading.Event()
    t0 = time.perf_counter()

    def ingest() -> None:
        i = 0
        while not stop.is_set():
            start = time.perf_counter() - t0
            secs, _ = call("POST", f"/v1/runs/{other}/steps", small_batch(i), {"Content-Type": "application/json"})
            latencies.append((start, secs))
            i += 1

    worker = threading.Thread(target=ingest)
    worker.start()
    time.sleep(2.0)
    delete_from = time.perf_counter() - t0
    delete_secs, _ = call("DELETE", f"/v1/runs/{big}")
    delete_to = time.perf_counter() - t0
    time.sleep(2.0)
    stop.set()
    worker.join()
    before = [s * 1000 for (at, s) in latencies if at + s < delete_from]
    during = [s * 1000 for (at, s) in latencies if at < delete_to and at + s > delete_from]
    print(f"| DELETE of the {steps:,}-step run | {delete_secs * 1000:,.0f} ms |")
    print(f"| 20-step batches into another run before the delete | {len(before)} batches, p50 {statistics.median(before):.1f} ms, max {max(before):.1f} ms |")
    if during:
        print(f"| the same during the delete | {len(during)} batches, p50 {statistics.median(during):.1f} ms, max {max(during):.1f} ms |")
    else:
        print("| the same during the delete | none completed while it ran |")
    sampler.running = False


if __name__ == "__main__":
    main()
