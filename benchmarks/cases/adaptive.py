"""Adaptive cases: store_run and list_runs of 1,000 runs, against plain sqlite3.

The list peer is deliberately naive (one SELECT per run), as NeMo Relay's key-per-run layouts
read; a smarter peer can replace it later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import relaystore
from benchmarks.harness import Contender, Context, Matchup, Op, case
from benchmarks.payloads import run_record
from benchmarks.peers.raw_sqlite import RawSqlite

AGENT = "agent-1"
RUNS = 1000


def relaystore_runs(ctx: Context, prefill: int, timed: str) -> Contender:
    url = ctx.store_url("relaystore")

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with relaystore.connect(url, synchronous="off") as store:
            for i in range(prefill):
                await store.adaptive.store_run(run_record(AGENT, i))
        async with relaystore.connect(url) as store:

            async def store_run(i: int) -> None:
                await store.adaptive.store_run(run_record(AGENT, prefill + i))

            async def list_runs(_i: int) -> None:
                assert len(await store.adaptive.list_runs(AGENT)) == prefill

            yield store_run if timed == "store" else list_runs

    return Contender("relaystore", setup)


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
    note=f"one agent with {RUNS:,} runs; relaystore parses them into RunRecord models",
)
def list_runs(ctx: Context) -> Matchup:
    return Matchup(
        relaystore_runs(ctx, RUNS, "list"), [raw_runs(ctx, RUNS, "list", "naive loop: 1 SELECT per run")]
    )
