"""Checkpoint cases: save, load_latest and list(limit=10) on every durable backend, against peers.

Every contender starts from the same Python state and encodes it with msgpack (see payloads.py).
Peers per backend: sqlite has raw sqlite3 and LangGraph's AsyncSqliteSaver; postgres has one raw
psycopg autocommit INSERT per save and LangGraph's AsyncPostgresSaver; redis and file have no
native peer, so they are shown beside relaystore on sqlite (no target, a reference point).
Prefills run with durability off (``ctx.fill_options``) to keep setup short; the timed part always
runs at the backend's defaults. A concurrency case pits 8 writers through one PostgreSQL store
against the same writers serialized behind one ``asyncio.Lock``, as AsyncPostgresSaver runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg import sql

import relaystore
from benchmarks.harness import (
    PG_URL,
    Contender,
    Context,
    Matchup,
    Op,
    Target,
    case,
    drop_pg_schema,
    unique_name,
)
from benchmarks.payloads import channel_values, decode_state, encode_state, thread_of
from benchmarks.peers.langgraph_savers import SaverDriver
from benchmarks.peers.raw_postgres import RawPostgres
from benchmarks.peers.raw_sqlite import RawSqlite
from relaystore.models.checkpoints import CheckpointMetadata

SAVER = "AsyncSqliteSaver"
PG_SAVER = "AsyncPostgresSaver"
RAW = "raw sqlite3 (WAL, FULL)"
PG_RAW = "raw psycopg (autocommit, 1 statement)"
ON_SQLITE = "relaystore on sqlite"
THREADS = 20  # saves and loads are spread over this many threads, as in the anchors' bench
DURABLE = ("sqlite", "postgres", "redis", "file")
QUICK_200KB = ("sqlite",)  # --quick keeps its 2 minutes: the 2 KB cases cover the other backends

SAVE_REASONS = {
    RAW: "The raw peer writes on the calling thread with nothing to validate; relaystore builds and "
    "checks a CheckpointMetadata model and hops to its worker thread per save "
    "(`python -m benchmarks.profile_sqlite` shows where the time goes).",
    SAVER: "Both do one durable SQLite commit per save; relaystore also builds and checks a "
    "CheckpointMetadata model and validates ids, so with fsync this cheap it cannot be 1.5× faster.",
    PG_SAVER: "Both are bound by one durable commit on a 2-core box shared with the server: relaystore's "
    "save is already one round trip (advisory lock and INSERT in one statement, for per-thread order); "
    "what is left is the commit itself, so 1.5× at equal durability needs group commit.",
}


class Side(Protocol):
    """What a contender does to checkpoints; every method encodes or decodes the state."""

    async def put(self, thread_id: str, step: int) -> None: ...

    async def get_latest(self, thread_id: str) -> object: ...

    async def list_latest(self, thread_id: str, limit: int) -> object: ...


OpenSide = Callable[[], AbstractAsyncContextManager[Side]]


# --------------------------------------------------------------------------- relaystore


class RelaystoreSide:
    """Saves checkpoints the way an agent loop would: new id, parent = the thread's last one."""

    def __init__(self, store: relaystore.Store, values: dict[str, Any]) -> None:
        self.store = store
        self.values = values
        self._heads: dict[str, str] = {}

    async def put(self, thread_id: str, step: int) -> None:
        metadata = CheckpointMetadata.new(thread_id, step=step, parent_id=self._heads.get(thread_id))
        self._heads[thread_id] = await self.store.checkpoints.save(
            thread_id, metadata, encode_state(self.values, step)
        )

    async def get_latest(self, thread_id: str) -> object:
        return decode_state((await self.store.checkpoints.load_latest(thread_id)).state)

    async def list_latest(self, thread_id: str, limit: int) -> object:
        return await self.store.checkpoints.list(thread_id, limit=limit, newest_first=True)


def relaystore_side(url: str, size: str, prefill: int, threads: int, fill: dict[str, str]) -> OpenSide:
    """A relaystore store at ``url`` holding ``prefill`` checkpoints of ``size`` on ``threads`` threads."""

    @asynccontextmanager
    async def open_side() -> AsyncIterator[Side]:
        values = channel_values(size)
        if url.startswith("postgresql:") and prefill:
            await bulk_fill_postgres(url, values, prefill, threads)
        else:
            async with relaystore.connect(url, **fill) as store:
                writer = RelaystoreSide(store, values)
                for i in range(prefill):
                    await writer.put(thread_of(i, threads), i)
        async with relaystore.connect(url) as store:
            yield RelaystoreSide(store, values)

    return open_side


