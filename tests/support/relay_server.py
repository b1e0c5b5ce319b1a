"""``relaystore serve`` as a real subprocess on a free loopback port, for tests and examples."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.services import free_port

RELAYSTORE = str(Path(sys.executable).parent / "relaystore")


@dataclass
class RelayServer:
    """A running server: its base URL, admin token, state directory and process (stopped by pid)."""

    url: str
    admin_token: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    store_url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL after 20 s; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    store_url: str, directory: Path, *extra: str, admin_token: str = "test-admin-token", timeout: float = 30
) -> RelayServer:
    """Start ``relaystore serve --url store_url`` with its state in ``directory``; wait for /healthz."""
    port = free_port()
    state_dir = directory / "state"
    log_path = directory / f"server-{port}.log"
    env = {**os.environ, "RELAYSTORE_ADMIN_TOKEN": admin_token}
    env.pop("RELAYSTORE_TOKEN", None)
    args = [
        RELAYSTORE,
        "serve",
        "--url",
        store_url,
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        "--log-level",
        "warning",
        *extra,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = RelayServer(f"http://127.0.0.1:{port}", admin_token, state_dir, process, log_path, store_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"relaystore serve exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"relaystore serve did not answer /healthz within {timeout}s:\n{server.log()}")
