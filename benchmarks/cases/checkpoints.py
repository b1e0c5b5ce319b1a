"""Checkpoint cases: save, load_latest, list(limit=10), count and list_threads on every durable
backend, against peers.

Every contender starts from the same Python state and encodes it with msgpack (see payloads.py).
Peers per backend: sqlite has raw sqlite3 and LangGraph's AsyncSqliteSaver; postgres has one raw
psycopg autocommit statement per call and LangGraph's AsyncPostgresSaver; redis has raw redis-py
SET/GET floors for save and load_latest; redis and file are also shown beside relaystore on sqlite
(no target, a reference point). The savers have no count or list-threads call: their users read
every checkpoint through ``alist`` and count, or collect thread ids; those cases run at small N.
Prefills run with durability off (``ctx.fill_options``) to keep setup short; the timed part always
runs at the backend's defaults. A concurrency case pits 8 writers through one PostgreSQL store
against the same writers serialized behind one ``asyncio.Lock``, as AsyncPostgresSaver runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar
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
    drop_redis_prefix,
    unique_name,
)
from benchmarks.payloads import channel_values, decode_state, encode_state, thread_of
from benchmarks.peers.langgraph_savers import SaverDriver
from benchmarks.peers.raw_postgres import RawPostgres
from benchmarks.peers.raw_redis import PipelinedSets, RawRedis
from benchmarks.peers.raw_sqlite import RawSqlite
from relaystore.models.checkpoints import CheckpointMetadata

SAVER = "AsyncSqliteSaver"
PG_SAVER = "AsyncPostgresSaver"
RAW = "raw sqlite3 (WAL, FULL)"
PG_RAW = "raw psycopg (autocommit, 1 statement)"
REDIS_SET = "raw redis-py SET"
REDIS_PIPELINE = "raw redis-py SET, pipeline of 16"
REDIS_GET = "raw redis-py GET"
ON_SQLITE = "relaystore on sqlite"
THREADS = 20  # saves and loads are spread over this many threads, as in the anchors' bench
DURABLE = ("sqlite", "postgres", "redis", "file")
QUICK_200KB = ("sqlite",)  # --quick keeps its 2 minutes: the 2 KB cases cover the other backends

SAVE_REASONS = {
    RAW: "Both commit inline with one fsync; relaystore also checks ids, copies and serializes a "
    "CheckpointMetadata model, and keeps a unique (thread, id) index and AUTOINCREMENT seq the raw "
    "table lacks (`python -m benchmarks --profile sqlite` shows where the time goes).",
    SAVER: "Both do one durable SQLite commit per save; what relaystore saves is the hop to a thread "
    "(its small writes commit inline), so the margin is that hop against the fsync.",
    PG_SAVER: "Both are bound by one durable commit on a 2-core box shared with the server: relaystore's "
    "save is already one round trip (advisory lock and INSERT in one statement, for per-thread order); "
    "what is left is the commit itself, so 1.5× at equal durability needs group commit.",
}


class Side(Protocol):
    """What a contender does to checkpoints; every method encodes or decodes the state."""

    async def put(self, thread_id: str, step: int) -> None: ...

    async def get_latest(self, thread_id: str) -> object: ...

    async def list_latest(self, thread_id: str, limit: int) -> object: ...


S = TypeVar("S")
Opener = Callable[[], AbstractAsyncContextManager[S]]
"""Prepares a side (untimed, prefill included) and yields it."""

OpenSide = Opener[Side]


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

    async def count(self, thread_id: str) -> int:
        return await self.store.checkpoints.count(thread_id)

    async def thread_ids(self) -> list[str]:
        """Every thread, following cursors (the default page has no limit: one call)."""
        page = await self.store.checkpoints.list_threads()
        found = list(page)
        while page.next_cursor is not None:
            page = await self.store.checkpoints.list_threads(cursor=page.next_cursor)
            found += page
        return found


def relaystore_side(
    url: str, size: str, prefill: int, threads: int, fill: dict[str, str]
) -> Opener[RelaystoreSide]:
    """A relaystore store at ``url`` holding ``prefill`` checkpoints of ``size`` on ``threads`` threads."""

    @asynccontextmanager
    async def open_side() -> AsyncIterator[RelaystoreSide]:
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


def on_sqlite_side(ctx: Context, size: str, prefill: int, threads: int) -> Opener[RelaystoreSide]:
    """relaystore on a sqlite file in the case's temp dir: the reference for other backends."""
    url = f"sqlite:///{ctx.path('reference.db')}"
    return relaystore_side(url, size, prefill, threads, {"synchronous": "off"})


