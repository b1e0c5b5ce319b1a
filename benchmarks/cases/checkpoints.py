"""Checkpoint cases: save, load_latest and list(limit=10), against raw sqlite3 and LangGraph's saver.

Every contender starts from the same Python state and encodes it with msgpack (see payloads.py).
Prefills run with ``synchronous=OFF`` to keep setup short; the timed part always runs at FULL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

import relaystore
from benchmarks.harness import Contender, Context, Matchup, Op, Target, case
from benchmarks.payloads import channel_values, decode_state, encode_state, thread_of
from benchmarks.peers.langgraph_savers import SaverDriver
from benchmarks.peers.raw_sqlite import RawSqlite
from relaystore.models.checkpoints import CheckpointMetadata

SAVER = "AsyncSqliteSaver"
RAW = "raw sqlite3 (WAL, FULL)"
THREADS = 20  # saves and loads are spread over this many threads, as in the anchors' bench


# --------------------------------------------------------------------------- relaystore


class RelaystoreWriter:
    """Saves checkpoints the way an agent loop would: new id, parent = the thread's last one."""

    def __init__(self, store: relaystore.Store, values: dict[str, Any]) -> None:
        self.store = store
        self.values = values
        self._heads: dict[str, str] = {}

    async def save(self, thread_id: str, step: int) -> None:
        metadata = CheckpointMetadata.new(thread_id, step=step, parent_id=self._heads.get(thread_id))
        self._heads[thread_id] = await self.store.checkpoints.save(
            thread_id, metadata, encode_state(self.values, step)
        )


async def prefill_relaystore(url: str, values: dict[str, Any], count: int, threads: int) -> None:
    async with relaystore.connect(url, synchronous="off") as store:
        writer = RelaystoreWriter(store, values)
        for i in range(count):
            await writer.save(thread_of(i, threads), i)


def relaystore_contender(
    ctx: Context, label: str, size: str, prefill: int, threads: int, make_op: Any
) -> Contender:
    """A relaystore store holding ``prefill`` checkpoints of ``size`` on ``threads`` threads;
    ``make_op(store, writer)`` gives the timed operation."""
    url = ctx.store_url(label)

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        values = channel_values(size)
        await prefill_relaystore(url, values, prefill, threads)
        async with relaystore.connect(url) as store:
            yield make_op(store, RelaystoreWriter(store, values))

    return Contender(label, setup)


# --------------------------------------------------------------------------- peers


def saver_contender(
    ctx: Context, label: str, size: str, prefill: int, threads: int, make_op: Any
) -> Contender:
    """LangGraph's AsyncSqliteSaver on its own file; ``make_op(driver)`` gives the timed op."""
    path = ctx.path(f"{label.replace(' ', '_')}.db")

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await saver.setup()
            driver = SaverDriver(saver, channel_values(size))
            await saver.conn.execute("PRAGMA synchronous = OFF")
            for i in range(prefill):
                await driver.put(thread_of(i, threads), i)
            await saver.conn.execute("PRAGMA synchronous = FULL")  # the saver's own default
            yield make_op(driver)

    return Contender(label, setup)


def raw_contender(ctx: Context, size: str, prefill: int, threads: int, make_op: Any) -> Contender:
    path = ctx.path("raw.db")

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        values = channel_values(size)
        _prefill_raw(path, values, prefill, threads)
        raw = RawSqlite(path)
        try:
            yield make_op(raw, values)
        finally:
            raw.close()

    return Contender(RAW, setup)


def _prefill_raw(path: Path, values: dict[str, Any], count: int, threads: int) -> None:
    raw = RawSqlite(path, synchronous="OFF")
    for i in range(count):
        raw.insert_checkpoint(
            thread_of(i, threads), _raw_metadata(thread_of(i, threads), i), encode_state(values, i)
        )
    raw.close()


def _raw_metadata(thread_id: str, step: int) -> dict[str, Any]:
    return CheckpointMetadata.new(thread_id, step=step).model_dump()


# --------------------------------------------------------------------------- save


