"""Output cases: append, get and the read queries, against mlua-swarm's SQLite layout rebuilt from its spec.

The peer keeps mlua-swarm's durability (rollback journal, default synchronous) and its
``MAX(seq) + 1`` numbering, which scans the table, so its appends slow down as the table grows.

The read cases (latest in run, list for attempt, ancestors) prefill both stores with the same
outputs (same tasks, attempts, producers, events and parent links; each store makes its own refs),
relaystore with durability off and the peer in one transaction, since neither matters for reads.
Both sides return validated, typed records: relaystore its OutputRecord models, the peer
mlua-swarm's OutputRecord shape with the same event union and ref type (as serde decodes it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import relaystore
from benchmarks.harness import Contender, Context, Matchup, Op, case
from benchmarks.payloads import output_event
from benchmarks.peers.mlua_sqlite import MluaSqliteOutputs, NewOutput, ancestors_by_get, new_ref

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


# --------------------------------------------------------------------------- read queries


@dataclass(frozen=True)
class Spec:
    """One prefilled output; ``parents`` index earlier specs, so each store links its own refs."""

    task_id: str
    attempt: int
    producer: str
    parents: tuple[int, ...]


Query = Callable[[int], Awaitable[Any]]
"""A timed read: ``query(i)`` runs operation ``i``. Built from a store and its refs in spec order."""


def run_specs(runs: int, per_run: int, producers: int) -> list[Spec]:
    """``runs * per_run`` outputs, runs interleaved (as concurrent runs share a store), each
    output citing the two before it in its run; tasks have two attempts."""
    specs: list[Spec] = []
    for k in range(per_run):
        for run in range(runs):
            index = len(specs)
            parents = tuple(index - runs * back for back in (1, 2) if k >= back)
            specs.append(Spec(f"task-{run // 2}", run % 2, f"agent-{k % producers}", parents))
    return specs


def chain_specs(chains: int, depth: int) -> list[Spec]:
    """``chains`` chains of ``depth + 1`` outputs: each names the previous and the chain's root
    (a brief every step cites), so the tip has ``depth`` ancestors and the root is reached
    along many paths: a DAG, not a list."""
    specs: list[Spec] = []
    for chain in range(chains):
        root = len(specs)
        specs.append(Spec(f"task-{chain}", 0, "planner", ()))
        for step in range(1, depth + 1):
            index = len(specs)
            parents = (index - 1,) if step == 1 else (index - 1, root)
            specs.append(Spec(f"task-{chain}", 0, f"agent-{step % 5}", parents))
    return specs


def _append_args(specs: Sequence[Spec], i: int, refs: Sequence[str]) -> NewOutput:
    spec = specs[i]
    return spec.task_id, spec.attempt, spec.producer, output_event(i), [refs[p] for p in spec.parents]


def relaystore_reads(
    ctx: Context, specs: Sequence[Spec], query: Callable[[relaystore.Store, list[str]], Query]
) -> Contender:
    url = ctx.store_url("relaystore")

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        refs: list[str] = []
        async with relaystore.connect(url, **ctx.fill_options) as store:
            for i in range(len(specs)):
                refs.append(await store.outputs.append(*_append_args(specs, i, refs)))
        async with relaystore.connect(url) as store:
            yield query(store, refs)

    return Contender("relaystore", setup)


def mlua_reads(
    ctx: Context,
    specs: Sequence[Spec],
    query: Callable[[MluaSqliteOutputs, list[str]], Query],
    label: str = MLUA,
) -> Contender:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        store = MluaSqliteOutputs(ctx.path("".join(c if c.isalnum() else "-" for c in label) + ".db"))
        await store.open()
        try:
            refs = [new_ref() for _ in specs]
            await store.fill([(ref, _append_args(specs, i, refs)) for i, ref in enumerate(refs)])
            yield query(store, refs)
        finally:
            await store.close()

    return Contender(label, setup)


def expect(count: int, found: Sequence[object], what: str) -> None:
    """Fail the case rather than time a query that returns the wrong number of records."""
    if len(found) != count:
        raise AssertionError(f"{what} returned {len(found)} records, expected {count}")


# get_latest_by_name_in_run: 40 runs (20 tasks x 2 attempts), 10 producers, 8 outputs per
# producer per run; the query's (run, producer) pair rotates so no answer is reused.
LATEST_RUNS, LATEST_PER_RUN, LATEST_PRODUCERS = 40, 80, 10


def _latest_run_producer(i: int) -> tuple[str, int, str]:
    run = (i * 7) % LATEST_RUNS
    return f"task-{run // 2}", run % 2, f"agent-{i % LATEST_PRODUCERS}"


@case(
    "outputs",
    "get_latest_by_name_in_run",
    n=3000,
    quick_n=500,
    note=f"newest output of one producer in one (task, attempt); {LATEST_RUNS * LATEST_PER_RUN:,} stored"
    f" over {LATEST_RUNS} runs and {LATEST_PRODUCERS} producers",
)
def latest_in_run(ctx: Context) -> Matchup:
    specs = run_specs(LATEST_RUNS, LATEST_PER_RUN, LATEST_PRODUCERS)

    def relaystore_query(store: relaystore.Store, _refs: list[str]) -> Query:
        return lambda i: store.outputs.get_latest_by_name_in_run(*_latest_run_producer(i))

    def mlua_query(store: MluaSqliteOutputs, _refs: list[str]) -> Query:
        return lambda i: store.get_latest_by_name_in_run(*_latest_run_producer(i))

    return Matchup(relaystore_reads(ctx, specs, relaystore_query), [mlua_reads(ctx, specs, mlua_query)])


# list_for_attempt: 4 runs of 500 outputs each, interleaved in the table.
LIST_RUNS, LIST_PER_RUN = 4, 500


@case(
    "outputs",
    f"list_for_attempt ({LIST_PER_RUN} per attempt)",
    n=60,
    quick_n=10,
    note=f"all {LIST_PER_RUN} records of one (task, attempt), decoded, in store order;"
    f" {LIST_RUNS} such runs stored interleaved",
)
def list_for_attempt(ctx: Context) -> Matchup:
    specs = run_specs(LIST_RUNS, LIST_PER_RUN, 5)

    def relaystore_query(store: relaystore.Store, _refs: list[str]) -> Query:
        async def query(i: int) -> None:
            run = i % LIST_RUNS  # limit=None (the default) returns the whole attempt in one page
            page = await store.outputs.list_for_attempt(f"task-{run // 2}", run % 2, limit=None)
            expect(LIST_PER_RUN, page, "list_for_attempt")
            assert page.next_cursor is None

        return query

    def mlua_query(store: MluaSqliteOutputs, _refs: list[str]) -> Query:
        async def query(i: int) -> None:
            run = i % LIST_RUNS
            expect(LIST_PER_RUN, await store.list_for_attempt(f"task-{run // 2}", run % 2), "peer list")

        return query

    return Matchup(relaystore_reads(ctx, specs, relaystore_query), [mlua_reads(ctx, specs, mlua_query)])


# ancestors: 20 chains of 51 outputs; the tip of a rotating chain is the start.
CHAINS, DEPTH = 20, 50


def _tip(refs: list[str], i: int) -> str:
    return refs[(i % CHAINS) * (DEPTH + 1) + DEPTH]


@case(
    "outputs",
    f"ancestors at depth {DEPTH}",
    n=200,
    quick_n=30,
    note=f"all {DEPTH} ancestors of a chain's tip; each output names the previous one and the"
    " chain's root (a DAG). mlua-swarm has no lineage query: its peer is a BFS of one get per"
    " record; the CTE peer is not in mlua-swarm",
)
def ancestors(ctx: Context) -> Matchup:
    specs = chain_specs(CHAINS, DEPTH)

    def relaystore_query(store: relaystore.Store, refs: list[str]) -> Query:
        async def query(i: int) -> None:
            expect(DEPTH, await store.outputs.ancestors(_tip(refs, i)), "ancestors")

        return query

    def by_get(store: MluaSqliteOutputs, refs: list[str]) -> Query:
        async def query(i: int) -> None:
            expect(DEPTH, await ancestors_by_get(store, _tip(refs, i)), "peer BFS")

        return query

    def by_cte(store: MluaSqliteOutputs, refs: list[str]) -> Query:
        async def query(i: int) -> None:
            expect(DEPTH, await store.ancestors_cte(_tip(refs, i)), "peer CTE")

        return query

    return Matchup(
        relaystore_reads(ctx, specs, relaystore_query),
        [
            mlua_reads(ctx, specs, by_get, f"{MLUA}, BFS of gets"),
            mlua_reads(ctx, specs, by_cte, f"{MLUA} + recursive CTE (not in mlua-swarm)"),
        ],
    )
