"""Adaptive cases: store_run and list_runs of 1,000 runs, and concurrent accumulator updates.

- sqlite: store_run and list_runs against plain sqlite3 (a naive one-SELECT-per-run list that
  decodes each run into the same RunRecord model).
- redis: list_runs against NeMo Relay's own reader over the same keys: ``LRANGE
  {prefix}runs_index:{agent}``, then one ``GET`` per run id, then one RunRecord parse per run
  (also shown unparsed), and the backend's unparsed read against the unparsed N+1 reader.
- sqlite, redis, postgres: 8 writers incrementing a counter inside one accumulators document,
  relaystore's atomic ``update_accumulators`` against NeMo Relay's load-modify-store. Both report
  updates/s and lost updates (increments made − increments found in the document at the end).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis

import relaystore
from benchmarks.harness import REDIS_URL, Contender, Context, Facts, Matchup, Op, Target, case
from benchmarks.payloads import accumulators_doc, run_record
from benchmarks.peers.raw_sqlite import RawSqlite
from relaystore.models.adaptive import AccumulatorState, RunRecord

AGENT = "agent-1"
RUNS = 1000


# --------------------------------------------------------------------------- sqlite: store and list


def relaystore_runs(ctx: Context, prefill: int, timed: str) -> Contender:
    url = ctx.store_url("relaystore")

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        await fill_runs(url, prefill, ctx.fill_options)
        async with relaystore.connect(url) as store:

            async def store_run(i: int) -> None:
                await store.adaptive.store_run(run_record(AGENT, prefill + i))

            async def list_runs(_i: int) -> None:
                assert len(await store.adaptive.list_runs(AGENT)) == prefill

            yield store_run if timed == "store" else list_runs

    return Contender("relaystore", setup)


async def fill_runs(url: str, count: int, options: dict[str, str]) -> None:
    async with relaystore.connect(url, **options) as store:
        for i in range(count):
            await store.adaptive.store_run(run_record(AGENT, i))


def raw_runs(ctx: Context, prefill: int, timed: str, label: str) -> Contender:
    path = ctx.path("raw.db")

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        filler = RawSqlite(path, synchronous="OFF")
        for i in range(prefill):
            filler.insert_run(run_record(AGENT, i))
        filler.close()
        raw = RawSqlite(path)

        async def store_run(i: int) -> None:
            raw.insert_run(run_record(AGENT, prefill + i))

        async def list_runs(_i: int) -> None:
            assert len(raw.list_runs_naively(AGENT)) == prefill

        try:
            yield store_run if timed == "store" else list_runs
        finally:
            raw.close()

    return Contender(label, setup)


@case("adaptive", "store_run", n=1000, quick_n=200, note="a 3-call run record (~0.8 KB JSON), validated")
def store_run(ctx: Context) -> Matchup:
    return Matchup(
        relaystore_runs(ctx, 0, "store"), [raw_runs(ctx, 0, "store", "raw sqlite3 INSERT (WAL, FULL)")]
    )


@case(
    "adaptive",
    f"list_runs of {RUNS:,} runs",
    n=20,
    quick_n=5,
    unit="lists/s",
    note=f"one agent with {RUNS:,} runs; both sides parse them into RunRecord models",
)
def list_runs(ctx: Context) -> Matchup:
    return Matchup(
        relaystore_runs(ctx, RUNS, "list"), [raw_runs(ctx, RUNS, "list", "naive loop: 1 SELECT per run")]
    )


# --------------------------------------------------------------------------- redis: list_runs vs N+1

N_PLUS_1 = "NeMo Relay's N+1 reader, parsed"
N_PLUS_1_RAW = "NeMo Relay's N+1 reader, raw JSON"
LIST_REASON = (
    "Validating 1,000 RunRecords is the same work on both sides and about half of relaystore's call; "
    "the read alone is the JSON-only case below. Lazy or batched parsing would close it."
)


class NPlusOneReader:
    """NeMo Relay's RedisBackend ``list_runs``: LRANGE the index, then one GET per run id, in order."""

    def __init__(self, client: Redis, prefix: str, agent_id: str) -> None:
        self.client = client
        self.index = f"{prefix}runs_index:{agent_id}"
        self.run_key = f"{prefix}runs:{agent_id}:"

    async def texts(self) -> list[bytes]:
        # redis-py types replies as bytes | str; without decode_responses they are bytes.
        ids: list[Any] = await self.client.lrange(self.index, 0, -1)  # type: ignore[misc]
        texts: list[Any] = [await self.client.get(self.run_key + run_id.decode()) for run_id in ids]
        return [t for t in texts if t is not None]  # NeMo Relay skips dangling index entries

    async def runs(self) -> list[RunRecord]:
        return [RunRecord.model_validate_json(t) for t in await self.texts()]


