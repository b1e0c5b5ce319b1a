"""Several processes learning for one agent at once lose no sample (NeMo Relay's learners would).

Each backend's ``update_*`` is atomic across processes, so the root accumulator must count every
completed LLM call of every process. Extend ``STORES`` as backends land.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from relaystore import connect
from relaystore.learning import learn
from tests.learning.factories import LLM_CALLS_PER_RUN, make_run
from tests.support.services import ensure_postgres, ensure_redis

PROCESSES = 8
RUNS_PER_PROCESS = 25
AGENT = "concurrent-agent"

# name -> (tmp_path -> store URL); redis and postgres get a private prefix / schema per run.
STORES: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda tmp: f"sqlite:///{tmp}/learn.db?synchronous=normal",
    "redis": lambda tmp: f"redis://127.0.0.1:6379/0?prefix=learnconc:{tmp.name}:",
    "postgres": lambda tmp: (
        f"postgresql://postgres@127.0.0.1:5432/test?schema=rs_learn_{uuid.uuid4().hex[:12]}"
    ),
}
SERVICES = {"redis": ensure_redis, "postgres": ensure_postgres}


async def _drop(url: str) -> None:
    """Remove what the test wrote to the shared servers (its own prefix or schema only)."""
    if url.startswith("redis"):
        import redis.asyncio as aioredis

        prefix = url.split("prefix=", 1)[1]
        client = aioredis.Redis()
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.unlink(key)
        await client.aclose()
    elif url.startswith("postgresql"):
        import psycopg

        schema = url.split("schema=", 1)[1]
        async with await psycopg.AsyncConnection.connect(url.split("?")[0], autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _learn_runs(url: str, worker: int) -> None:
    async with connect(url) as store:
        for i in range(RUNS_PER_PROCESS):  # one run per update: as much interleaving as possible
            run = make_run(AGENT, worker * RUNS_PER_PROCESS + i)
            await learn(store, AGENT, [run])


def _worker(url: str, worker: int) -> None:
    asyncio.run(_learn_runs(url, worker))


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(STORES))
async def test_concurrent_learners_lose_no_sample(backend: str, tmp_path: Path) -> None:
    reason = SERVICES[backend]() if backend in SERVICES else None
    if reason:
        pytest.skip(reason)
    url = STORES[backend](tmp_path)
    try:
        await _check_concurrent_learning(url)
    finally:
        await _drop(url)


async def _check_concurrent_learning(url: str) -> None:
    async with connect(url):
        pass  # create the schema once, before the workers race for it
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(url, w)) for w in range(PROCESSES)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(300)
    assert [p.exitcode for p in workers] == [0] * PROCESSES

    total_runs = PROCESSES * RUNS_PER_PROCESS
    async with connect(url) as store:
        state = await store.adaptive.load_accumulators(AGENT)
        assert state is not None
        assert state.nodes[""].all_remaining_calls.count == total_runs * LLM_CALLS_PER_RUN
        for name in ("planner", "researcher", "writer"):
            assert state.nodes[name].all_output_tokens.count == total_runs
        # Every call shares one learning key; its window is full (NeMo Relay's default 100).
        keys = await store.adaptive.list_keys("acg_observations")
        assert len(keys) == 2  # the learning key and its copy under the agent id
        for key in keys:
            assert len(await store.adaptive.load_observations(key) or []) == 100
        plan = await store.adaptive.load_plan(AGENT)
        assert plan is not None and [g.tool_names for g in plan.parallel_groups] == [["fetch", "search"]]