async def bulk_fill_postgres(url: str, values: dict[str, Any], count: int, threads: int) -> None:
    """COPY ``count`` checkpoints into a relaystore PostgreSQL schema, then ANALYZE.

    Saving 10,000 checkpoints one by one takes ~15 s of a 20-minute budget; COPY takes ~1 s and
    leaves the same rows (relaystore's table layout, metadata as ``save`` writes it).
    """
    async with relaystore.connect(url):
        pass  # creates the schema and its tables
    schema = parse_qs(urlsplit(url).query)["schema"][0]
    table = sql.Identifier(schema, "checkpoints")
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        copy = sql.SQL("COPY {} (thread_id, checkpoint_id, metadata, state) FROM STDIN").format(table)
        async with conn.cursor() as cur, cur.copy(copy) as sink:
            for i in range(count):
                thread = thread_of(i, threads)
                state = encode_state(values, i)
                metadata = CheckpointMetadata.new(thread, step=i).model_copy(
                    update={"state_size": len(state)}
                )
                await sink.write_row((thread, metadata.id, metadata.model_dump_json(), state))
        await conn.execute(sql.SQL("ANALYZE {}").format(table))


def relaystore_contender(
    ctx: Context, label: str, size: str, prefill: int, threads: int, op: str
) -> Contender:
    side = relaystore_side(ctx.store_url(label), size, prefill, threads, ctx.fill_options)
    return contender(label, side, op, threads)


def on_sqlite_contender(ctx: Context, size: str, prefill: int, threads: int, op: str) -> Contender:
    """relaystore on a sqlite file in the case's temp dir: the reference for other backends."""
    url = f"sqlite:///{ctx.path('reference.db')}"
    return contender(
        ON_SQLITE, relaystore_side(url, size, prefill, threads, {"synchronous": "off"}), op, threads
    )


# --------------------------------------------------------------------------- peers


class RawSide:
    """raw sqlite3 or raw psycopg: one INSERT per save, one SELECT per load."""

    def __init__(self, raw: Any, values: dict[str, Any]) -> None:
        self.raw = raw
        self.values = values

    async def put(self, thread_id: str, step: int) -> None:
        metadata = CheckpointMetadata.new(thread_id, step=step).model_dump()
        done = self.raw.insert_checkpoint(thread_id, metadata, encode_state(self.values, step))
        if isinstance(done, Awaitable):
            await done

    async def get_latest(self, thread_id: str) -> object:
        found = self.raw.latest_checkpoint(thread_id)
        if isinstance(found, Awaitable):
            found = await found
        assert found is not None
        return decode_state(found[1])

    async def list_latest(self, thread_id: str, limit: int) -> object:
        raise NotImplementedError("raw peers only save and load")


def raw_sqlite_side(path: Path, size: str, prefill: int, threads: int) -> OpenSide:
    @asynccontextmanager
    async def open_side() -> AsyncIterator[Side]:
        values = channel_values(size)
        filler = RawSide(RawSqlite(path, synchronous="OFF"), values)
        for i in range(prefill):
            await filler.put(thread_of(i, threads), i)
        filler.raw.close()
        raw = RawSqlite(path)
        try:
            yield RawSide(raw, values)
        finally:
            raw.close()

    return open_side


def raw_postgres_side(ctx: Context, size: str, prefill: int, threads: int) -> OpenSide:
    schema = private_schema(ctx, "raw")

    @asynccontextmanager
    async def open_side() -> AsyncIterator[Side]:
        async with RawPostgres.open(schema) as raw:
            side = RawSide(raw, channel_values(size))
            for i in range(prefill):
                await side.put(thread_of(i, threads), i)
            yield side

    return open_side


def private_schema(ctx: Context, label: str) -> str:
    """A schema name for a peer's own tables, dropped after the case."""
    schema = unique_name(label)
    ctx.defer(lambda: drop_pg_schema(schema))
    return schema


def sqlite_saver_side(path: Path, size: str, prefill: int, threads: int) -> OpenSide:
    """LangGraph's AsyncSqliteSaver on its own file."""

    @asynccontextmanager
    async def open_side() -> AsyncIterator[Side]:
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await saver.setup()
            driver = SaverDriver(saver, channel_values(size))
            await saver.conn.execute("PRAGMA synchronous = OFF")
            for i in range(prefill):
                await driver.put(thread_of(i, threads), i)
            await saver.conn.execute("PRAGMA synchronous = FULL")  # the saver's own default
            yield driver

    return open_side