def on_sqlite_contender(ctx: Context, size: str, prefill: int, threads: int, op: str) -> Contender:
    return contender(ON_SQLITE, on_sqlite_side(ctx, size, prefill, threads), op, threads)


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
        raise NotImplementedError("raw peers do not list checkpoints")

    async def count(self, thread_id: str) -> int:
        found = self.raw.count_checkpoints(thread_id)
        return int(await found if isinstance(found, Awaitable) else found)

    async def thread_ids(self) -> list[str]:
        found = self.raw.thread_ids()
        return list(await found if isinstance(found, Awaitable) else found)


def raw_sqlite_side(path: Path, size: str, prefill: int, threads: int) -> Opener[RawSide]:
    @asynccontextmanager
    async def open_side() -> AsyncIterator[RawSide]:
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


def raw_postgres_side(ctx: Context, size: str, prefill: int, threads: int) -> Opener[RawSide]:
    """Prefilled by COPY + ANALYZE, as relaystore's PostgreSQL store is (``bulk_fill_postgres``)."""
    schema = private_schema(ctx, "raw")

    @asynccontextmanager
    async def open_side() -> AsyncIterator[RawSide]:
        async with RawPostgres.open(schema) as raw:
            values = channel_values(size)
            if prefill:
                await raw.copy_checkpoints(raw_rows(values, prefill, threads))
            yield RawSide(raw, values)

    return open_side


def raw_rows(values: dict[str, Any], count: int, threads: int) -> Iterator[tuple[str, dict[str, Any], bytes]]:
    """``(thread_id, metadata, state)`` of ``count`` checkpoints, as ``RawSide.put`` makes them."""
    for i in range(count):
        thread = thread_of(i, threads)
        yield thread, CheckpointMetadata.new(thread, step=i).model_dump(), encode_state(values, i)


class RawRedisSide:
    """raw redis-py: one SET of the encoded state per save (or one pipelined SET), one GET per load."""

    def __init__(self, raw: RawRedis, values: dict[str, Any], pipeline: PipelinedSets | None) -> None:
        self.raw = raw
        self.values = values
        self.pipeline = pipeline

    async def put(self, thread_id: str, step: int) -> None:
        state = encode_state(self.values, step)
        if self.pipeline is None:
            await self.raw.set_state(thread_id, state)
        else:  # step is the op index (see timed_op): every 16th call sends the batch
            await self.pipeline.add(step, thread_id, state)

    async def get_latest(self, thread_id: str) -> object:
        found = await self.raw.get_state(thread_id)
        assert found is not None
        return decode_state(found)

    async def list_latest(self, thread_id: str, limit: int) -> object:
        raise NotImplementedError("raw peers do not list checkpoints")


def raw_redis_side(ctx: Context, size: str, prefill: int, threads: int, pipelined: bool) -> OpenSide:
    """A fresh key prefix on the shared server, deleted after the case."""
    prefix = unique_name("raw redis", ":") + ":"
    ctx.defer(lambda: drop_redis_prefix(prefix))

    @asynccontextmanager
    async def open_side() -> AsyncIterator[Side]:
        async with RawRedis.open(prefix) as raw:
            values = channel_values(size)
            for i in range(prefill):
                await raw.set_state(thread_of(i, threads), encode_state(values, i))
            pipeline = PipelinedSets(raw) if pipelined else None
            yield RawRedisSide(raw, values, pipeline)
            if pipeline is not None:
                await pipeline.flush()

    return open_side


def private_schema(ctx: Context, label: str) -> str:
    """A schema name for a peer's own tables, dropped after the case."""
    schema = unique_name(label)
    ctx.defer(lambda: drop_pg_schema(schema))
    return schema


def sqlite_saver_side(path: Path, size: str, prefill: int, threads: int) -> Opener[SaverDriver]:
    """LangGraph's AsyncSqliteSaver on its own file."""

    @asynccontextmanager
    async def open_side() -> AsyncIterator[SaverDriver]:
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await saver.setup()
            driver = SaverDriver(saver, channel_values(size))
            await saver.conn.execute("PRAGMA synchronous = OFF")
            for i in range(prefill):
                await driver.put(thread_of(i, threads), i)
            await saver.conn.execute("PRAGMA synchronous = FULL")  # the saver's own default
            yield driver

    return open_side