def _save_case(size: str, n: int, quick_n: int) -> None:
    @case(
        "checkpoints",
        f"save {size}",
        n=n,
        quick_n=quick_n,
        targets={SAVER: Target.at_least(1.5), RAW: Target.at_least(0.8)},
        note=f"one save = encode the {size} state + one durable write; {THREADS} threads round-robin",
    )
    def save(ctx: Context) -> Matchup:
        def rs_op(_store: relaystore.Store, writer: RelaystoreWriter) -> Op:
            return lambda i: writer.save(thread_of(i), i)

        def raw_op(raw: RawSqlite, values: dict[str, Any]) -> Op:
            async def op(i: int) -> None:
                thread = thread_of(i)
                raw.insert_checkpoint(thread, _raw_metadata(thread, i), encode_state(values, i))

            return op

        return Matchup(
            subject=relaystore_contender(ctx, "relaystore", size, 0, THREADS, rs_op),
            peers=[
                raw_contender(ctx, size, 0, THREADS, raw_op),
                saver_contender(ctx, SAVER, size, 0, THREADS, lambda d: lambda i: d.put(thread_of(i), i)),
            ],
        )


_save_case("2 KB", n=1000, quick_n=200)
_save_case("200 KB", n=200, quick_n=50)


# --------------------------------------------------------------------------- load_latest


def _load_case(size: str, n: int, quick_n: int) -> None:
    prefill = THREADS * 5

    @case(
        "checkpoints",
        f"load_latest {size}",
        n=n,
        quick_n=quick_n,
        targets={SAVER: Target.at_least(1.0)},
        note=f"latest of one of {THREADS} threads with 5 checkpoints each, state decoded",
    )
    def load(ctx: Context) -> Matchup:
        def rs_op(store: relaystore.Store, _writer: RelaystoreWriter) -> Op:
            async def op(i: int) -> None:
                decode_state((await store.checkpoints.load_latest(thread_of(i))).state)

            return op

        def raw_op(raw: RawSqlite, _values: dict[str, Any]) -> Op:
            async def op(i: int) -> None:
                found = raw.latest_checkpoint(thread_of(i))
                assert found is not None
                decode_state(found[1])

            return op

        return Matchup(
            subject=relaystore_contender(ctx, "relaystore", size, prefill, THREADS, rs_op),
            peers=[
                saver_contender(
                    ctx, SAVER, size, prefill, THREADS, lambda d: lambda i: d.get_latest(thread_of(i))
                ),
                raw_contender(ctx, size, prefill, THREADS, raw_op),
            ],
        )


_load_case("2 KB", n=4000, quick_n=1000)
_load_case("200 KB", n=1500, quick_n=400)


# --------------------------------------------------------------------------- scaling with thread length


def _long(ctx: Context) -> int:
    return 2_000 if ctx.quick else 10_000


@case(
    "checkpoints",
    "list(limit=10) long vs short thread",
    n=3000,
    quick_n=800,
    targets={"relaystore, 100 checkpoints": Target.time_at_most(1.3)},
    note="newest_first=True on one thread of 2 KB checkpoints: 10,000 (quick: 2,000) vs 100",
)
def list_scaling(ctx: Context) -> Matchup:
    def rs_op(store: relaystore.Store, _writer: RelaystoreWriter) -> Op:
        return lambda _i: store.checkpoints.list("thread-0", limit=10, newest_first=True)

    long = _long(ctx)
    return Matchup(
        subject=relaystore_contender(ctx, f"relaystore, {long:,} checkpoints", "2 KB", long, 1, rs_op),
        peers=[
            relaystore_contender(ctx, "relaystore, 100 checkpoints", "2 KB", 100, 1, rs_op),
            saver_contender(
                ctx,
                f"{SAVER}, {long:,} checkpoints",
                "2 KB",
                long,
                1,
                lambda d: lambda _i: d.list_latest("thread-0", 10),
            ),
        ],
    )


@case(
    "checkpoints",
    "load_latest long vs short thread",
    n=4000,
    quick_n=1000,
    targets={"relaystore, 100 checkpoints": Target.time_at_most(1.3)},
    note="one thread of 2 KB checkpoints: 10,000 (quick: 2,000) vs 100",
)
def load_scaling(ctx: Context) -> Matchup:
    def rs_op(store: relaystore.Store, _writer: RelaystoreWriter) -> Op:
        async def op(_i: int) -> None:
            decode_state((await store.checkpoints.load_latest("thread-0")).state)

        return op

    long = _long(ctx)
    return Matchup(
        subject=relaystore_contender(ctx, f"relaystore, {long:,} checkpoints", "2 KB", long, 1, rs_op),
        peers=[relaystore_contender(ctx, "relaystore, 100 checkpoints", "2 KB", 100, 1, rs_op)],
    )