def postgres_saver_side(ctx: Context, size: str, prefill: int, threads: int) -> OpenSide:
    """LangGraph's AsyncPostgresSaver in a fresh schema: ``setup()`` creates its tables in the
    first schema of ``search_path``, which the conninfo's ``options`` sets."""
    schema = private_schema(ctx, "saver")

    @asynccontextmanager
    async def open_side() -> AsyncIterator[Side]:
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
            await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        async with AsyncPostgresSaver.from_conn_string(f"{PG_URL}?options=-csearch_path%3D{schema}") as saver:
            await saver.setup()
            driver = SaverDriver(saver, channel_values(size))
            for i in range(prefill):
                await driver.put(thread_of(i, threads), i)
            yield driver

    return open_side


# --------------------------------------------------------------------------- contenders


def contender(label: str, open_side: OpenSide, op: str, threads: int) -> Contender:
    """``op`` is "save", "load" or "list": what each timed call does on ``thread_of(i, threads)``."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with open_side() as side:
            yield timed_op(side, op, threads)

    return Contender(label, setup)


def timed_op(side: Side, op: str, threads: int) -> Op:
    if op == "save":
        return lambda i: side.put(thread_of(i, threads), i)
    if op == "load":
        return lambda i: side.get_latest(thread_of(i, threads))
    return lambda i: side.list_latest(thread_of(i, threads), 10)


def peers(ctx: Context, size: str, prefill: int, op: str) -> list[Contender]:
    """The peers of a save or load_latest case on this case's backend."""
    if ctx.backend == "sqlite":
        return [
            contender(RAW, raw_sqlite_side(ctx.path("raw.db"), size, prefill, THREADS), op, THREADS),
            contender(SAVER, sqlite_saver_side(ctx.path("saver.db"), size, prefill, THREADS), op, THREADS),
        ]
    reference = [on_sqlite_contender(ctx, size, prefill, THREADS, op)]
    if ctx.backend == "postgres":
        return [
            contender(PG_RAW, raw_postgres_side(ctx, size, prefill, THREADS), op, THREADS),
            contender(PG_SAVER, postgres_saver_side(ctx, size, prefill, THREADS), op, THREADS),
            *reference,
        ]
    return reference


# --------------------------------------------------------------------------- save


def _save_case(size: str, n: int, quick_n: int) -> None:
    @case(
        "checkpoints",
        f"save {size}",
        n=n,
        quick_n=quick_n,
        backends=DURABLE,
        quick_backends=QUICK_200KB if size == "200 KB" else None,
        n_scale={"file": 0.25, "postgres": 0.5},
        targets={SAVER: Target.at_least(1.5), PG_SAVER: Target.at_least(1.5), RAW: Target.at_least(0.8)},
        reasons=SAVE_REASONS,
        note=f"one save = encode the {size} state + one durable write; {THREADS} threads round-robin",
    )
    def save(ctx: Context) -> Matchup:
        subject = relaystore_contender(ctx, "relaystore", size, 0, THREADS, "save")
        return Matchup(subject, peers(ctx, size, 0, "save"))


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
        backends=DURABLE,
        quick_backends=QUICK_200KB if size == "200 KB" else None,
        n_scale={"postgres": 0.3 if size == "200 KB" else 0.5},
        targets={SAVER: Target.at_least(1.0), PG_SAVER: Target.at_least(1.0)},
        reasons={
            PG_SAVER: "Both read one row over one round trip; at 200 KB the transfer and decoding of "
            "the state dominate and the two are within noise of each other."
        },
        note=f"latest of one of {THREADS} threads with 5 checkpoints each, state decoded",
    )
    def load(ctx: Context) -> Matchup:
        subject = relaystore_contender(ctx, "relaystore", size, prefill, THREADS, "load")
        return Matchup(subject, peers(ctx, size, prefill, "load"))


_load_case("2 KB", n=4000, quick_n=1000)
_load_case("200 KB", n=1500, quick_n=400)


# --------------------------------------------------------------------------- scaling with thread length


def _long(ctx: Context) -> int:
    """Checkpoints on the long thread. The file backend stays at 2,000: each of its saves lists the
    thread's directory, so filling 10,000 takes ~4 minutes per case (O(n²)), and 2,000 already
    shows its reads growing with the thread."""
    return 2_000 if ctx.quick or ctx.backend == "file" else 10_000


