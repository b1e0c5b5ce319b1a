"""relaystore and the real NeMo Relay runtime (PyPI ``nemo-relay``) share adaptive state in Redis.

The runtime runs in subprocesses (tests/support/nemo_driver.py, nemo_facts.py) and writes under a
private prefix. Reading: every model relaystore returns must dump to exactly the JSON the runtime
wrote. Writing: a fresh runtime must act on observations and stability that relaystore stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

import relaystore
from relaystore.stores import Store
from tests.support.nemo_driver import drive
from tests.support.nemo_facts import facts
from tests.support.redis_stores import purge

pytest.importorskip("nemo_relay")

AGENT = "team:alpha/agent-1"
RUNS = 30


def dumped(model: Any) -> Any:
    if isinstance(model, list):
        return [dumped(m) for m in model]
    return model.model_dump(mode="json", by_alias=True)


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = f"rstest:nemo:{uuid.uuid4().hex}:"
    yield name
    await purge(redis_url, name)


async def open_at(redis_url: str, prefix: str) -> Store:
    return await relaystore.connect(redis_url, prefix=prefix)


async def raw_json(redis_url: str, key: str) -> Any:
    client = Redis.from_url(redis_url)
    try:
        value = await client.get(key)
    finally:
        await client.aclose()
    assert value is not None, key
    return json.loads(value)


async def test_relaystore_reads_exactly_what_nemo_relay_wrote(redis_url: str, prefix: str) -> None:
    drive(redis_url, prefix, AGENT, RUNS, workload="varied", seed=7)
    client = Redis.from_url(redis_url)
    try:
        run_ids = [r.decode() for r in await client.lrange(f"{prefix}runs_index:{AGENT}", 0, -1)]
        raw_runs = [json.loads(v) for v in await client.mget([f"{prefix}runs:{AGENT}:{r}" for r in run_ids])]
    finally:
        await client.aclose()
    assert len(run_ids) == RUNS
    models = {c["model_name"] for run in raw_runs for c in run["calls"] if c.get("model_name")}
    assert len(models) == 3  # the varied workload really varied

    async with await open_at(redis_url, prefix) as store:
        adaptive = store.adaptive
        assert [dumped(r) for r in await adaptive.list_runs(AGENT)] == raw_runs
        pages, cursor = [], None
        while True:  # cursors walk the NeMo-written index too
            page = await adaptive.list_runs(AGENT, limit=7, cursor=cursor)
            pages += [dumped(r) for r in page]
            if not (cursor := page.next_cursor):
                break
        assert pages == raw_runs
        assert await adaptive.list_agents() == [AGENT]

        for kind, load in (
            ("plan", adaptive.load_plan),
            ("trie", adaptive.load_trie),
            ("accumulators", adaptive.load_accumulators),
        ):
            assert dumped(await load(AGENT)) == await raw_json(redis_url, f"{prefix}{kind}:{AGENT}"), kind

        learning_keys = list(await adaptive.list_keys("acg_observations"))
        assert AGENT in learning_keys and len(learning_keys) >= 3  # the agent plus several learning keys
        assert list(await adaptive.list_keys("acg_stability")) == learning_keys
        for key in learning_keys:
            for kind, load in (
                ("acg_observations", adaptive.load_observations),
                ("acg_stability", adaptive.load_stability),
            ):
                assert dumped(await load(key)) == await raw_json(redis_url, f"{prefix}{kind}:{key}"), key


async def test_nemo_relay_acts_on_state_written_by_relaystore(redis_url: str, prefix: str) -> None:
    """Observations and stability learned by one runtime, rewritten by relaystore under a fresh
    prefix with a changed ``stable_prefix_length``, drive a new runtime's cache facts."""
    drive(redis_url, prefix, AGENT, 4, workload="demo")
    target = prefix + "copy:"
    try:
        async with await open_at(redis_url, prefix) as source, await open_at(redis_url, target) as copy:
            keys = list(await source.adaptive.list_keys("acg_stability"))
            assert len(keys) == 2  # the agent id and its one stable-scaffold learning key
            for key in keys:
                stability = await source.adaptive.load_stability(key)
                assert stability is not None and stability.stable_prefix_length == 2
                changed = stability.model_copy(update={"stable_prefix_length": 1})
                await copy.adaptive.store_stability(key, changed)
                await copy.adaptive.store_observations(key, await source.adaptive.load_observations(key))

        learned = facts(redis_url, prefix, AGENT)
        written = facts(redis_url, target, AGENT)
        empty = facts(redis_url, prefix + "empty:", AGENT)
    finally:
        await purge(redis_url, target)
    assert learned is not None and learned["stable_prefix_length"] == 2
    assert written is not None and written["stable_prefix_length"] == 1  # relaystore's value
    assert "acg_stability_unavailable" not in written["missing_facts"]
    assert empty is not None and "acg_stability_unavailable" in empty["missing_facts"]