def postgres_saver_side(ctx: Context, size: str, prefill: int, threads: int) -> Opener[SaverDriver]:
    """LangGraph's AsyncPostgresSaver in a fresh schema: ``setup()`` creates its tables in the
    first schema of ``search_path``, which the conninfo's ``options`` sets. The prefill goes
    through a second saver with ``synchronous_commit=off`` (durability off, as for relaystore),
    then ANALYZE."""
    schema = private_schema(ctx, "saver")
    conninfo = f"{PG_URL}?options=-csearch_path%3D{schema}"

    @asynccontextmanager
    async def open_side() -> AsyncIterator[SaverDriver]:
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
            await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        values = channel_values(size)
        if prefill:
            async with AsyncPostgresSaver.from_conn_string(
                f"{conninfo}%20-csynchronous_commit%3Doff"
            ) as filler:
                await filler.setup()
                driver = SaverDriver(filler, values)
                for i in range(prefill):
                    await driver.put(thread_of(i, threads), i)
            # Fresh statistics, as relaystore's and the raw peer's tables get after their COPY
            # (without them, alist on a 1,000-checkpoint thread took 0.55 s instead of 0.25 s).
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute("ANALYZE checkpoints, checkpoint_blobs, checkpoint_writes")
        async with AsyncPostgresSaver.from_conn_string(conninfo) as saver:
            await saver.setup()
            yield SaverDriver(saver, values)

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
    if ctx.backend == "redis":
        return [*raw_redis_peers(ctx, size, prefill, op), *reference]
    return reference


def raw_redis_peers(ctx: Context, size: str, prefill: int, op: str) -> list[Contender]:
    """The floors of a redis save (plain and pipelined SET) or load_latest (GET)."""
    if op == "save":
        return [
            contender(REDIS_SET, raw_redis_side(ctx, size, 0, THREADS, pipelined=False), op, THREADS),
            contender(REDIS_PIPELINE, raw_redis_side(ctx, size, 0, THREADS, pipelined=True), op, THREADS),
        ]
    return [contender(REDIS_GET, raw_redis_side(ctx, size, prefill, THREADS, pipelined=False), op, THREADS)]


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
        note=f"one save = encode the {size} state + one durable write; {THREADS} threads round-robin "
        "(redis floors: one SET of the state per save, or 16 SETs per pipeline round trip)",
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
        n_scale={"postgres": 0.3, "redis": 0.5} if size == "200 KB" else {"postgres": 0.5},
        targets={SAVER: Target.at_least(1.0), PG_SAVER: Target.at_least(1.0)},
        reasons={
            PG_SAVER: "Both read one row over one round trip; at 200 KB the transfer and decoding of "
            "the state dominate and the two are within noise of each other."
        },
        note=f"latest of one of {THREADS} threads with 5 checkpoints each, state decoded "
        "(redis floor: one GET of the thread's state)",
    )
    def load(ctx: Context) -> Matchup:
        subject = relaystore_contender(ctx, "relaystore", size, prefill, THREADS, "load")
        return Matchup(subject, peers(ctx, size, prefill, "load"))


_load_case("2 KB", n=4000, quick_n=1000)
_load_case("200 KB", n=1500, quick_n=400)


# --------------------------------------------------------------------------- scaling with thread length


def _long(ctx: Context) -> int:
    """Checkpoints on the long thread: 10,000 (quick: 2,000)."""
    return 2_000 if ctx.quick else 10_000


