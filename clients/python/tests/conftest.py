"""A real agentprof server for the tests: the binary built from this repository, on SQLite."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import httpx
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"


def _binary() -> pathlib.Path | None:
    given = os.environ.get("AGENTPROF_BIN")
    path = pathlib.Path(given) if given else REPO / "target" / "debug" / "agentprof"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
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
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            else:
                raise RuntimeError("agentprof did not become ready")
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)
