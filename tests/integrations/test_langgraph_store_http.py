"""Long-term memory shared through ``relaystore serve``: memory tokens scoped to namespace
prefixes, the routes' answers, and TTL decided by the server's clock."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from relaystore.errors import Forbidden
from relaystore.integrations.langgraph_store import RelayStore
from tests.conformance.factories import http as http_factory


@pytest.fixture
def tenant() -> Iterator[tuple[str, str]]:
    """A fresh tenant's base URL on the session's server, and the admin token."""
    server, _ = http_factory._running()
    yield f"{server.url}/t/{uuid.uuid4().hex}", server.admin_token


def memory_token(base: str, admin: str, *prefixes: list[str]) -> str:
    answer = httpx.post(
        f"{base}/v1/store/tokens",
        json={"namespaces": list(prefixes), "ttl": "10m"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def test_a_namespace_token_cannot_cross_into_another_namespace(tenant: tuple[str, str]) -> None:
    base, admin = tenant
    with RelayStore(f"{base}?token={admin}") as operator:
        operator.put(("users", "u2", "facts"), "secret", {"text": "u2's"})
    token = memory_token(base, admin, ["users", "u1"])
    with RelayStore(f"{base}?token={token}") as agent:
        agent.put(("users", "u1", "facts"), "likes", {"text": "tea"})
        assert agent.get(("users", "u1", "facts"), "likes").value == {"text": "tea"}  # type: ignore[union-attr]
        assert [i.key for i in agent.search(("users", "u1"))] == ["likes"]
        assert agent.list_namespaces(prefix=("users", "u1")) == [("users", "u1", "facts")]
        with pytest.raises(Forbidden):
            agent.get(("users", "u2", "facts"), "secret")
        with pytest.raises(Forbidden):
            agent.search(("users",))
        with pytest.raises(Forbidden):
            agent.put(("users", "u2", "facts"), "overwrite", {"text": "x"})
        with pytest.raises(Forbidden):
            agent.list_namespaces()
    refused = httpx.post(
        f"{base}/v1/store/items/get",
        json={"keys": [[["users", "u2", "facts"], "secret"]]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "Forbidden"
    with RelayStore(f"{base}?token={admin}") as operator:
        assert [i.key for i in operator.search(("users", "u2"))] == ["secret"]  # untouched


def test_tokens_of_one_kind_do_not_open_the_other(tenant: tuple[str, str]) -> None:
    base, admin = tenant
    agent = httpx.post(
        f"{base}/v1/tokens",
        json={"task": "t1", "attempt": 0, "producer": "p"},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()["token"]
    refused = httpx.post(
        f"{base}/v1/store/items/search",
        json={"prefix": ["users"]},
        headers={"Authorization": f"Bearer {agent}"},
    )
    assert refused.status_code == 403
    memory = memory_token(base, admin, ["users"])
    listing = httpx.get(f"{base}/v1/outputs", headers={"Authorization": f"Bearer {memory}"})
    assert listing.status_code == 403


def test_bad_bodies_are_422_and_bad_prefixes_refused(tenant: tuple[str, str]) -> None:
    base, admin = tenant
    headers = {"Authorization": f"Bearer {admin}"}
    bad = httpx.post(f"{base}/v1/store/items/search", json={"prefix": "users"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["error"] == "InvalidInput"
    operator = httpx.post(
        f"{base}/v1/store/items/search", json={"filter": {"n": {"$in": [1]}}}, headers=headers
    )
    assert operator.status_code == 422
    wildcard = httpx.post(f"{base}/v1/store/tokens", json={"namespaces": [["users", "*"]]}, headers=headers)
    assert wildcard.status_code == 422


def test_ttl_over_http_follows_the_server_clock(tenant: tuple[str, str]) -> None:
    base, admin = tenant
    with RelayStore(f"{base}?token={admin}") as store:
        store.put(("t",), "short", {"v": 1}, ttl=0.005)  # 0.3 s
        store.put(("t",), "kept", {"v": 2})
        assert store.get(("t",), "short") is not None
        time.sleep(0.5)
        assert store.get(("t",), "short") is None
        assert [i.key for i in store.search(("t",))] == ["kept"]
        assert store.sweep_ttl() == 1