SHORT = "relaystore, 100 checkpoints"
MID = "relaystore, 1,000 checkpoints"  # the middle length; no target, it shows the curve
MID_BACKENDS = ("sqlite", "postgres", "redis", "file")
SCALING_N = {"file": 0.5, "postgres": 0.5, "redis": 0.5}
SCALING_QUICK = ("sqlite", "postgres", "redis")  # file's 2×10,000 saves of prefill cost ~25 s
SCALING_REASONS = {
    f"{SHORT} [postgres]": "The server's work is one index descent either way (EXPLAIN ANALYZE in "
    "`python -m benchmarks --profile postgres`: 0.04–0.07 ms); the call is pool round trips, and two "
    "pools on a busy shared 2-core box differ by more than the 30% band (see the min–max).",
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
    note="newest_first=True on one thread of 2 KB checkpoints: 10,000 (quick: 2,000) vs 100",
)
def list_scaling(ctx: Context) -> Matchup:
    long = _long(ctx)
    others = [relaystore_contender(ctx, SHORT, "2 KB", 100, 1, "list"), *_mid(ctx, "list")]
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
    note="one thread of 2 KB checkpoints: 10,000 (quick: 2,000) vs 100, state decoded",
)
def load_scaling(ctx: Context) -> Matchup:
    long = _long(ctx)
    subject = relaystore_contender(ctx, f"relaystore, {long:,} checkpoints", "2 KB", long, 1, "load")
    return Matchup(subject, [relaystore_contender(ctx, SHORT, "2 KB", 100, 1, "load"), *_mid(ctx, "load")])


def _mid(ctx: Context, op: str) -> list[Contender]:
    """The 1,000-checkpoint thread, so 100 / 1,000 / 10,000 (quick: 2,000) all appear."""
    if ctx.backend not in MID_BACKENDS:
        return []
    return [relaystore_contender(ctx, MID, "2 KB", 1_000, 1, op)]


# --------------------------------------------------------------------------- count and list_threads

COUNTED = 1_000  # checkpoints on the one counted thread
COUNTED_THREAD = thread_of(0, 1)
LISTED = (200, 5)  # list_threads: threads × checkpoints per thread
LISTED_IDS = sorted(thread_of(i, LISTED[0]) for i in range(LISTED[0]))
QUERY_QUICK = ("sqlite",)
SAVERS_N = {"postgres": 0.5}  # AsyncPostgresSaver.alist of 1,000 checkpoints takes 0.25–1 s


def query_contender(
    label: str, open_side: Opener[S], query: Callable[[S], Awaitable[object]], expected: object
) -> Contender:
    """Every timed call runs the same read-only ``query`` on the prepared side; one untimed call
    first checks that the side answers ``expected``, so no contender is timed on a wrong answer."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with open_side() as side:
            answer = await query(side)
            if answer != expected:
                raise AssertionError(f"{label} answered {answer!r:.200}, expected {expected!r:.200}")
            yield lambda _i: query(side)

    return Contender(label, setup)


async def count_via_alist(driver: SaverDriver, thread_id: str) -> int:
    """A saver has no count: its user counts what ``alist`` yields, each tuple fully decoded
    (the API has no keys-only mode)."""
    config: Any = {"configurable": {"thread_id": thread_id}}
    return sum([1 async for _ in driver.saver.alist(config)])


async def threads_via_alist(driver: SaverDriver) -> list[str]:
    """A saver has no list-threads call: ``alist(None)`` reads every checkpoint of every thread
    (decoded), and its user collects and sorts the distinct thread ids."""
    found = {t.config["configurable"]["thread_id"] async for t in driver.saver.alist(None)}
    return sorted(found)


async def count_thread(side: RelaystoreSide | RawSide) -> object:
    return await side.count(COUNTED_THREAD)


async def all_threads(side: RelaystoreSide | RawSide) -> object:
    return await side.thread_ids()


Query = Callable[[RelaystoreSide | RawSide], Awaitable[object]]


def filled(ctx: Context, label: str, prefill: int, threads: int) -> Opener[RelaystoreSide]:
    return relaystore_side(ctx.store_url(label), "2 KB", prefill, threads, ctx.fill_options)


def query_matchup(ctx: Context, prefill: int, threads: int, query: Query, expected: object) -> Matchup:
    """relaystore against raw SQL on sqlite and postgres, and relaystore on sqlite elsewhere."""
    subject = query_contender("relaystore", filled(ctx, "relaystore", prefill, threads), query, expected)
    if ctx.backend == "sqlite":
        raw = raw_sqlite_side(ctx.path("raw.db"), "2 KB", prefill, threads)
        return Matchup(subject, [query_contender(RAW, raw, query, expected)])
    reference = query_contender(ON_SQLITE, on_sqlite_side(ctx, "2 KB", prefill, threads), query, expected)
    if ctx.backend == "postgres":
        raw_pg = raw_postgres_side(ctx, "2 KB", prefill, threads)
        return Matchup(subject, [query_contender(PG_RAW, raw_pg, query, expected), reference])
    return Matchup(subject, [reference])


def saver_matchup(
    ctx: Context,
    prefill: int,
    threads: int,
    query: Query,
    saver_query: Callable[[SaverDriver], Awaitable[object]],
    expected: object,
) -> Matchup:
    """relaystore against what a user of the backend's LangGraph saver has to do instead."""
    subject = query_contender("relaystore", filled(ctx, "relaystore", prefill, threads), query, expected)
    label, saver = saver_side(ctx, prefill, threads)
    return Matchup(subject, [query_contender(label, saver, saver_query, expected)])


