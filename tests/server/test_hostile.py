"""``relaystore serve`` against hostile clients (issue 15): slow or stalled connections, floods.

Every server is a real subprocess on a free loopback port, stopped at the end of its test or
module; every socket has a timeout, so no test can hang.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from relaystore.server.tokens import issue_token, store_id
from tests.server.test_limits_and_blobs import MB
from tests.support.relay_server import RELAYSTORE, RelayServer, start_server

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
    """A server with the default limits (and the access log on)."""
    directory = tmp_path_factory.mktemp("hostile-defaults")
    running = start_server(f"sqlite:///{directory}/d.db", directory, "--log-level", "info")
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


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(roomy: RelayServer) -> None:
    """After a whole answer, silence is the keep-alive timeout's (5 s), not the header one's (10 s)."""
    with held([connect(roomy, timeout=15)]) as (sock,):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        reply = answer(sock)  # returns once the server closes
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert 4.0 < elapsed < 8.0, elapsed


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
    other_tenant = {"Authorization": f"Bearer {agent_token(tight, 't', tenant='other')}"}
    with httpx.Client(base_url=tight.url, timeout=5) as client:
        for index in range(30):
            statuses.add(client.get(f"/t/flood{index}/v1/info").status_code)
            statuses.add(client.get(f"/t/flood{index}/v1/nope").status_code)
            statuses.add(
                client.get(f"/t/flood{index}/v1/outputs/out-0123456789", headers=other_tenant).status_code
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


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    """A 12 MiB budget and a body timeout longer than the test: only the token share helps."""
    directory = tmp_path_factory.mktemp("hostile-patient")
    running = start_server(
        f"sqlite:///{directory}/p.db",
        directory,
        "--memory-budget",
        "12MiB",
        "--body-timeout",
        "60",
    )
    yield running
    running.stop()


async def test_one_tokens_stalled_uploads_do_not_delay_another_tokens_emit(patient: RelayServer) -> None:
    tight = patient
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


async def test_stalled_declared_lengths_do_not_freeze_the_admin(patient: RelayServer) -> None:
    tight = patient
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


# --------------------------------------------------------------------------- 5-7. blobs


def admin_of(server: RelayServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}


def blob_output(task: str, blob: dict[str, object]) -> dict[str, object]:
    event = {"type": "final", "ok": True, "content": blob}
    return {"task_id": task, "attempt": 0, "producer_agent": "p", "event": event}


def test_an_output_may_not_carry_another_tasks_blob(tight: RelayServer) -> None:
    secret = httpx.post(f"{tight.url}/v1/blobs", content=b"secret of task A", headers=admin_of(tight)).json()
    httpx.post(f"{tight.url}/v1/outputs", json=blob_output("task-a", secret), headers=admin_of(tight))
    thief = {"Authorization": f"Bearer {agent_token(tight, 'task-b')}"}
    guessed = {**secret, "sha256": "0" * 64}  # a digest nobody stored: the same answer (no oracle)
    for blob in (secret, guessed):
        response = httpx.post(f"{tight.url}/v1/outputs", json=blob_output("task-b", blob), headers=thief)
        assert response.status_code == 403, response.text
    own = httpx.post(f"{tight.url}/v1/blobs", content=b"mine", headers=thief).json()
    ok = httpx.post(f"{tight.url}/v1/outputs", json=blob_output("task-b", own), headers=thief)
    assert ok.status_code == 201, ok.text
    via = httpx.get(
        f"{tight.url}/v1/blobs/{own['sha256']}", params={"via": ok.json()["out_id"]}, headers=thief
    )
    assert via.content == b"mine"


def test_blobs_are_served_inert(tight: RelayServer) -> None:
    headers = admin_of(tight)
    html = httpx.post(
        f"{tight.url}/v1/blobs",
        params={"mime": "text/html"},
        content=b"<script>alert(1)</script>",
        headers=headers,
    ).json()
    text = httpx.post(
        f"{tight.url}/v1/blobs", params={"mime": "text/plain"}, content=b"hi", headers=headers
    ).json()
    page = httpx.get(f"{tight.url}/v1/blobs/{html['sha256']}", params={"token": tight.admin_token})
    plain = httpx.get(f"{tight.url}/v1/blobs/{text['sha256']}", headers=headers)
    for response in (page, plain):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"].startswith("sandbox")
    assert page.headers["content-disposition"] == "attachment"
    assert plain.headers["content-disposition"] == "inline"


@pytest.mark.parametrize("mime", ["text/html\r\nX-Injected: 1", "text", "a/b;", "/plain", "x" * 300 + "/y"])
def test_a_bad_mime_type_is_422(tight: RelayServer, mime: str) -> None:
    response = httpx.post(
        f"{tight.url}/v1/blobs", params={"mime": mime}, content=b"m", headers=admin_of(tight)
    )
    assert response.status_code == 422, response.text


def test_the_mime_type_belongs_to_the_reference_not_the_digest(tight: RelayServer) -> None:
    token = agent_token(tight, "task-mime")
    agent = {"Authorization": f"Bearer {token}"}
    content = b"same bytes, two types"
    first = httpx.post(f"{tight.url}/v1/blobs", params={"mime": "text/html"}, content=content, headers=agent)
    second = httpx.post(f"{tight.url}/v1/blobs", params={"mime": "image/png"}, content=content, headers=agent)
    assert (first.json()["mime"], second.json()["mime"]) == ("text/html", "image/png")
    ref = httpx.post(f"{tight.url}/v1/outputs", json=blob_output("task-mime", second.json()), headers=agent)
    params = {"via": ref.json()["out_id"]}
    download = httpx.get(f"{tight.url}/v1/blobs/{second.json()['sha256']}", params=params, headers=agent)
    assert download.headers["content-type"] == "image/png"
    stat = httpx.get(f"{tight.url}/v1/blobs/{second.json()['sha256']}/stat", params=params, headers=agent)
    assert stat.json()["mime"] == "image/png"


# --------------------------------------------------------------------------- 8-11


def test_a_query_token_never_reaches_the_access_log(roomy: RelayServer) -> None:
    server = roomy
    blob = httpx.post(f"{server.url}/v1/blobs", content=b"logged", headers=admin_of(server)).json()
    response = httpx.get(f"{server.url}/v1/blobs/{blob['sha256']}", params={"token": server.admin_token})
    assert response.status_code == 200
    time.sleep(0.2)
    log = server.log()
    assert "token=REDACTED" in log
    assert server.admin_token not in log.split("admin token in")[-1].split("\n", 1)[-1]


def test_unknown_methods_share_one_metrics_label(tight: RelayServer) -> None:
    with httpx.Client(timeout=5) as client:
        for index in range(30):
            client.request(f"M{index}X", f"{tight.url}/v1/outputs")
    text = httpx.get(f"{tight.url}/metrics", headers=admin_of(tight)).text
    assert 'method="other"' in text
    assert "M7X" not in text


def test_listings_are_paged_by_default_and_capped(tight: RelayServer) -> None:
    headers = admin_of(tight)
    keys = {f"k{index:04}": "eA==" for index in range(1001)}
    thread = {"thread_id": "paged"}
    stored = httpx.post(
        f"{tight.url}/v1/threads/attachments", params=thread, json={"attachments": keys}, headers=headers
    )
    assert stored.status_code == 200, stored.text
    url = f"{tight.url}/v1/threads/attachments"
    first = httpx.get(url, params=thread, headers=headers).json()
    assert len(first["items"]) == 100 and first["next_cursor"]  # no limit: one default page
    huge = httpx.get(url, params={**thread, "limit": 10**9}, headers=headers).json()
    assert len(huge["items"]) == 1000 and huge["next_cursor"]  # any limit: at most 1,000
    rest = httpx.get(
        url, params={**thread, "limit": 10**9, "cursor": huge["next_cursor"]}, headers=headers
    ).json()
    assert (rest["items"], rest["next_cursor"]) == (["k1000"], None)


async def test_the_http_backend_still_lists_everything(tight: RelayServer) -> None:
    import relaystore

    async with relaystore.connect(tight.url, token=tight.admin_token) as store:
        await store.checkpoints.put_attachments("many-keys", {f"k{i:03}": b"x" for i in range(105)})
        keys = list(await store.checkpoints.list_attachments("many-keys"))  # no limit: all of them
    assert keys == [f"k{i:03}" for i in range(105)]


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [150, 5000])
def test_deep_json_is_422_on_bodies_and_in_the_metadata_header(tight: RelayServer, depth: int) -> None:
    headers = {**admin_of(tight), "Content-Type": "application/json"}
    run = httpx.post(f"{tight.url}/v1/adaptive/runs", content=deep(depth), headers=headers)
    doc = httpx.put(
        f"{tight.url}/v1/adaptive/docs/plan", params={"key": "k"}, content=deep(depth), headers=headers
    )
    emit = httpx.post(f"{tight.url}/v1/outputs", content=deep(depth), headers=headers)
    metadata = base64.urlsafe_b64encode(('{"id": "c", "m": ' + deep(depth) + "}").encode()).decode()
    save = httpx.post(
        f"{tight.url}/v1/checkpoints",
        params={"thread_id": "deep"},
        content=b"state",
        headers={**admin_of(tight), "Relaystore-Metadata": metadata},
    )
    assert [r.status_code for r in (run, doc, emit, save)] == [422] * 4, [
        r.text[:200] for r in (run, doc, emit, save)
    ]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_422(tight: RelayServer, number: str) -> None:
    headers = {**admin_of(tight), "Content-Type": "application/json"}
    doc = httpx.put(
        f"{tight.url}/v1/adaptive/docs/plan",
        params={"key": "nan"},
        content=f'{{"x": {number}}}',
        headers=headers,
    )
    body = '{"task_id": "t", "attempt": 0, "producer_agent": "p", "event": {"type": "final", "ok": true, '
    body += f'"content": {{"kind": "inline", "value": {number}}}}}}}'
    emit = httpx.post(f"{tight.url}/v1/outputs", content=body, headers=headers)
    assert (doc.status_code, emit.status_code) == (422, 422), (doc.text, emit.text)


def test_a_ttl_under_a_second_is_refused(tight: RelayServer) -> None:
    body = {"task": "t", "attempt": 0, "producer": "p", "ttl": 0.5}
    assert httpx.post(f"{tight.url}/v1/tokens", json=body, headers=admin_of(tight)).status_code == 422


# --------------------------------------------------------------------------- 13, 14, 19


def test_a_token_of_another_store_sharing_the_state_dir_is_refused(roomy: RelayServer) -> None:
    one, directory = roomy, roomy.state_dir.parent
    two = start_server(f"sqlite:///{directory}/two.db", directory)  # same state dir, same key
    try:
        scope = {"task": "t", "attempt": 0, "producer": "p"}
        token = httpx.post(f"{one.url}/v1/tokens", json=scope, headers=admin_of(one)).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{one.url}/v1/outputs", json=progress("t"), headers=headers).status_code == 201
        refused = httpx.post(f"{two.url}/v1/outputs", json=progress("t"), headers=headers)
        assert refused.status_code == 401
        assert "another store" in refused.json()["detail"]
    finally:
        two.stop()


@pytest.mark.parametrize(
    "value", ["bytes=\xb2-3", "bytes=0-\xb3", "bytes=" + "9" * 5000 + "-", "bytes=-" + "1" * 5000]
)
def test_a_malformed_range_is_ignored(tight: RelayServer, value: str) -> None:
    blob = httpx.post(f"{tight.url}/v1/blobs", content=b"0123456789", headers=admin_of(tight)).json()
    with held([connect(tight)]) as (sock,):
        request = (
            (
                f"GET /v1/blobs/{blob['sha256']} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Authorization: Bearer {tight.admin_token}\r\nRange: "
            ).encode()
            + value.encode("latin-1")
            + b"\r\n\r\n"
        )
        sock.sendall(request)
        reply = answer(sock)
    assert reply.startswith((b"HTTP/1.1 200", b"HTTP/1.1 416")), reply[:200]


def test_a_revoked_token_is_refused_by_every_replica(roomy: RelayServer) -> None:
    replicas = [roomy, start_server(roomy.store_url, roomy.state_dir.parent)]
    try:
        scope = {"task": "t", "attempt": 0, "producer": "p"}
        issued = httpx.post(f"{replicas[0].url}/v1/tokens", json=scope, headers=admin_of(replicas[0])).json()
        headers = {"Authorization": f"Bearer {issued['token']}"}
        for replica in replicas:
            assert (
                httpx.post(f"{replica.url}/v1/outputs", json=progress("t"), headers=headers).status_code
                == 201
            )
        revoked = httpx.post(
            f"{replicas[0].url}/v1/tokens/revoke", json={"jti": issued["jti"]}, headers=admin_of(replicas[0])
        )
        assert revoked.status_code == 200
        time.sleep(1.2)  # the other replica's cache of "not revoked" lasts a second
        for replica in replicas:
            response = httpx.post(f"{replica.url}/v1/outputs", json=progress("t"), headers=headers)
            assert response.status_code == 401, response.text
            assert "revoked" in response.json()["detail"]
    finally:
        replicas[1].stop()


def test_the_cli_revokes_a_token_by_writing_the_store(roomy: RelayServer) -> None:
    """``relaystore token revoke JTI --url <the store>`` (no server involved) reaches the server."""
    scope = {"task": "t-cli", "attempt": 0, "producer": "p"}
    issued = httpx.post(f"{roomy.url}/v1/tokens", json=scope, headers=admin_of(roomy)).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert httpx.post(f"{roomy.url}/v1/outputs", json=progress("t-cli"), headers=headers).status_code == 201
    done = subprocess.run(
        [RELAYSTORE, "token", "revoke", issued["jti"], "--url", roomy.store_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    time.sleep(1.2)  # the server's cache of "not revoked" lasts a second
    response = httpx.post(f"{roomy.url}/v1/outputs", json=progress("t-cli"), headers=headers)
    assert response.status_code == 401 and "revoked" in response.json()["detail"], response.text


def test_a_download_token_opens_one_blob_and_nothing_else(tight: RelayServer) -> None:
    agent = {"Authorization": f"Bearer {agent_token(tight, 'task-link')}"}
    blob = httpx.post(
        f"{tight.url}/v1/blobs", params={"mime": "text/plain"}, content=b"linked", headers=agent
    )
    other = httpx.post(f"{tight.url}/v1/blobs", content=b"not linked", headers=agent).json()
    ref = httpx.post(f"{tight.url}/v1/outputs", json=blob_output("task-link", blob.json()), headers=agent)
    sha = blob.json()["sha256"]
    link = httpx.post(
        f"{tight.url}/v1/blobs/{sha}/download-token", params={"via": ref.json()["out_id"]}, headers=agent
    )
    assert link.status_code == 201, link.text
    token = link.json()["token"]
    download = httpx.get(tight.url + link.json()["url"])
    assert (download.status_code, download.content) == (200, b"linked")
    assert download.headers["content-type"].startswith("text/plain")
    as_header = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{tight.url}/v1/blobs/{other['sha256']}", params={"token": token}).status_code == 403
    assert httpx.get(f"{tight.url}/v1/blobs/{sha}/stat", headers=as_header).status_code == 403
    assert httpx.post(f"{tight.url}/v1/outputs", json=progress("t"), headers=as_header).status_code == 403
    too_long = httpx.post(
        f"{tight.url}/v1/blobs/{sha}/download-token",
        params={"via": ref.json()["out_id"], "ttl": "2h"},
        headers=agent,
    )
    assert too_long.status_code == 422


# --------------------------------------------------------------------------- deadlines

CALLS = 8


async def test_concurrent_sqlite_calls_each_fail_within_their_own_deadline(tmp_path: Path) -> None:
    """A write lock held by another process: 8 concurrent saves all fail within 1.5 × timeout of
    when they were made (they used to fail at 1, 2, … 8 × timeout, queued for the one writer)."""
    import sqlite3

    import relaystore
    from relaystore.errors import BackendUnavailable
    from relaystore.models import CheckpointMetadata

    timeout = 1.0
    path = tmp_path / "held.db"
    async with relaystore.connect(f"sqlite:///{path}", timeout=timeout) as store:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")

            async def save(index: int) -> float:
                started = time.monotonic()
                with pytest.raises(BackendUnavailable):
                    await store.checkpoints.save(
                        f"t{index}", CheckpointMetadata.new(f"t{index}"), b"x" * 300_000
                    )
                return time.monotonic() - started

            elapsed = await asyncio.gather(*(save(i) for i in range(CALLS)))
            holder.execute("ROLLBACK")
    assert max(elapsed) <= 1.5 * timeout, elapsed


def test_concurrent_posts_through_serve_each_fail_within_their_own_deadline(tmp_path: Path) -> None:
    import sqlite3

    timeout = 1.0
    path = tmp_path / "held.db"
    server = start_server(f"sqlite:///{path}?timeout={timeout}", tmp_path)
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")

            async def post_all() -> list[tuple[int, float]]:
                async with httpx.AsyncClient(
                    base_url=server.url, headers=admin_of(server), timeout=30
                ) as client:

                    async def post(index: int) -> tuple[int, float]:
                        started = time.monotonic()
                        response = await client.post("/v1/outputs", json=progress(f"t{index}"))
                        return response.status_code, time.monotonic() - started

                    return await asyncio.gather(*(post(i) for i in range(CALLS)))

            results = asyncio.run(post_all())
            holder.execute("ROLLBACK")
    finally:
        server.stop()
    assert {status for status, _ in results} == {503}
    assert max(elapsed for _, elapsed in results) <= 1.5 * timeout + 0.5, results  # + HTTP round trip