def shared_runs(url: str, count: int) -> Callable[[], Awaitable[None]]:
    """Fill ``url`` with ``count`` runs once, however many contenders ask: they all read the same keys."""
    done = asyncio.Event()
    started = False

    async def ensure() -> None:
        nonlocal started
        if not started:
            started = True
            await fill_runs(url, count, {})
            done.set()
        await done.wait()

    return ensure


def redis_reader(label: str, url: str, ensure: Callable[[], Awaitable[None]], parse: bool) -> Contender:
    prefix = parse_qs(urlsplit(url).query)["prefix"][0]

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        await ensure()
        client = Redis.from_url(REDIS_URL)
        reader = NPlusOneReader(client, prefix, AGENT)
        read = reader.runs if parse else reader.texts

        async def op(_i: int) -> None:
            assert len(await read()) == RUNS

        try:
            yield op
        finally:
            await client.aclose()

    return Contender(label, setup)


def relaystore_reader(label: str, url: str, ensure: Callable[[], Awaitable[None]], parse: bool) -> Contender:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        await ensure()
        async with relaystore.connect(url) as store:

            async def parsed(_i: int) -> None:
                assert len(await store.adaptive.list_runs(AGENT)) == RUNS

            async def unparsed(_i: int) -> None:
                # The backend primitive under list_runs: the ids script + one MGET, raw JSON.
                assert len(await store.adaptive._list_runs(AGENT, None, None)) == RUNS

            yield parsed if parse else unparsed

    return Contender(label, setup)


@case(
    "adaptive",
    f"list_runs of {RUNS:,} runs",
    n=10,
    quick_n=3,
    repeats=5,
    quick_repeats=3,
    unit="lists/s",
    backends=("redis",),
    targets={N_PLUS_1: Target.at_least(5.0)},
    reasons={N_PLUS_1: LIST_REASON},
    note=f"one agent with {RUNS:,} runs (~0.8 KB each) in NeMo Relay's key layout; every contender "
    "reads the same keys; parsed = one RunRecord model per run",
)
def list_runs_redis(ctx: Context) -> Matchup:
    url = ctx.store_url("runs")
    ensure = shared_runs(url, RUNS)
    return Matchup(
        relaystore_reader("relaystore list_runs", url, ensure, parse=True),
        [
            redis_reader(N_PLUS_1, url, ensure, parse=True),
            redis_reader(N_PLUS_1_RAW, url, ensure, parse=False),
        ],
    )


@case(
    "adaptive",
    f"list_runs of {RUNS:,} runs, JSON only",
    n=20,
    quick_n=5,
    repeats=5,
    quick_repeats=3,
    unit="lists/s",
    backends=("redis",),
    note="no parsing on either side: the backend's read (1 script for the ids + 1 MGET) against "
    "LRANGE + 1,000 GETs; this is what the Redis layout alone buys",
)
def list_runs_redis_raw(ctx: Context) -> Matchup:
    url = ctx.store_url("runs")
    ensure = shared_runs(url, RUNS)
    return Matchup(
        relaystore_reader("relaystore backend read, unparsed", url, ensure, parse=False),
        [redis_reader(N_PLUS_1_RAW, url, ensure, parse=False)],
    )