SHORT = "relaystore, 100 checkpoints"
SCALING_N = {"file": 0.05, "postgres": 0.5, "redis": 0.5}  # file: ~170 reads/s at 2,000
SCALING_QUICK = ("sqlite", "postgres", "redis")  # file's 2×10,000 saves of prefill cost ~25 s
SCALING_REASONS = {
    f"{SHORT} [file]": "The file backend lists and sorts the thread's directory (2 files per "
    "checkpoint) on every read, so reads grow with the thread; a per-thread head/index file would fix it.",
    f"{SHORT} [postgres]": "The server's work is one index descent either way (pg_bench.py EXPLAIN: "
    "0.04–0.07 ms); the call is pool round trips, and two pools on a busy shared 2-core box differ by "
    "more than the 30% band (see the min–max).",
}


@case(
    "checkpoints",
    "list(limit=10) long vs short thread",
    n=3000,
    quick_n=800,
    backends=DURABLE,
    n_scale=SCALING_N,
    quick_backends=SCALING_QUICK,
    targets={SHORT: Target.time_at_most(1.3)},
    reasons=SCALING_REASONS,
    note="newest_first=True on one thread of 2 KB checkpoints: 10,000 (quick, and file: 2,000) vs 100",
)
def list_scaling(ctx: Context) -> Matchup:
    long = _long(ctx)
    others = [relaystore_contender(ctx, SHORT, "2 KB", 100, 1, "list")]
    if ctx.backend == "sqlite":
        saver = sqlite_saver_side(ctx.path("saver.db"), "2 KB", long, 1)
        others.append(contender(f"{SAVER}, {long:,} checkpoints", saver, "list", 1))
    return Matchup(
        relaystore_contender(ctx, f"relaystore, {long:,} checkpoints", "2 KB", long, 1, "list"), others
    )


@case(
    "checkpoints",
    "load_latest long vs short thread",
    n=4000,
    quick_n=1000,
    backends=DURABLE,
    n_scale=SCALING_N,
    quick_backends=SCALING_QUICK,
    targets={SHORT: Target.time_at_most(1.3)},
    reasons=SCALING_REASONS,
    note="one thread of 2 KB checkpoints: 10,000 (quick, and file: 2,000) vs 100, state decoded",
)
def load_scaling(ctx: Context) -> Matchup:
    long = _long(ctx)
    subject = relaystore_contender(ctx, f"relaystore, {long:,} checkpoints", "2 KB", long, 1, "load")
    return Matchup(subject, [relaystore_contender(ctx, SHORT, "2 KB", 100, 1, "load")])


# --------------------------------------------------------------------------- concurrent writers

WRITERS = 8
SAVES_PER_WRITER = 10  # per timed call: one call is a burst of 8 × 10 saves
LOCKED = "same 8 writers behind one asyncio.Lock"


def writers_contender(ctx: Context, label: str, serialized: bool) -> Contender:
    """8 writers, each on its own thread, saving 2 KB checkpoints through one store (pool of 8)."""
    url = ctx.store_url(label)

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with relaystore.connect(url, pool_min=WRITERS, pool_max=WRITERS) as store:
            side = RelaystoreSide(store, channel_values("2 KB"))
            lock = asyncio.Lock() if serialized else None

            async def save(thread_id: str, step: int) -> None:
                if lock is None:
                    await side.put(thread_id, step)
                    return
                async with lock:  # what AsyncPostgresSaver does around every query
                    await side.put(thread_id, step)

            async def writer(w: int, burst: int) -> None:
                for k in range(SAVES_PER_WRITER):
                    await save(f"writer-{w}", burst * SAVES_PER_WRITER + k)

            async def burst(i: int) -> None:
                await asyncio.gather(*(writer(w, i) for w in range(WRITERS)))

            yield burst

    return Contender(label, setup)


@case(
    "checkpoints",
    f"save 2 KB, {WRITERS} concurrent writers",
    n=10,
    quick_n=4,
    quick_repeats=3,
    backends=("postgres",),
    unit="saves/s",
    ops_per_call=WRITERS * SAVES_PER_WRITER,
    targets={LOCKED: Target.at_least(2.0)},
    reasons={
        LOCKED: "client, server and other engineers' tests share 2 cores: once both are busy, "
        "concurrency only overlaps round-trip waits (pg_bench.py measured 1.6–4.9×)."
    },
    note=f"{WRITERS} asyncio tasks × {SAVES_PER_WRITER} saves per call, each on its own thread, "
    f"one store with pool_min = pool_max = {WRITERS}",
)
def concurrent_writers(ctx: Context) -> Matchup:
    return Matchup(
        writers_contender(ctx, f"relaystore, {WRITERS} concurrent writers", serialized=False),
        [writers_contender(ctx, LOCKED, serialized=True)],
    )
