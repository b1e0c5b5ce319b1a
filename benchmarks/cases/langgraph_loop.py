"""LangGraph agent loop, end to end: a real ``StateGraph`` on each saver, timed as a whole.

The graph is an agent loop without an LLM: a ``think`` node answers with an assistant message
carrying a tool call, a ``tool`` node answers with the tool's result, :data:`ROUNDS` times, then
``think`` gives a final answer. The contents are fixed, realistic-sized texts (~0.6 KB per
assistant message, ~1.5 KB per tool result), as LangChain messages. The state has one channel,
``messages``, a list with a reducer: ``operator.add`` ("plain"), or a
``langgraph.channels.delta.DeltaChannel`` with ``snapshot_frequency`` :data:`SNAPSHOT_EVERY`
("DeltaChannel": checkpoints keep a full snapshot only every few updates, and reads replay
the writes since, through ``aget_delta_channel_history``).

One timed operation is one loop: :data:`THREADS` threads run concurrently with ``ainvoke``
(``durability="async"``, LangGraph's default: a step's checkpoint is saved while the next step
runs), then each thread's ``aget_state`` and its whole ``aget_state_history``, concurrently.
Each loop uses new thread ids, so the store grows over the run as an application's would.

Contenders: RelaySaver (``RelaySaver.from_url``) against InMemorySaver (relay on ``memory://``),
AsyncSqliteSaver (relay on sqlite) and AsyncPostgresSaver (``from_conn_string``, relay on
postgres), in the same run; RelaySaver alone on redis and file. Before timing, every contender
runs one untimed loop on a fresh store with :func:`benchmarks.peers.counting.counting` on, which
gives the facts: saver calls per loop, milliseconds per call (waits included), statements and
round trips per call, and the bytes that one loop leaves stored (SQLite files after close, WAL
included; PostgreSQL ``pg_total_relation_size`` of the schema's tables and sequences; the file backend's
directory). RelaySaver's facts also give "LangGraph alone": the ``ainvoke`` part with no
checkpointer, the floor that LangGraph's own work puts under any saver. Each loop checks that
every thread's state and every history entry hold the messages their step should have.
"""

from __future__ import annotations

import asyncio
import operator
import random
import sqlite3
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict
from urllib.parse import parse_qs, urlsplit

import psycopg
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from psycopg import sql

from benchmarks.harness import PG_URL, Contender, Context, Facts, Matchup, Op, Target, case
from benchmarks.peers.counting import OUTSIDE, Tally, counting
from relaystore.integrations.langgraph import RelaySaver

THREADS = 8
ROUNDS = 12
SNAPSHOT_EVERY = 4
MESSAGES = 2 * ROUNDS + 2  # the question, ROUNDS × (call, result), the answer
GROUP = "agent loop"

RELAY = "RelaySaver"
PEERS = {"memory": "InMemorySaver", "sqlite": "AsyncSqliteSaver", "postgres": "AsyncPostgresSaver"}
BYTES = "bytes stored/loop"


# --------------------------------------------------------------------------- the graph


def _text(rng: random.Random, size: int) -> str:
    words = ("agent", "tool", "result", "search", "page", "query", "answer", "step", "record", "the", "of")
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


_RNG = random.Random(13)
THOUGHTS = [_text(_RNG, 600) for _ in range(ROUNDS + 1)]
RESULTS = [_text(_RNG, 1500) for _ in range(ROUNDS)]
QUESTION = _text(_RNG, 300)


def extend(state: list[Any], writes: Sequence[list[Any]]) -> list[Any]:
    """DeltaChannel's reducer: appends every write's messages (batching-invariant)."""
    return [*state, *(message for write in writes for message in write)]


class PlainState(TypedDict):
    messages: Annotated[list[AnyMessage], operator.add]


class DeltaState(TypedDict):
    messages: Annotated[list[AnyMessage], DeltaChannel(extend, snapshot_frequency=SNAPSHOT_EVERY)]


def _think(state: Any) -> dict[str, Any]:
    done = sum(isinstance(m, ToolMessage) for m in state["messages"])
    if done >= ROUNDS:
        return {"messages": [AIMessage(content=THOUGHTS[done])]}
    call = {"name": "search", "args": {"query": QUESTION[:80], "page": done}, "id": f"call_{done}"}
    return {"messages": [AIMessage(content=THOUGHTS[done], tool_calls=[call])]}


