"""Each call fails within its own deadline under concurrency (issue 15): with N = 8 concurrent
updates of one adaptive document and a frozen server, the slowest fails within 1.5 × timeout
of when it was made, not after N × timeout (they queue on one in-process lock per document).

The SQLite cases (a write lock held by another process, directly and through ``serve``) are in
``tests/server/test_hostile.py``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import relaystore
from relaystore.errors import BackendUnavailable
from relaystore.models import AccumulatorState
from tests.reliability.conftest import CrashableRedis, fresh_url
from tests.reliability.test_server_faults import freeze, postgres_pids, thaw
from tests.support.services import PostgresCluster

CALLS = 8
TIMEOUT = 1.0


def bump(state: AccumulatorState | None) -> AccumulatorState:
    return state or AccumulatorState()


async def concurrent_updates_fail_in_time(
    store: relaystore.Store, pids: list[int], bound: float
) -> list[float]:
    await store.adaptive.update_accumulators("agent", bump)  # connected and warm
    freeze(pids)
    try:

        async def update() -> float:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await asyncio.wait_for(store.adaptive.update_accumulators("agent", bump), CALLS * bound + 10)
            return time.monotonic() - started

        return await asyncio.gather(*(update() for _ in range(CALLS)))
    finally:
        thaw(pids)


@pytest.mark.timeout(120)
async def test_concurrent_redis_updates_of_one_document_fail_within_their_deadline(
    crashable_redis: CrashableRedis, tmp_path: Path
) -> None:
    async with fresh_url("redis", tmp_path, redis=crashable_redis.url) as url:
        store = await relaystore.connect(url, timeout=TIMEOUT)
        try:
            pid = crashable_redis.server.process.pid
            elapsed = await concurrent_updates_fail_in_time(store, [pid], TIMEOUT)
        finally:
            await store.close()
    assert max(elapsed) <= 1.5 * TIMEOUT, elapsed


@pytest.mark.timeout(180)
async def test_concurrent_postgres_updates_of_one_document_fail_within_their_deadline(
    private_postgres: PostgresCluster, tmp_path: Path
) -> None:
    call_timeout = 2.0  # what bounds a call on a frozen server (timeout bounds connecting)
    async with fresh_url("postgres", tmp_path, postgres=private_postgres.url) as url:
        store = await relaystore.connect(url, timeout=TIMEOUT, call_timeout=call_timeout)
        try:
            elapsed = await concurrent_updates_fail_in_time(
                store, postgres_pids(private_postgres), call_timeout
            )
        finally:
            await asyncio.wait_for(store.close(), 60)
    assert max(elapsed) <= 1.5 * call_timeout, elapsed
