"""Real agentprof servers for the browser tests, and a headless Chromium to drive them.

The servers run the binary built from this repository (AGENTPROF_BIN, default target/debug) on
SQLite, holding real conformance runs from tests/fixtures. The browser is Debian's Chromium
(CHROMIUM, default /usr/bin/chromium), driven by Playwright over the DevTools protocol.
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

REPO = pathlib.Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "fixtures" / "cases"
READ_KEY = "reader-key-0123456789"
WRITE_KEY = "writer-key-0123456789"


def _binary() -> pathlib.Path | None:
    given = os.environ.get("AGENTPROF_BIN")
    path = pathlib.Path(given) if given else REPO / "target" / "debug" / "agentprof"
    return path if path.is_file() else None


def case_steps(name: str) -> bytes:
    """A conformance case's input as the toolkit wrote it (JSON)."""
    gz = CASES / name / "input.json.gz"
    return gzip.decompress(gz.read_bytes()) if gz.exists() else (CASES / name / "input.json").read_bytes()


@dataclass
class Server:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)

    def get(self, path: str) -> object:
        resp = httpx.get(f"{self.url}{path}", headers=self.headers, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def post(self, path: str, body: object) -> object:
        resp = httpx.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def load_case(self, name: str) -> str:
        created = self.post("/v1/runs", {"name": name})
        run_id = created["run"]["id"] if "run" in created else created["id"]
        resp = httpx.post(
            f"{self.url}/v1/runs/{run_id}/steps",
            content=case_steps(name),
            headers={**self.headers, "Content-Type": "application/json"},
            timeout=60,
        )
        resp.raise_for_status()
        self.runs[name] = run_id
        return run_id


def _start(keys: str | None) -> Iterator[Server]:
    binary = _binary()
    if binary is None:
        pytest.skip("no agentprof binary: run `cargo build` or set AGENTPROF_BIN")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "AGENTPROF_DATA_DIR": data, "AGENTPROF_BIND": f"127.0.0.1:{port}", "RUST_LOG": "warn"}
        env.pop("DATABASE_URL", None)
        env.pop("AGENTPROF_API_KEYS", None)
        if keys:
            env["AGENTPROF_API_KEYS"] = keys
        # The canned model the real eval runs call, priced in YAML as an operator writes it.
        prices = os.path.join(data, "prices.yaml")
        with open(prices, "w") as f:
            f.write("models:\n  canned-react-1:\n    input: 2.5\n    output: 10\n    cached_input: 1.25\n")
        env["AGENTPROF_PRICES"] = prices
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(400):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            else:
                raise RuntimeError("agentprof did not become ready")
            yield Server(url, {"Authorization": f"Bearer {WRITE_KEY}"} if keys else {})
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """An open server with two real nvidia-nat 1.9 eval runs, both scored by one evaluator."""
    for srv in _start(None):
        for name in ("realnat_react_12", "realnat_concurrent_16"):
            run_id = srv.load_case(name)
            count = srv.get(f"/v1/runs/{run_id}")["request_count"]
            items = [{"id": f"item-{i}", "request": i, "scores": {"accuracy": (i % 3) / 2}} for i in range(count)]
            resp = httpx.patch(
                f"{srv.url}/v1/runs/{run_id}",
                json={"metadata": {"eval": {"items": items}}},
                headers={"Content-Type": "application/merge-patch+json"},
                timeout=60,
            )
            resp.raise_for_status()
        yield srv


@pytest.fixture(scope="session")
def keyed_server() -> Iterator[Server]:
    """A server with a read key and a write key, holding one run."""
    for srv in _start(f"read:{READ_KEY},write:{WRITE_KEY}"):
        srv.load_case("realnat_react_12")
        yield srv


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not pathlib.Path(chromium).exists():
        pytest.skip("no Chromium: apt-get install chromium, or set CHROMIUM")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


def dump(obj: object) -> str:
    return json.dumps(obj, indent=1)[:2000]