def _calls(state: Any) -> list[Any]:
    last = state["messages"][-1]
    return list(last.tool_calls) if isinstance(last, AIMessage) else []


def _tool(state: Any) -> dict[str, Any]:
    call = _calls(state)[0]
    return {"messages": [ToolMessage(content=RESULTS[call["args"]["page"]], tool_call_id=call["id"])]}


def _route(state: Any) -> str:
    return "tool" if _calls(state) else END


def build_graph(saver: BaseCheckpointSaver[Any] | None, delta: bool) -> Any:
    """The compiled think ⇄ tool loop on ``saver``; ``delta`` makes ``messages`` a DeltaChannel."""
    graph: StateGraph[Any] = StateGraph(DeltaState if delta else PlainState)
    graph.add_node("think", _think)
    graph.add_node("tool", _tool)
    graph.add_edge(START, "think")
    graph.add_conditional_edges("think", _route, ["tool", END])
    graph.add_edge("tool", "think")
    return graph.compile(checkpointer=saver)


async def _thread(graph: Any, thread_id: str) -> None:
    config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 4 * ROUNDS + 8}
    # LangGraph's default, spelled out: a step's checkpoint is saved while the next step runs.
    durability = {"durability": "async"} if graph.checkpointer else {}
    await graph.ainvoke({"messages": [HumanMessage(content=QUESTION)]}, config, **durability)


async def _read_back(graph: Any, thread_id: str) -> int:
    """``aget_state`` and the whole history, each checked; returns the history's length.

    In this graph the checkpoint of step ``s`` holds ``s + 1`` messages (step -1, the input, none),
    so a saver that loses or misplaces a write anywhere in the thread fails here.
    """
    config = {"configurable": {"thread_id": thread_id}}
    state = await graph.aget_state(config)
    _expect(thread_id, "aget_state", state.values, MESSAGES)
    history = [snapshot async for snapshot in graph.aget_state_history(config)]
    for snapshot in history:
        step = snapshot.metadata["step"]
        _expect(thread_id, f"history at step {step}", snapshot.values, max(0, step + 1))
    return len(history)


def _expect(thread_id: str, where: str, values: dict[str, Any], count: int) -> None:
    got = len(values.get("messages", []))
    if got != count:
        raise AssertionError(f"{thread_id}: {where} has {got} messages, expected {count}")


async def run_loop(graph: Any, tag: str) -> int:
    """One loop: THREADS threads run, then read back; returns checkpoints per thread."""
    ids = [f"{tag}-t{k}" for k in range(THREADS)]
    await asyncio.gather(*(_thread(graph, t) for t in ids))
    lengths = await asyncio.gather(*(_read_back(graph, t) for t in ids))
    return min(lengths)


# --------------------------------------------------------------------------- contenders


SaverOpener = Callable[[], AbstractAsyncContextManager[BaseCheckpointSaver[Any]]]


@dataclass
class Side:
    """How to open one saver on a fresh store and measure what it stored, after it is closed."""

    open: SaverOpener
    stored_bytes: Callable[[], Awaitable[int | None]]


async def _nothing() -> None:
    return None


def _relay_side(ctx: Context, name: str) -> Side:
    url = ctx.store_url(f"loop-{name}")

    @asynccontextmanager
    async def open_saver() -> AsyncIterator[BaseCheckpointSaver[Any]]:
        async with RelaySaver.from_url(url) as saver:
            yield saver

    query = parse_qs(urlsplit(url).query)
    if ctx.backend == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        return Side(open_saver, lambda: asyncio.to_thread(sqlite_bytes, path))
    if ctx.backend == "postgres":
        return Side(open_saver, lambda: schema_bytes(query["schema"][0]))
    if ctx.backend == "file":
        root = Path(url.removeprefix("file://"))
        return Side(open_saver, lambda: asyncio.to_thread(tree_bytes, root))
    return Side(open_saver, _nothing)


