"""Server faults: a private Redis and a private PostgreSQL crash, restart or freeze mid-run.

- During an outage every call raises BackendUnavailable within the store's ``timeout`` (2 s
  here, asserted with a generous margin), never hangs and never leaks a driver exception.
- Afterwards the same store object works again, without being re-created.
- A server crash in the middle of a stream of multi-key writes leaves none half-applied.

Only servers this suite started are stopped, killed or frozen (by pid / pg_ctl).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

import relaystore
from relaystore.backends.redis.checkpoints import RedisCheckpointStore
from relaystore.backends.redis.outputs import RedisOutputStore
from relaystore.errors import BackendUnavailable
from relaystore.models import CheckpointMetadata
from relaystore.stores import Store
from relaystore.testing import docs
from tests.reliability.checks import Acks, verify_crashed_store
from tests.reliability.conftest import CrashableRedis, Tally, fresh_url
from tests.reliability.test_crash import final_exception, finish, read_acks, start_writer
from tests.reliability.writer import AGENT, THREAD
from tests.support.redis_stores import raw_client
from tests.support.services import PostgresCluster

TIMEOUT = 2.0
MARGIN = 8.0  # generous: the bound is a correctness property, not a speed claim
CRASHES = [pytest.param(3, id="ci"), pytest.param(15, id="soak", marks=pytest.mark.soak)]

Call = Callable[[Store], Awaitable[Any]]


def calls(tag: str) -> dict[str, Call]:
    """One call of each kind, reads and multi-key writes; ``tag`` keeps new ids unique."""
    return {
        "head": lambda s: s.checkpoints.head("t"),
        "load_latest": lambda s: s.checkpoints.load_latest("t"),
        "save": lambda s: s.checkpoints.save("t", CheckpointMetadata(id=f"c-{tag}", thread_id="t"), b"x"),
        "append": lambda s: s.outputs.append("task", 1, "agent", docs.artifact_event()),
        "list_outputs": lambda s: s.outputs.list(limit=5),
        "store_run": lambda s: s.adaptive.store_run(docs.run_record("agent")),
        "list_runs": lambda s: s.adaptive.list_runs("agent"),
        "update": lambda s: s.adaptive.update_accumulators("agent", docs.incremented),
    }


async def assert_each_call_fails_fast(store: Store, tally: Tally, backend: str) -> None:
    for name, call in calls(f"down-{time.monotonic_ns()}").items():
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            # wait_for only keeps a hang from stalling the suite; the assertion is on `elapsed`
            await asyncio.wait_for(call(store), TIMEOUT + 2 * MARGIN)
        elapsed = time.monotonic() - started
        assert elapsed < TIMEOUT + MARGIN, f"{name} took {elapsed:.1f}s to fail"
        tally.add(backend, operations=1, errors={"BackendUnavailable": 1})


async def assert_recovers(store: Store, tally: Tally, backend: str, within: float = 30.0) -> None:
    """The same store answers again: a call or two may still fail while the pool reconnects."""
    deadline = time.monotonic() + within
    while True:
        try:
            await store.checkpoints.head("t")
            break
        except BackendUnavailable:
            tally.add(backend, errors={"BackendUnavailable": 1})
            assert time.monotonic() < deadline, "the store did not recover"
            await asyncio.sleep(0.2)
    for call in calls(f"up-{time.monotonic_ns()}").values():  # then every kind of call works
        await call(store)
    tally.add(backend, operations=len(calls("")))


async def baseline(store: Store) -> None:
    await store.checkpoints.save("t", CheckpointMetadata(id="before", thread_id="t"), b"kept")


async def assert_baseline_kept(store: Store) -> None:
    assert (await store.checkpoints.load("t", "before")).state == b"kept"


def freeze(pids: list[int]) -> None:
    _signal_all(pids, signal.SIGSTOP)


def thaw(pids: list[int]) -> None:
    # children first: a backend that was already exiting may be reaped as soon as its parent
    # runs again, and one that is gone needs no signal
    _signal_all(list(reversed(pids)), signal.SIGCONT)


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).send_signal(signum)


def postgres_pids(cluster: PostgresCluster) -> list[int]:
    postmaster = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
    return [postmaster, *(p.pid for p in psutil.Process(postmaster).children(recursive=True))]


# --------------------------------------------------------------------------- Redis


@pytest.mark.timeout(300)
async def test_redis_outage_fails_fast_and_the_same_store_recovers(
    crashable_redis: CrashableRedis, tmp_path: Path, tally: Tally
) -> None:
    async with fresh_url("redis", tmp_path, redis=crashable_redis.url) as url:
        store = await relaystore.connect(url, timeout=TIMEOUT)
        try:
            await baseline(store)
            crashable_redis.kill()  # connection refused
            await assert_each_call_fails_fast(store, tally, "redis")
            crashable_redis.restart()  # from its AOF
            await assert_recovers(store, tally, "redis")
            await assert_baseline_kept(store)

            pid = crashable_redis.server.process.pid
            freeze([pid])  # accepts TCP in the kernel, never answers: only our timeout helps
            try:
                await assert_each_call_fails_fast(store, tally, "redis")
            finally:
                thaw([pid])
            await assert_recovers(store, tally, "redis")
        finally:
            await store.close()
    tally.add("redis", kills=2)


async def redis_consistency(url: str, prefix: str) -> None:
    """Raw look at the keys: every index entry has its record and every record its entries."""
    client = raw_client(url)
    try:
        ids = [r.decode() for r in await client.lrange(f"{prefix}runs_index:{AGENT}", 0, -1)]
        stored = {k.decode().rpartition(":")[2] async for k in client.scan_iter(f"{prefix}runs:{AGENT}:*")}
        assert set(ids) == stored and len(ids) == len(stored), "runs_index and run records disagree"

        outputs = RedisOutputStore(None, prefix)  # type: ignore[arg-type]  # only its key names
        records = {ref.decode(): text for ref, text in (await client.hgetall(outputs._records)).items()}
        everything = dict(await client.zrange(outputs._base + "idx:all", 0, -1, withscores=True))
        assert {r.decode() for r in everything} == set(records)
        async for index in client.scan_iter(outputs._base.replace("{", "\\{").replace("}", "\\}") + "*"):
            if await client.type(index) == b"zset":  # every index and children set
                members = {m.decode() for m in await client.zrange(index, 0, -1)}
                assert members <= set(records), f"{index!r} names outputs that are not stored"

        thread = RedisCheckpointStore(None, prefix)._keys(THREAD)  # type: ignore[arg-type]
        order = {m.decode() for m in await client.zrange(thread.order, 0, -1)}
        assert order == {f.decode() for f in await client.hkeys(thread.meta)}
        assert order == {f.decode() for f in await client.hkeys(thread.state)}
    finally:
        await client.aclose()


async def crash_server_under_writer(
    url: str, crash: Callable[[], None], restart: Callable[[], None], tmp_path: Path, life: int, acks: Acks
) -> None:
    """Start the writer, crash the server mid-stream, check the writer failed with
    BackendUnavailable in bounded time (not a hang, not a raw driver error), restart."""
    stderr = tmp_path / f"writer-{life}.err"
    writer = start_writer(url, life, stderr)
    read_acks(writer, random.randint(5, 40), acks)
    time.sleep(random.uniform(0, 0.02))
    crash()
    try:
        started = time.monotonic()
        code = writer.wait(timeout=TIMEOUT + 60)  # it must notice the outage and stop on its own
        assert time.monotonic() - started < TIMEOUT + 4 * MARGIN
    finally:
        finish(writer, acks)
        restart()
    assert code != 0 and final_exception(stderr).startswith("relaystore.errors.BackendUnavailable:")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("crashes", CRASHES)
async def test_redis_crash_mid_stream_applies_no_multi_key_write_by_half(
    crashes: int, crashable_redis: CrashableRedis, tmp_path: Path, tally: Tally
) -> None:
    async with fresh_url("redis", tmp_path, redis=crashable_redis.url) as url:
        prefix = url.partition("prefix=")[2]
        acks = Acks()
        for life in range(crashes):
            await crash_server_under_writer(
                f"{url}&timeout={TIMEOUT}",
                crashable_redis.kill,
                crashable_redis.restart,
                tmp_path,
                life,
                acks,
            )
            await redis_consistency(crashable_redis.url, prefix)
            async with relaystore.connect(url) as store:
                lost = await verify_crashed_store(store, acks, lives=life + 1)
            tally.add("redis", kills=1, lost=lost, errors={"BackendUnavailable": 1})
            assert lost == 0
        tally.add("redis", operations=acks.total)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.timeout(300)
async def test_postgres_outage_fails_fast_and_the_same_store_recovers(
    private_postgres: PostgresCluster, tmp_path: Path, tally: Tally
) -> None:
    async with fresh_url("postgres", tmp_path, postgres=private_postgres.url) as url:
        store = await relaystore.connect(url, timeout=TIMEOUT)
        try:
            await baseline(store)
            private_postgres.stop("immediate")  # a crash: the next start replays the WAL
            try:
                await assert_each_call_fails_fast(store, tally, "postgres")
            finally:
                private_postgres.start()
            await assert_recovers(store, tally, "postgres")
            await assert_baseline_kept(store)
        finally:
            await store.close()
    tally.add("postgres", kills=1)


@pytest.mark.timeout(300)
async def test_postgres_frozen_server_fails_fast(
    private_postgres: PostgresCluster, tmp_path: Path, tally: Tally
) -> None:
    async with fresh_url("postgres", tmp_path, postgres=private_postgres.url) as url:
        store = await relaystore.connect(url, timeout=TIMEOUT)
        try:
            await baseline(store)
            pids = postgres_pids(private_postgres)
            freeze(pids)  # the sockets stay open; no answer ever comes
            try:
                started = time.monotonic()
                with pytest.raises(BackendUnavailable):
                    await asyncio.wait_for(store.checkpoints.head("t"), TIMEOUT + MARGIN)
                assert time.monotonic() - started < TIMEOUT + MARGIN
            finally:
                thaw(pids)
        finally:
            await asyncio.wait_for(store.close(), 60)


async def postgres_rows_complete(server: str, schema: str) -> None:
    """Raw look at the tables: every checkpoint row is whole and every lineage edge has its row."""
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as conn:
        rows = await (
            await conn.execute(f'SELECT checkpoint_id, metadata, length(state) FROM "{schema}".checkpoints')
        ).fetchall()
        for checkpoint_id, metadata, size in rows:
            # the stored metadata leaves out what the row's columns hold (id, thread_id and
            # state_size, put back by every read): a row is one INSERT, whole or absent
            assert checkpoint_id and isinstance(metadata, dict) and "id" not in metadata
            assert size is not None
        orphans = await (
            await conn.execute(
                f'SELECT count(*) FROM "{schema}".output_parents p '
                f'LEFT JOIN "{schema}".outputs o ON o.seq = p.child_seq WHERE o.seq IS NULL'
            )
        ).fetchone()
        assert orphans == (0,)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("crashes", CRASHES)
async def test_postgres_crash_mid_stream_leaves_every_row_complete(
    crashes: int, private_postgres: PostgresCluster, tmp_path: Path, tally: Tally
) -> None:
    async with fresh_url("postgres", tmp_path, postgres=private_postgres.url) as url:
        schema = url.partition("schema=")[2]
        acks = Acks()
        for life in range(crashes):
            await crash_server_under_writer(
                f"{url}&timeout={TIMEOUT}",
                lambda: private_postgres.stop("immediate"),
                private_postgres.start,
                tmp_path,
                life,
                acks,
            )
            await postgres_rows_complete(private_postgres.url, schema)
            async with relaystore.connect(url) as store:
                lost = await verify_crashed_store(store, acks, lives=life + 1)
            tally.add("postgres", kills=1, lost=lost, errors={"BackendUnavailable": 1})
            assert lost == 0
        tally.add("postgres", operations=acks.total)


# --------------------------------------------------------------------------- SQLite


async def test_sqlite_busy_timeout_is_backend_unavailable_and_bounded(tmp_path: Path) -> None:
    """Another process's write lock held past ``timeout``: the save raises BackendUnavailable
    after about ``timeout`` seconds (not a raw "database is locked", not a hang), and works
    again once the lock is released. ``synchronous`` is FULL unless asked otherwise."""
    import sqlite3
    from contextlib import closing

    path = tmp_path / "busy.db"
    async with relaystore.connect(f"sqlite:///{path}", timeout=1) as store:
        assert (await store.info())["synchronous"] == "full"
        with closing(sqlite3.connect(path, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")  # what a long write in another process holds
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await store.checkpoints.save("t", CheckpointMetadata(id="c", thread_id="t"), b"x")
            assert 1.0 <= time.monotonic() - started < 1.0 + MARGIN
            holder.execute("ROLLBACK")
        await store.checkpoints.save("t", CheckpointMetadata(id="c", thread_id="t"), b"x")
    async with relaystore.connect(f"sqlite:///{path}?synchronous=normal") as store:
        assert (await store.info())["synchronous"] == "normal"