# --------------------------------------------------------------------------- concurrent updates

WRITERS = 8
UPDATES_PER_WRITER = 4  # per timed call: one call is a burst of 8 × 4 concurrent increments
NAIVE = "naive load → modify → store"
COUNTER = 'nodes[""].all_remaining_calls.count'


def bump(state: AccumulatorState | None) -> AccumulatorState:
    """Add one to the root's ``all_remaining_calls.count``. ``state`` is freshly decoded on every
    call (and every retry), so changing it in place keeps the function pure."""
    assert state is not None
    state.nodes[""].all_remaining_calls.count += 1
    return state


async def relaystore_update(store: relaystore.Store) -> None:
    await store.adaptive.update_accumulators(AGENT, bump)


async def naive_update(store: relaystore.Store) -> None:
    """NeMo Relay's learners: read, change, write back, with nothing between two writers."""
    await store.adaptive.store_accumulators(AGENT, bump(await store.adaptive.load_accumulators(AGENT)))


def updaters(ctx: Context, label: str, update: Callable[[relaystore.Store], Awaitable[None]]) -> Contender:
    """8 writers, each with its own store (connection), incrementing one counter concurrently."""
    url = ctx.store_url(label)
    facts: dict[str, Any] = {}

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        seed = AccumulatorState.model_validate_json(accumulators_doc())
        start = seed.nodes[""].all_remaining_calls.count
        async with relaystore.connect(url) as first:
            await first.adaptive.store_accumulators(AGENT, seed)
        stores = [await relaystore.connect(url) for _ in range(WRITERS)]
        made = 0

        async def writer(store: relaystore.Store) -> None:
            nonlocal made
            for _ in range(UPDATES_PER_WRITER):
                await update(store)
                made += 1

        async def burst(_i: int) -> None:
            await asyncio.gather(*(writer(s) for s in stores))

        try:
            yield burst
            final = await stores[0].adaptive.load_accumulators(AGENT)
            assert final is not None
            found = final.nodes[""].all_remaining_calls.count - start
            facts.update({"increments made": made, "found": found, "lost updates": made - found})
        finally:
            for store in stores:
                await store.close()

    return Contender(label, setup, facts)


def no_loss_against_counted_loss(facts: Facts) -> tuple[bool, str]:
    """relaystore must lose nothing; the naive updater's loss must be measured and non-zero."""
    ours, theirs = facts["relaystore update_accumulators"], facts[NAIVE]
    met = ours.get("lost updates") == 0 and theirs.get("lost updates", 0) > 0
    return met, (
        f"lost updates: relaystore {ours.get('lost updates')} of {ours.get('increments made')}, "
        f"naive {theirs.get('lost updates')} of {theirs.get('increments made')}"
    )


@case(
    "adaptive",
    f"update_accumulators, {WRITERS} concurrent writers",
    n=10,
    quick_n=2,
    repeats=5,
    quick_repeats=3,
    unit="updates/s",
    backends=("sqlite", "redis", "postgres"),
    quick_backends=("sqlite", "redis"),  # the 2-minute budget; postgres runs in the full run
    ops_per_call=WRITERS * UPDATES_PER_WRITER,
    check=no_loss_against_counted_loss,
    reasons={
        "check": "the naive updater happened to lose nothing in this run: rerun with more writers "
        "or a longer burst"
    },
    note=f"{WRITERS} asyncio tasks, each with its own store (connection), {UPDATES_PER_WRITER} "
    f"increments of `{COUNTER}` per call in a ~39 KB accumulators document; the naive "
    "updater's updates/s include the increments it overwrote",
)
def concurrent_updates(ctx: Context) -> Matchup:
    return Matchup(
        updaters(ctx, "relaystore update_accumulators", relaystore_update),
        [updaters(ctx, NAIVE, naive_update)],
    )