def _native_side(ctx: Context, name: str) -> Side:
    if ctx.backend == "sqlite":
        path = ctx.path(f"native-{name}.db")

        @asynccontextmanager
        async def open_sqlite() -> AsyncIterator[BaseCheckpointSaver[Any]]:
            async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
                await saver.setup()
                yield saver

        return Side(open_sqlite, lambda: asyncio.to_thread(sqlite_bytes, path))
    if ctx.backend == "postgres":
        from benchmarks.cases.checkpoints import private_schema

        schema = private_schema(ctx, f"lg_loop_{name}")

        @asynccontextmanager
        async def open_pg() -> AsyncIterator[BaseCheckpointSaver[Any]]:
            async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
                await admin.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
            async with AsyncPostgresSaver.from_conn_string(url) as saver:
                await saver.setup()
                yield saver

        return Side(open_pg, lambda: schema_bytes(schema))

    @asynccontextmanager
    async def open_memory() -> AsyncIterator[BaseCheckpointSaver[Any]]:
        with InMemorySaver() as saver:
            yield saver

    return Side(open_memory, _nothing)


def sqlite_bytes(path: Path) -> int:
    """The database's files (main, WAL, shared memory) after a ``wal_checkpoint(TRUNCATE)``."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def schema_bytes(schema: str) -> int:
    """``pg_total_relation_size`` (heap, indexes, TOAST) summed over a schema's tables, and the
    sequences (an identity column's, 8 KiB each): everything a saver keeps in its schema."""
    query = (
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm', 'S')"
    )
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        row = await (await conn.execute(query, (schema,))).fetchone()
    return int(row[0]) if row else 0


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@dataclass
class Clock:
    """Wall and process (client CPU, all threads) seconds of each timed loop."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    async def time(self, work: Awaitable[object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        await work
        self.cpu.append(time.process_time() - cpu)
        self.wall.append(time.perf_counter() - wall)


async def graph_alone(delta: bool, loops: int = 3) -> float:
    """Median seconds of the loop's ``ainvoke`` part with no checkpointer (nothing to read back):
    what LangGraph itself spends, a floor under every saver's loop time."""
    graph = build_graph(None, delta)
    took = []
    for k in range(loops):
        began = time.perf_counter()
        await asyncio.gather(*(_thread(graph, f"alone{k}-t{t}") for t in range(THREADS)))
        took.append(time.perf_counter() - began)
    return statistics.median(took)


def _count_facts(facts: dict[str, Any], tally: Tally, backend: str, checkpoints: int) -> None:
    """The counted loop's figures; per-method lists are bracketed, the facts being comma-joined."""
    facts["checkpoints/thread"] = checkpoints
    facts["saver calls/loop"] = f"({tally.calls_text()})"
    facts["ms per call"] = f"({tally.latency_text()})"
    if backend not in ("postgres", "sqlite"):
        return
    trips = "round trips" if backend == "postgres" else "worker hops"
    facts[f"statements/{trips} per call"] = f"({tally.per_call_text()})"
    facts["statements/loop"] = tally.statements
    facts[f"{trips}/loop"] = tally.round_trips
    outside = tally[OUTSIDE]
    if outside.statements or outside.round_trips:
        facts[f"statements/{trips} outside saver calls"] = f"{outside.statements}/{outside.round_trips}"


def _contender(ctx: Context, label: str, delta: bool, make_side: Callable[[Context, str], Side]) -> Contender:
    facts: dict[str, Any] = {}

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        counted = make_side(ctx, "counted")
        async with counted.open() as saver:
            graph = build_graph(saver, delta)
            async with counting(saver) as tally:
                checkpoints = await run_loop(graph, "counted")
        _count_facts(facts, tally, ctx.backend, checkpoints)
        size = await counted.stored_bytes()
        if size is not None:
            facts[BYTES] = size
        if label == RELAY:
            facts["LangGraph alone s/loop"] = f"{await graph_alone(delta):.3f}"
        clock = Clock()
        async with make_side(ctx, "timed").open() as saver:
            graph = build_graph(saver, delta)
            yield lambda i: clock.time(run_loop(graph, f"loop{i}"))
        facts["wall s/loop"] = f"{statistics.median(clock.wall):.3f}"
        facts["client CPU s/loop"] = f"{statistics.median(clock.cpu):.3f}"

    return Contender(label, setup, facts)


def _matchup(ctx: Context, delta: bool) -> Matchup:
    subject = _contender(ctx, RELAY, delta, _relay_side)
    if ctx.backend not in PEERS:
        return Matchup(subject, [])
    return Matchup(subject, [_contender(ctx, PEERS[ctx.backend], delta, _native_side)])


def _bytes_check(facts: Facts) -> tuple[bool, str]:
    relay = facts[RELAY][BYTES]
    (peer,) = (label for label in facts if label != RELAY)
    native = facts[peer][BYTES]
    text = f"RelaySaver stores {relay / 1e6:.2f} MB per loop, {peer} {native / 1e6:.2f} MB (≤ native)"
    return relay <= native, text


# --------------------------------------------------------------------------- the cases


TARGETS = {
    "AsyncPostgresSaver": Target.at_least(1.5),
    "AsyncSqliteSaver": Target.at_least(1.2),
    "InMemorySaver": Target.at_least(1.0),
}
CPU_BOUND = (
    "the loop is bound by client CPU on this 2-core machine: LangGraph's own work, the serde "
    "and the driver are shared by both sides, so fewer statements move wall time only so far"
)
REASONS = {
    "AsyncPostgresSaver": f"One statement per aput, aput_writes, aget_tuple and alist page, against "
    f"the native 2, 2, 1 and 1; {CPU_BOUND} (see the facts: client CPU s/loop beside wall s/loop).",
    "AsyncSqliteSaver": f"Group commit and one-statement reads; {CPU_BOUND}.",
    "InMemorySaver": "RelaySaver's per-call Python: every save goes through the checkpoint contract "
    "(ids checked, metadata copied and encoded once), where InMemorySaver writes its dicts directly.",
    "check": "PostgreSQL 15 extends a table by 20 pages per waiting backend when the pool's "
    "connections insert at once, and each connection fills its own last page: the native saver's one "
    "connection packs its pages, so the same rows take more pages here when the loop overlaps most "
    "(with pool_max 1 or 3 the loop stores less than the native saver); group commit of concurrent "
    "saves on one connection would remove it.",
}
DELTA_REASONS = {
    **REASONS,
    "AsyncPostgresSaver": f"{CPU_BOUND}: with DeltaChannel most of it is LangGraph replaying writes "
    "through the reducer and the serde decoding them, on both sides (aget_delta_channel_history is "
    "overridden: about 2 statements per call, as native).",
}
NOTE = (
    f"one op = one loop: {THREADS} threads × {ROUNDS} think→tool rounds, concurrent ainvoke "
    f"(durability='async'), then aget_state and the full aget_state_history per thread; "
    f"figures are rounds/s (loops/s × {THREADS * ROUNDS})"
)
COMMON: dict[str, Any] = {
    # One loop per repeat, the contenders' turns rotating: 1 counted + 1 warm-up + 5 timed loops
    # each, which keeps the group (ten cases) within about three minutes on a busy machine.
    "n": 1,
    "quick_n": 1,
    "repeats": 5,
    "quick_repeats": 2,
    "unit": "rounds/s",
    "ops_per_call": THREADS * ROUNDS,
    "targets": TARGETS,
}


def _register(name: str, delta: bool, note: str, reasons: dict[str, str]) -> None:
    """One case per backend: sqlite and postgres with the bytes check (sqlite plain in --quick),
    memory and redis, and file with fewer repeats (a loop takes 2–8 s there, fsync-bound)."""

    def build(ctx: Context) -> Matchup:
        return _matchup(ctx, delta)

    shared: dict[str, Any] = {**COMMON, "reasons": reasons, "note": note}
    quick = () if delta else ("sqlite",)
    case(GROUP, name, backends=("sqlite", "postgres"), quick_backends=quick, check=_bytes_check, **shared)(
        build
    )
    case(GROUP, name, backends=("memory", "redis"), quick_backends=(), **shared)(build)
    case(GROUP, name, backends=("file",), quick_backends=(), **{**shared, "repeats": 2})(build)


_register("plain messages", False, f"messages: Annotated[list, operator.add]; {NOTE}", REASONS)
_register(
    "messages as DeltaChannel",
    True,
    f"messages: DeltaChannel(extend, snapshot_frequency={SNAPSHOT_EVERY}); {NOTE}",
    DELTA_REASONS,
)
