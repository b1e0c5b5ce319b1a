"""``relaystore serve --no-http --resp``: the listener alone, opened with a CLI-issued adaptive token."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import NoPermissionError

from relaystore.server.tokens import issue_adaptive_token, store_id
from tests.server.resp.conftest import ADMIN, start_resp
from tests.support.relay_server import RELAYSTORE
from tests.support.services import free_port, wait_port


def test_resp_only_with_an_adaptive_token_from_the_cli(tmp_path: Path) -> None:
    url, state, port = f"sqlite:///{tmp_path}/relay.db", tmp_path / "state", free_port()
    env = {**os.environ, "RELAYSTORE_ADMIN_TOKEN": ADMIN}
    serve = [
        RELAYSTORE,
        "serve",
        "--url",
        url,
        "--state-dir",
        str(state),
        "--no-http",
        "--resp",
        f"127.0.0.1:{port}",
    ]
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        assert wait_port(port), (tmp_path / "server.log").read_text()
        issued = subprocess.run(
            [RELAYSTORE, "token", "adaptive", "--agent", "a", "--url", url, "--state-dir", str(state)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        with Redis(port=port, password=issued.stdout.strip()) as agent:
            assert agent.set("nemo_relay:acg_observations:a", "[]")
            with pytest.raises(NoPermissionError):
                agent.set("nemo_relay:acg_observations:b", "[]")
        with Redis(port=port, password=ADMIN) as admin:
            assert admin.keys("*") == [b"nemo_relay:acg_observations:a"]
        if shutil.which("redis-cli"):
            cli = ["redis-cli", "-p", str(port), "--pass", ADMIN, "--no-auth-warning"]
            for args, shown in (
                (["RPUSH", "l", "x", "y"], "2"),
                (["LRANGE", "l", "0", "-1"], "x\ny"),
                (["TYPE", "l"], "list"),
                (["GET", "nemo_relay:acg_observations:a"], "[]"),
                (["TTL", "nemo_relay:acg_observations:a"], "-1"),
                (["KEYS", "*"], "l\nnemo_relay:acg_observations:a"),
                (["SCAN", "0", "COUNT", "1"], "1\nl"),
            ):
                done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=10)
                assert done.stdout.strip() == shown, (args, done.stdout, done.stderr)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, (tmp_path / "server.log").read_text()


def test_an_adaptive_token_opens_no_http_route_of_state(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/relay.db"
    server = start_resp(url, tmp_path)
    try:
        key = (server.http.state_dir / "signing-key").read_text().strip()
        token = issue_adaptive_token(key, agents=["a"], audience=store_id(url))
        headers = {"Authorization": f"Bearer {token}"}
        for method, path in (
            ("GET", "/v1/adaptive/agents"),
            ("GET", "/v1/outputs?task_id=t"),
            ("GET", "/v1/info"),
        ):
            assert httpx.request(method, server.http.url + path, headers=headers).status_code == 403, path
        with Redis(port=server.port, password=token) as agent:  # the same token opens RESP
            assert agent.set("a:cache", "1")
    finally:
        server.stop()
