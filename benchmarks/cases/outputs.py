"""Output cases: append and get, against mlua-swarm's SQLite layout rebuilt from its spec.

The peer keeps mlua-swarm's durability (rollback journal, default synchronous) and its
``MAX(seq) + 1`` numbering, which scans the table, so its appends slow down as the table grows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import relaystore
from benchmarks.harness import Contender, Context, Matchup, Op, case
from benchmarks.payloads import output_event
from benchmarks.peers.mlua_sqlite import MluaSqliteOutputs

MLUA = "mlua-swarm SQLite layout"
PREFILL = 500  # outputs stored before timing get


def _args(i: int, refs: list[str]) -> tuple[str, int, str, dict[str, object], list[str]]:
    """Arguments of the i-th append: 10 tasks, 5 producers, the two previous outputs as parents."""
    return f"task-{i % 10}", 0, f"agent-{i % 5}", output_event(i), refs[-2:]


def relaystore_outputs(ctx: Context, prefill: int, timed: str) -> Contender:
    url = ctx.store_url("relaystore")

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with relaystore.connect(url) as store:
            refs: list[str] = []
            for i in range(prefill):
                refs.append(await store.outputs.append(*_args(i, refs)))

            async def append(i: int) -> None:
                refs.append(await store.outputs.append(*_args(i, refs)))

            async def get(i: int) -> None:
                await store.outputs.get(refs[(i * 7919) % len(refs)])

            yield append if timed == "append" else get

    return Contender("relaystore", setup)


def mlua_outputs(ctx: Context, prefill: int, timed: str) -> Contender:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        store = MluaSqliteOutputs(ctx.path("mlua.db"))
        await store.open()
        try:
            refs: list[str] = []
            for i in range(prefill):
                refs.append(await store.append(*_args(i, refs)))

            async def append(i: int) -> None:
                refs.append(await store.append(*_args(i, refs)))

            async def get(i: int) -> None:
                await store.get(refs[(i * 7919) % len(refs)])

            yield append if timed == "append" else get
        finally:
            await store.close()

    return Contender(MLUA, setup)


@case(
    "outputs",
    "append ~1 KB artifact",
    n=1000,
    quick_n=200,
    note="10 tasks, 5 producers, 2 parent refs each; the peer's table grows with the run",
)
def append(ctx: Context) -> Matchup:
    return Matchup(relaystore_outputs(ctx, 0, "append"), [mlua_outputs(ctx, 0, "append")])


@case("outputs", "get by ref", n=3000, quick_n=1000, note=f"random refs among {PREFILL} stored outputs")
def get(ctx: Context) -> Matchup:
    return Matchup(relaystore_outputs(ctx, PREFILL, "get"), [mlua_outputs(ctx, PREFILL, "get")])