def saver_side(ctx: Context, prefill: int, threads: int) -> tuple[str, Opener[SaverDriver]]:
    if ctx.backend == "sqlite":
        return SAVER, sqlite_saver_side(ctx.path("saver.db"), "2 KB", prefill, threads)
    return PG_SAVER, postgres_saver_side(ctx, "2 KB", prefill, threads)


VS_SAVER: dict[str, Any] = {
    "n": 4,
    "quick_n": 2,
    "repeats": 5,
    "quick_repeats": 3,
    "backends": ("sqlite", "postgres"),
    "quick_backends": QUERY_QUICK,
    "n_scale": SAVERS_N,
}
"""Cases against a saver's alist, which takes 0.1–0.5 s per call: few calls, their own case."""


@case(
    "checkpoints",
    f"count, {COUNTED:,} checkpoints",
    n=2000,
    quick_n=300,
    backends=DURABLE,
    quick_backends=QUERY_QUICK,
    n_scale={"file": 0.03, "postgres": 0.25, "redis": 0.5},  # file: ~300 counts/s
    note=f"count(thread_id) of one thread of {COUNTED:,} 2 KB checkpoints; the raw peers run "
    "SELECT COUNT(*) … WHERE thread_id = ?",
)
def count_case(ctx: Context) -> Matchup:
    return query_matchup(ctx, COUNTED, 1, count_thread, COUNTED)


@case(
    "checkpoints",
    f"count, {COUNTED:,} checkpoints, vs saver alist",
    **VS_SAVER,
    note=f"count of one thread of {COUNTED:,} 2 KB checkpoints; the saver has no count, so its "
    "user counts the tuples of alist(thread config), each one read and decoded with its pending writes",
)
def count_vs_saver(ctx: Context) -> Matchup:
    return saver_matchup(ctx, COUNTED, 1, count_thread, lambda d: count_via_alist(d, COUNTED_THREAD), COUNTED)


@case(
    "checkpoints",
    f"list_threads, {LISTED[0]} threads",
    n=1000,
    quick_n=200,
    backends=DURABLE,
    quick_backends=QUERY_QUICK,
    n_scale={"file": 0.02, "postgres": 0.15, "redis": 0.15},  # file ~120/s, postgres and redis ~600/s
    note=f"list_threads() (one page, no limit) over {LISTED[0]} threads × {LISTED[1]} 2 KB "
    "checkpoints, sorted ids; raw peers run SELECT DISTINCT thread_id … ORDER BY thread_id",
)
def list_threads_case(ctx: Context) -> Matchup:
    threads, per_thread = LISTED
    return query_matchup(ctx, threads * per_thread, threads, all_threads, LISTED_IDS)


@case(
    "checkpoints",
    f"list_threads, {LISTED[0]} threads, vs saver alist(None)",
    **VS_SAVER,
    note=f"all thread ids of {LISTED[0]} threads × {LISTED[1]} 2 KB checkpoints; the saver has no "
    "list-threads call, so its user reads alist(None) (every checkpoint, decoded) and keeps the "
    "sorted distinct thread ids",
)
def list_threads_vs_saver(ctx: Context) -> Matchup:
    threads, per_thread = LISTED
    return saver_matchup(ctx, threads * per_thread, threads, all_threads, threads_via_alist, LISTED_IDS)


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
        "concurrency only overlaps round-trip waits (two earlier runs measured 1.6–4.9×)."
    },
    note=f"{WRITERS} asyncio tasks × {SAVES_PER_WRITER} saves per call, each on its own thread, "
    f"one store with pool_min = pool_max = {WRITERS}",
)
def concurrent_writers(ctx: Context) -> Matchup:
    return Matchup(
        writers_contender(ctx, f"relaystore, {WRITERS} concurrent writers", serialized=False),
        [writers_contender(ctx, LOCKED, serialized=True)],
    )
