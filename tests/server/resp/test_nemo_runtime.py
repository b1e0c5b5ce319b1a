"""The real NeMo Relay runtime (PyPI ``nemo-relay``), unchanged, persisting through ``serve --resp``.

It runs as a subprocess (tests/support/nemo_driver.py) with ``redis://:TOKEN@127.0.0.1:PORT/0``
against a server on SQLite and on PostgreSQL; the server is stopped and started again between two
sessions of workload. Checked: the learned state continues across the restart, ``store.adaptive``
reads it, our learners reproduce it from the stored runs (floats bit for bit), and a real
redis-server given the same workload ends up with the same keys and document shapes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

import relaystore
from relaystore.learning import relearn
from relaystore.stores import Store
from tests.server.resp.conftest import start_resp
from tests.support.nemo_driver import drive
from tests.support.services import start_redis

pytest.importorskip("nemo_relay")

AGENT = "team:alpha/agent-1"
PREFIX = "nemo_relay:"
RUNS = 3  # per session; two sessions with a restart between them
SEED = 11
WINDOW = 8  # the driver's AcgConfig observation_window
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _bits(value: Any) -> Any:
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, dict):
        return {k: _bits(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bits(v) for v in value]
    return value


def shape(value: Any) -> Any:
    """The structure of JSON data: object keys and value types, list element shapes (as a set)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return sorted({json.dumps(shape(v), sort_keys=True) for v in value})
    return type(value).__name__


def redis_state(client: Redis) -> tuple[list[str], dict[str, Any]]:
    """Key names (run ids as ``<id>``) and the shape of every string value."""
    names, shapes = [], {}
    for raw in sorted(client.keys("*")):
        name = raw.decode()
        generic = UUID.sub("<id>", name)
        names.append(generic)
        if client.type(name) == b"string":
            shapes.setdefault(generic, shape(json.loads(client.get(name))))
    return sorted(names), shapes


def two_sessions(store_url: str, directory: Path) -> tuple[list[str], dict[str, Any]]:
    """Run the workload, restart the server, run it again; return the listener's key set."""
    server = start_resp(store_url, directory / "first")
    try:
        drive(server.url(), PREFIX, AGENT, RUNS, seed=SEED)
    finally:
        server.stop()
    server = start_resp(store_url, directory / "second", port=server.port)  # the same URL again
    try:
        drive(server.url(), PREFIX, AGENT, RUNS, seed=SEED)
        with Redis.from_url(server.url()) as client:
            inspect_like_redis_cli(client)
            state = redis_state(client)
    finally:
        server.stop()
    return state


def inspect_like_redis_cli(client: Redis) -> None:
    """GET, KEYS, SCAN, TYPE, TTL and LRANGE on the runtime's state, as redis-cli would use them."""
    index = f"{PREFIX}runs_index:{AGENT}"
    assert client.type(index) == b"list"
    ids = [r.decode() for r in client.lrange(index, 0, -1)]
    assert len(ids) == 2 * RUNS and client.lrange(index, -1, -1) == [ids[-1].encode()]
    run = json.loads(client.get(f"{PREFIX}runs:{AGENT}:{ids[0]}"))
    assert run["id"] == ids[0] and run["agent_id"] == AGENT
    plan = f"{PREFIX}plan:{AGENT}"
    assert client.type(plan) == b"string" and client.ttl(plan) == -1 and client.ttl("missing") == -2
    assert json.loads(client.get(plan))["agent_id"] == AGENT
    every = {k.decode() for k in client.keys("*")}
    assert set(map(bytes.decode, client.scan_iter(count=3))) == every
    assert {k.decode() for k in client.keys(f"{PREFIX}trie:*")} == {f"{PREFIX}trie:{AGENT}"}
    assert {f"{PREFIX}runs:{AGENT}:{i}" for i in ids} <= every


async def learned_state_continues(store: Store) -> None:
    adaptive = store.adaptive
    runs = list(await adaptive.list_runs(AGENT))
    assert len(runs) == 2 * RUNS and await adaptive.list_agents() == [AGENT]
    llm_calls = sum(1 for r in runs for c in r.calls if c.kind == "llm")
    accumulators = await adaptive.load_accumulators(AGENT)
    assert accumulators is not None
    assert accumulators.nodes[""].all_remaining_calls.count == llm_calls  # both sessions, not one
    window = await adaptive.load_observations(AGENT)
    assert window is not None and 0 < len(window) <= WINDOW
    assert await adaptive.load_plan(AGENT) is not None and await adaptive.load_trie(AGENT) is not None

    async with relaystore.connect("memory://") as ours:
        for run in runs:
            await ours.adaptive.store_run(run)
        await relearn(ours, AGENT, observation_window=WINDOW)
        mine = await ours.adaptive.load_accumulators(AGENT)
        assert mine is not None and _bits(mine.to_dict()) == _bits(accumulators.to_dict())
        my_trie, their_trie = await ours.adaptive.load_trie(AGENT), await adaptive.load_trie(AGENT)
        assert my_trie is not None and their_trie is not None
        assert _bits(my_trie.model_copy(update={"generated_at": ""}).to_dict()) == _bits(
            their_trie.model_copy(update={"generated_at": ""}).to_dict()
        )
        assert await ours.adaptive.load_plan(AGENT) == await adaptive.load_plan(AGENT)


@pytest.fixture(scope="module")
def redis_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, Any]]:
    """The same two sessions against a private redis-server (stopped by pid)."""
    server = start_redis()
    try:
        for _ in range(2):
            drive(server.url, PREFIX, AGENT, RUNS, seed=SEED)
        with Redis(port=server.port) as client:
            return redis_state(client)
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_runtime_persists_through_the_listener(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, redis_reference: Any
) -> None:
    store_url = f"sqlite:///{tmp_path}/relay.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    names, shapes = two_sessions(store_url, tmp_path)
    assert (names, shapes) == redis_reference
    async with relaystore.connect(store_url) as store:
        await learned_state_continues(store)
