"""``relaystore serve`` against hostile clients (issue 15): slow or stalled connections, floods.

Every server is a real subprocess on a free loopback port, stopped at the end of its test or
module; every socket has a timeout, so no test can hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from relaystore.server.tokens import issue_token, store_id
from tests.server.test_limits_and_blobs import MB
from tests.support.relay_server import RelayServer, start_server

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    """A server with short timeouts, a small memory budget and tenants."""
    directory = tmp_path_factory.mktemp("hostile")
    (directory / "tenants").mkdir()
    running = start_server(
        f"sqlite:///{directory}/h.db",
        directory,
        "--header-timeout",
        str(HEADER_TIMEOUT),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--keep-alive-timeout",
        "1",
        "--memory-budget",
        "12MiB",
        "--tenant-url",
        f"sqlite:///{directory}/tenants/{{tenant}}.db",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    """A server with the default limits."""
    directory = tmp_path_factory.mktemp("hostile-defaults")
    running = start_server(f"sqlite:///{directory}/d.db", directory)
    yield running
    running.stop()


def connect(server: RelayServer, timeout: float = 5.0) -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or the socket's timeout passes)."""
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


@contextlib.contextmanager
def held(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def agent_token(server: RelayServer, task: str, tenant: str | None = None) -> str:
    key = (server.state_dir / "signing-key").read_text().strip()
    audience = store_id(server.store_url)
    return issue_token(key, task=task, attempt=0, producer="p", tenant=tenant, audience=audience)


def progress(task: str) -> dict[str, object]:
    return {"task_id": task, "attempt": 0, "producer_agent": "p", "event": {"type": "progress", "stage": "s"}}


# --------------------------------------------------------------------------- 1. slowloris


def test_unfinished_headers_get_408_within_the_header_timeout(tight: RelayServer) -> None:
    with held([connect(tight)]) as (sock,):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        started = time.monotonic()
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_silent_connection_is_closed_within_the_header_timeout(tight: RelayServer) -> None:
    with held([connect(tight)]) as (sock,):
        started = time.monotonic()
        answer(sock)  # returns once the server closes
    assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_healthz_answers_within_a_second_while_500_idle_connections_are_held(roomy: RelayServer) -> None:
    with held([connect(roomy) for _ in range(500)]):
        started = time.monotonic()
        response = httpx.get(roomy.url + "/healthz", timeout=5)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 1.0


def test_connections_past_the_cap_get_503_and_the_log_stays_small(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path}/c.db", tmp_path, "--max-connections", "20")
    try:
        log_before = len(server.log())
        with held([connect(server) for _ in range(20)]):
            time.sleep(0.2)  # let the server accept them all
            with held([connect(server) for _ in range(100)]) as extra:
                replies = [answer(sock) for sock in extra]
        assert all(r.startswith(b"HTTP/1.1 503") for r in replies), replies[:3]
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200  # back once they go
        lines = server.log()[log_before:].count("refused a connection")
        assert 1 <= lines <= 11  # 100 refusals, one burst of the rate-limited log
    finally:
        server.stop()


# --------------------------------------------------------------------------- 2. header memory


def test_headers_over_the_cap_are_refused(tight: RelayServer) -> None:
    with held([connect(tight)]) as (sock,):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (80 * 1024))
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]


def test_200_connections_with_64_kib_of_unfinished_headers_grow_rss_less_than_150_mb(
    roomy: RelayServer,
) -> None:
    process = psutil.Process(roomy.pid)
    before = process.memory_info().rss
    with held([connect(roomy) for _ in range(200)]) as sockets:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (63 * 1024))
        time.sleep(0.5)
        grown = process.memory_info().rss - before
    assert grown < 150 * MB


def test_unfinished_headers_count_in_the_memory_budget(tight: RelayServer) -> None:
    # 12 MiB budget: 250 × 60 KiB of headers (15 MiB) cannot all be held
    with held([connect(tight) for _ in range(250)]) as sockets:
        for sock in sockets:
            with contextlib.suppress(ConnectionError):
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (60 * 1024))
        refused = 0
        for sock in sockets:
            sock.settimeout(0.05)
            with contextlib.suppress(TimeoutError, ConnectionError):
                refused += sock.recv(12).startswith(b"HTTP/1.1 503")
    assert refused >= 250 - (12 * MB) // (60 * 1024)


# --------------------------------------------------------------------------- 3. tenant flood


def test_tokenless_tenant_requests_create_no_store(tight: RelayServer) -> None:
    tenants = tight.state_dir.parent / "tenants"
    statuses = set()
    for index in range(30):
        statuses.add(httpx.get(f"{tight.url}/t/flood{index}/v1/info", timeout=5).status_code)
        statuses.add(httpx.get(f"{tight.url}/t/flood{index}/v1/nope", timeout=5).status_code)
        token = agent_token(tight, "t", tenant="other")
        headers = {"Authorization": f"Bearer {token}"}
        statuses.add(
            httpx.get(f"{tight.url}/t/flood{index}/v1/outputs/out-0123456789", headers=headers).status_code
        )
    assert statuses == {401, 403, 404}
    assert list(tenants.iterdir()) == []
    admin = {"Authorization": f"Bearer {tight.admin_token}"}
    assert httpx.get(f"{tight.url}/t/real/v1/info", headers=admin, timeout=5).status_code == 200
    assert [p.name for p in tenants.iterdir() if p.suffix == ".db"] == ["real.db"]


# --------------------------------------------------------------------------- 4. stalled bodies


def stalled_upload(
    server: RelayServer, token: str, path: str = "/v1/blobs", length: int | None = None
) -> socket.socket:
    sock = connect(server, timeout=10)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/octet-stream\r\n{framing}\r\n\r\n".encode()
    )
    return sock


def test_a_stalled_body_gets_408_within_the_body_timeout(tight: RelayServer) -> None:
    with held([stalled_upload(tight, tight.admin_token, "/v1/outputs", length=1000)]) as (sock,):
        started = time.monotonic()
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"RequestTimeout" in reply
    assert time.monotonic() - started < BODY_TIMEOUT + 2


async def test_one_tokens_stalled_uploads_do_not_delay_another_tokens_emit(tight: RelayServer) -> None:
    hog = agent_token(tight, "hog")
    # 6 stalled uploads reserve 6 × 2 MiB: the whole 12 MiB budget, were it not for the share
    with held([stalled_upload(tight, hog) for _ in range(6)]):
        await asyncio.sleep(0.3)  # let them reserve
        headers = {"Authorization": f"Bearer {agent_token(tight, 'victim')}"}
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=tight.url, headers=headers, timeout=10) as client:
            response = await client.post("/v1/outputs", json=progress("victim"))
        elapsed = time.monotonic() - started
    assert response.status_code == 201, response.text
    assert elapsed < 3.0


async def test_stalled_declared_lengths_do_not_freeze_the_admin(tight: RelayServer) -> None:
    hog = agent_token(tight, "hog")
    with held([stalled_upload(tight, hog, "/v1/outputs", length=8 * MB) for _ in range(4)]):
        await asyncio.sleep(0.3)
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {tight.admin_token}"}
        async with httpx.AsyncClient(base_url=tight.url, headers=headers, timeout=10) as client:
            response = await client.post("/v1/outputs", json=progress("admin-task"))
        elapsed = time.monotonic() - started
    assert response.status_code == 201, response.text
    assert elapsed < 3.0
