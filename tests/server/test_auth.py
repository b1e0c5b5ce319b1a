"""Who may do what: 401 for a missing or invalid token, 403 outside a token's scope, never 500."""

from __future__ import annotations

import stat
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from relaystore.server.tokens import issue_token
from tests.support.relay_server import RELAYSTORE, RelayServer

TASK, ATTEMPT, PRODUCER = "task-auth", 1, "writer"


def emit_body(task: str = TASK, attempt: int = ATTEMPT, producer: str = PRODUCER) -> dict[str, Any]:
    return {
        "task_id": task,
        "attempt": attempt,
        "producer_agent": producer,
        "event": {"type": "final", "ok": True, "content": {"kind": "inline", "value": "done"}},
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def key(signing_key: str, audience: str) -> Key:
    return Key(signing_key, audience)


@pytest.fixture(scope="module")
def agent_token(key: Key) -> str:
    return key.mint(ttl="10m")


@pytest.fixture(scope="module")
def other_ref(server: RelayServer) -> str:
    """An output of another task, written by the admin."""
    response = httpx.post(
        f"{server.url}/v1/outputs", json=emit_body(task="task-other"), headers=bearer(server.admin_token)
    )
    assert response.status_code == 201
    return str(response.json()["out_id"])


@dataclass(frozen=True)
class Key:
    """The test server's signing key and store id: mints tokens it accepts."""

    secret: str
    audience: str

    def mint(self, **claims: Any) -> str:
        scope = {"task": TASK, "attempt": ATTEMPT, "producer": PRODUCER, **claims}
        return issue_token(self.secret, audience=self.audience, **scope)


def expired(key: Key) -> str:
    return key.mint(ttl=60, now=time.time() - 3600)


def mangle_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    return f"{head}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


EMIT_CASES = {
    "missing": (lambda key, tok: {}, emit_body(), 401),
    "malformed": (lambda key, tok: bearer("not-a-token"), emit_body(), 401),
    "not bearer": (lambda key, tok: {"Authorization": f"Basic {tok}"}, emit_body(), 401),
    "expired": (lambda key, tok: bearer(expired(key)), emit_body(), 401),
    "bad signature": (lambda key, tok: bearer(mangle_signature(tok)), emit_body(), 401),
    "other key": (
        lambda key, tok: bearer(Key("another-signing-key-of-32-bytes-or-more", key.audience).mint()),
        emit_body(),
        401,
    ),
    "alg none": (
        lambda key, tok: bearer(
            jwt.encode(
                {"task": TASK, "att": ATTEMPT, "prd": PRODUCER, "iat": 0, "exp": 2**40},
                None,
                algorithm="none",
            )
        ),
        emit_body(),
        401,
    ),
    "wrong task": (lambda key, tok: bearer(tok), emit_body(task="task-other"), 403),
    "wrong attempt": (lambda key, tok: bearer(tok), emit_body(attempt=ATTEMPT + 1), 403),
    "wrong producer": (lambda key, tok: bearer(tok), emit_body(producer="impostor"), 403),
    "in scope": (lambda key, tok: bearer(tok), emit_body(), 201),
}


@pytest.mark.parametrize("case", list(EMIT_CASES))
def test_emit_matrix(server: RelayServer, key: Key, agent_token: str, case: str) -> None:
    headers, body, status = EMIT_CASES[case]
    response = httpx.post(f"{server.url}/v1/outputs", json=body, headers=headers(key, agent_token))
    assert response.status_code == status, response.text
    if status >= 400:
        error = response.json()["error"]
        assert error == ("Unauthorized" if status == 401 else "Forbidden")


def test_admin_may_emit_as_anyone(server: RelayServer, admin: dict[str, str]) -> None:
    response = httpx.post(f"{server.url}/v1/outputs", json=emit_body(producer="anyone"), headers=admin)
    assert response.status_code == 201


def test_token_in_the_query_string_only_for_blob_downloads(server: RelayServer, agent_token: str) -> None:
    response = httpx.post(f"{server.url}/v1/outputs", params={"token": agent_token}, json=emit_body())
    assert response.status_code == 401  # a header is possible here: the query string is not read
    admin = {"token": server.admin_token}
    blob = httpx.post(f"{server.url}/v1/blobs", content=b"q", headers=bearer(server.admin_token)).json()
    assert httpx.get(f"{server.url}/v1/blobs/{blob['sha256']}", params=admin).status_code == 200
    assert httpx.get(f"{server.url}/v1/blobs/{blob['sha256']}/stat", params=admin).status_code == 401


def test_reads_are_scoped(server: RelayServer, key: Key, agent_token: str, other_ref: str) -> None:
    own = httpx.post(f"{server.url}/v1/outputs", json=emit_body(), headers=bearer(agent_token)).json()[
        "out_id"
    ]
    handed = key.mint(reads=[other_ref])

    def get(ref: str, token: str) -> int:
        return httpx.get(f"{server.url}/v1/outputs/{ref}", headers=bearer(token)).status_code

    assert get(own, agent_token) == 200
    assert get(other_ref, agent_token) == 403  # a ref that was not handed over
    assert get(other_ref, handed) == 200  # the same ref, handed over as IN_REFS
    assert get(other_ref, server.admin_token) == 200


@pytest.mark.parametrize(
    ("method", "path", "params", "status"),
    [
        ("GET", "/v1/outputs", {"task_id": TASK}, 200),
        ("GET", "/v1/outputs", {"task_id": "task-other"}, 403),
        ("GET", "/v1/outputs", {}, 403),
        ("GET", "/v1/outputs/attempt", {"task_id": TASK, "attempt": 0}, 200),
        ("GET", "/v1/outputs/latest", {"name": PRODUCER}, 403),  # global: crosses tasks
        ("GET", "/v1/threads", {}, 403),
        ("GET", "/v1/adaptive/agents", {}, 403),
        ("GET", "/v1/blobs", {}, 403),
        ("GET", "/v1/info", {}, 403),
        ("GET", "/metrics", {}, 403),
        ("POST", "/v1/tokens", {}, 403),
    ],
)
def test_agent_scope_on_other_routes(
    server: RelayServer, agent_token: str, method: str, path: str, params: dict[str, Any], status: int
) -> None:
    response = httpx.request(
        method, f"{server.url}{path}", params=params, headers=bearer(agent_token), json={}
    )
    assert response.status_code == status, response.text


@pytest.mark.parametrize("path", ["/v1/outputs", "/v1/threads", "/metrics", "/openapi.json", "/v1/info"])
def test_every_route_but_healthz_needs_a_token(server: RelayServer, path: str) -> None:
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_admin_reads_metrics_by_route_and_status(server: RelayServer, admin: dict[str, str]) -> None:
    httpx.get(f"{server.url}/v1/outputs/out-{'0' * 32}", headers=admin)
    text = httpx.get(f"{server.url}/metrics", headers=admin).text
    assert 'route="/v1/outputs/{ref}",status="404"' in text
    assert "relaystore_http_request_duration_seconds_bucket" in text


def test_server_issues_tokens_for_the_admin(server: RelayServer, admin: dict[str, str]) -> None:
    body = {"task": TASK, "attempt": ATTEMPT, "producer": PRODUCER, "ttl": "5m"}
    issued = httpx.post(f"{server.url}/v1/tokens", json=body, headers=admin)
    assert issued.status_code == 201
    token = issued.json()["token"]
    assert httpx.post(f"{server.url}/v1/outputs", json=emit_body(), headers=bearer(token)).status_code == 201


def test_cli_issues_tokens_locally_and_over_http(server: RelayServer) -> None:
    scope = ["--task", TASK, "--attempt", str(ATTEMPT), "--producer", PRODUCER, "--ttl", "5m"]
    local = subprocess.run(
        [
            RELAYSTORE,
            "token",
            "issue",
            *scope,
            "--url",
            server.store_url,
            "--state-dir",
            str(server.state_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    remote = subprocess.run(
        [RELAYSTORE, "token", "issue", *scope, "--url", server.url],
        capture_output=True,
        text=True,
        check=True,
        env={"RELAYSTORE_TOKEN": server.admin_token, "PATH": ""},
    ).stdout.strip()
    for token in (local, remote):
        assert (
            httpx.post(f"{server.url}/v1/outputs", json=emit_body(), headers=bearer(token)).status_code == 201
        )


def test_secret_files_are_private(server: RelayServer) -> None:
    key_file = server.state_dir / "signing-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.state_dir.stat().st_mode) == 0o700


def test_serve_writes_an_admin_token_on_first_start(tmp_path: Any) -> None:
    from tests.support.relay_server import start_server

    running = start_server(f"sqlite:///{tmp_path}/x.db", tmp_path, admin_token="")
    try:
        token_file = running.state_dir / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert str(token_file) in running.log()
        token = token_file.read_text().strip()
        assert httpx.get(f"{running.url}/v1/info", headers=bearer(token)).status_code == 200
        assert httpx.get(f"{running.url}/v1/info", headers=bearer(uuid.uuid4().hex)).status_code == 401
    finally:
        running.stop()


def test_agent_tokens_are_bound_to_their_tenant(tmp_path: Any) -> None:
    from tests.support.relay_server import start_server

    running = start_server(
        f"sqlite:///{tmp_path}/main.db", tmp_path, "--tenant-url", f"sqlite:///{tmp_path}/{{tenant}}.db"
    )
    try:
        scope = {"task": TASK, "attempt": ATTEMPT, "producer": PRODUCER}
        issued = httpx.post(
            f"{running.url}/t/alpha/v1/tokens", json=scope, headers=bearer(running.admin_token)
        )
        token = issued.json()["token"]

        def emit(prefix: str) -> int:
            return httpx.post(
                f"{running.url}{prefix}/v1/outputs", json=emit_body(), headers=bearer(token)
            ).status_code

        assert (emit("/t/alpha"), emit("/t/beta"), emit("")) == (201, 403, 403)
        bad_name = httpx.get(f"{running.url}/t/Not_Valid/v1/info", headers=bearer(running.admin_token))
        assert bad_name.status_code == 422
    finally:
        running.stop()
