"""RelaySaver on the production path (issue 13): writes before their checkpoint, one round trip
per read, DeltaChannel history and retention that never empties a DeltaChannel thread."""

from __future__ import annotations

import asyncio
import operator
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

import psycopg
import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

import relaystore
from relaystore.integrations.langgraph import RelaySaver
from tests.conformance.factories import discover
from tests.conformance.factories import postgres as pg_factory
from tests.support.services import ensure_postgres

THREAD = {"configurable": {"thread_id": "t1"}}
FACTORIES = discover()


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[relaystore.Store]:
    """A fresh store of every backend the conformance kit knows (skipped where its server is down)."""
    factory = FACTORIES[request.param]
    if reason := factory.unavailable():
        pytest.skip(f"{request.param}: {reason}")
    async with factory.fresh(tmp_path) as opened:
        yield opened


def _append(state: list[str] | None, batches: Any) -> list[str]:
    """A batching-invariant reducer for DeltaChannel: concatenate every write's items."""
    out = list(state or [])
    for items in batches:
        out.extend(items)
    return out


class DeltaState(TypedDict):
    messages: Annotated[list[str], DeltaChannel(_append, snapshot_frequency=3)]


class PlainState(TypedDict):
    messages: Annotated[list[str], operator.add]


def agent_graph(state: type, saver: BaseCheckpointSaver[Any]) -> Any:
    """think → tool, twice per invoke: enough steps for deltas between snapshots."""
    turns = {"n": 0}

    def think(_: Any) -> dict[str, list[str]]:
        turns["n"] += 1
        return {"messages": [f"think {turns['n']}"]}

    def tool(_: Any) -> dict[str, list[str]]:
        return {"messages": [f"tool {turns['n']}"]}

    builder = StateGraph(state)
    builder.add_node("think", think)
    builder.add_node("tool", tool)
    builder.add_edge(START, "think")
    builder.add_edge("think", "tool")
    builder.add_edge("tool", END)
    return builder.compile(checkpointer=saver)


async def run_turns(graph: Any, turns: int) -> list[str]:
    for turn in range(turns):
        await graph.ainvoke({"messages": [f"user {turn}"]}, THREAD)
    return list((await graph.aget_state(THREAD)).values["messages"])


# --------------------------------------------------------------------------- DeltaChannel


async def test_delta_history_matches_the_base_walk_and_rebuilds_state(store: relaystore.Store) -> None:
    saver = RelaySaver(store)
    graph = agent_graph(DeltaState, saver)
    messages = await run_turns(graph, 4)
    assert len(messages) == 12
    for state in [s async for s in graph.aget_state_history(THREAD)]:
        ours = await saver.aget_delta_channel_history(config=state.config, channels=["messages"])
        base = await BaseCheckpointSaver.aget_delta_channel_history(
            saver, config=state.config, channels=["messages"]
        )
        assert ours == base
    assert await saver.aget_delta_channel_history(config=THREAD, channels=[]) == {}


async def test_delta_history_costs_one_page_not_one_read_per_ancestor(store: relaystore.Store) -> None:
    saver = RelaySaver(store)
    await run_turns(agent_graph(DeltaState, saver), 4)
    calls = {"load_full": 0, "list_full": 0}
    for name in calls:
        original = getattr(store.checkpoints, name)

        async def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return await _original(*args, **kwargs)

        setattr(store.checkpoints, name, counted)
    await saver.aget_delta_channel_history(config=THREAD, channels=["messages"])
    assert calls == {"load_full": 0, "list_full": 1}


async def test_keep_latest_refuses_a_delta_thread_and_keeps_it_whole(store: relaystore.Store) -> None:
    saver = RelaySaver(store)
    graph = agent_graph(DeltaState, saver)
    before = await run_turns(graph, 3)
    with pytest.raises(NotImplementedError, match="DeltaChannel"):
        await saver.aprune(["t1"], strategy="keep_latest")
    assert (await graph.aget_state(THREAD)).values["messages"] == before


async def test_delete_for_runs_refuses_to_cut_a_delta_thread(store: relaystore.Store) -> None:
    saver = RelaySaver(store)
    graph = agent_graph(DeltaState, saver)
    await graph.ainvoke({"messages": ["a"]}, {"configurable": {"thread_id": "t1", "run_id": "r1"}})
    await graph.ainvoke({"messages": ["b"]}, {"configurable": {"thread_id": "t1", "run_id": "r2"}})
    before = (await graph.aget_state(THREAD)).values["messages"]
    with pytest.raises(NotImplementedError, match="DeltaChannel"):
        await saver.adelete_for_runs(["r1"])
    assert (await graph.aget_state(THREAD)).values["messages"] == before
    await saver.adelete_for_runs(["r1", "r2"])  # the whole thread may go
    assert await saver.aget_tuple(THREAD) is None


async def test_copy_thread_keeps_a_delta_thread(store: relaystore.Store) -> None:
    saver = RelaySaver(store)
    graph = agent_graph(DeltaState, saver)
    before = await run_turns(graph, 3)
    await saver.acopy_thread("t1", "t2")
    copied = await graph.aget_state({"configurable": {"thread_id": "t2"}})
    assert copied.values["messages"] == before


async def test_plain_thread_prune_clears_the_kept_heads_parent(store: relaystore.Store) -> None:
    saver = RelaySaver(store)
    graph = agent_graph(PlainState, saver)
    before = await run_turns(graph, 2)
    await saver.aprune(["t1"])
    kept = [t async for t in saver.alist(THREAD)]
    assert len(kept) == 1 and kept[0].parent_config is None
    assert kept[0].checkpoint["channel_values"]["messages"] == before


@pytest.mark.parametrize("call", ["prune", "delete_for_runs"])
async def test_a_string_instead_of_a_list_is_a_type_error(store: relaystore.Store, call: str) -> None:
    saver = RelaySaver(store)
    graph = agent_graph(PlainState, saver)
    await run_turns(graph, 1)
    with pytest.raises(TypeError, match="list of ids"):
        await getattr(saver, f"a{call}")("t1")
    with pytest.raises(TypeError):
        getattr(saver, call)("t1")  # the sync twin checks before it needs the loop
    assert await saver.aget_tuple(THREAD) is not None


# --------------------------------------------------------------------------- writes first

WRITER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from relaystore.integrations.langgraph import RelaySaver

    async def main(url, checkpoint_id, die):
        async with RelaySaver.from_url(url) as saver:
            ids = {"thread_id": "t1", "checkpoint_ns": "", "checkpoint_id": checkpoint_id}
            config = {"configurable": ids}
            await saver.aput_writes(config, [("messages", ["early"]), ("other", 1)], "task-1")
            print("written", flush=True)
            if die:
                os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] == "die"))
    """
)


def write_in_another_process(url: str, checkpoint_id: str, *, die: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WRITER, url, checkpoint_id, "die" if die else "live"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def checkpoint_dict(checkpoint_id: str) -> dict[str, Any]:
    return {
        "v": 4,
        "id": checkpoint_id,
        "ts": "",
        "channel_values": {"messages": ["hi"]},
        "channel_versions": {"messages": "1"},
        "versions_seen": {},
    }


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    if reason := ensure_postgres():
        pytest.skip(reason)
    schema = f"rs_test_{os.urandom(8).hex()}"
    yield f"{pg_factory.SERVER}?schema={schema}"
    asyncio.run(pg_factory.drop_schema(schema))


async def test_writes_from_another_process_precede_their_checkpoint(shared_url: str) -> None:
    checkpoint_id = "1ef00000-0000-6000-8000-000000000001"
    done = write_in_another_process(shared_url, checkpoint_id, die=False)
    assert done.returncode == 0, done.stderr
    async with RelaySaver.from_url(shared_url) as saver:
        config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
        assert await saver.aget_tuple(config) is None
        await saver.aput(config, checkpoint_dict(checkpoint_id), {"step": 0}, {"messages": "1"})  # type: ignore[arg-type]
        got = await saver.aget_tuple(config)
        assert got is not None
        assert got.pending_writes == [("task-1", "messages", ["early"]), ("task-1", "other", 1)]
        assert got.checkpoint["channel_values"] == {"messages": ["hi"]}


async def test_a_crash_between_writes_and_checkpoint_leaves_nothing_unreadable(shared_url: str) -> None:
    killed = write_in_another_process(shared_url, "1ef00000-0000-6000-8000-00000000dead", die=True)
    assert killed.returncode == -signal.SIGKILL and "written" in killed.stdout
    async with RelaySaver.from_url(shared_url) as saver:
        config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
        assert await saver.aget_tuple(config) is None
        assert [t async for t in saver.alist(None)] == []
        live = "1ef00000-0000-6000-8000-000000000002"
        await saver.aput(config, checkpoint_dict(live), {"step": 0}, {"messages": "1"})  # type: ignore[arg-type]
        got = await saver.aget_tuple(config)
        assert got is not None and got.pending_writes == []  # the orphan belongs to no checkpoint
        key = saver._thread_key("t1", "")
        assert await saver.store.checkpoints.delete_orphan_writes(key) == 1


# --------------------------------------------------------------------------- round trips


@asynccontextmanager
async def counted_statements() -> AsyncIterator[list[str]]:
    """Every statement psycopg sends from this process, in order (a client-side count)."""
    sent: list[str] = []
    original = psycopg.AsyncCursor.execute

    async def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        sent.append(query.as_string(self) if hasattr(query, "as_string") else str(query))
        return await original(self, query, params, **kwargs)

    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        psycopg.AsyncCursor.execute = original  # type: ignore[method-assign]


@contextmanager
def counted_sqlite(store: relaystore.Store) -> Iterator[list[str]]:
    """Every statement the store's SQLite connections run (reader, inline writer, worker, and
    the read threads')."""
    db = store.checkpoints._db  # type: ignore[attr-defined]
    sent: list[str] = []
    db.trace(sent.append)
    try:
        yield sent
    finally:
        db.trace(None)


async def drive_one_step(saver: RelaySaver, counter: Any) -> dict[str, int]:
    """aput, aput_writes, aget_tuple and a page of alist, each counted alone."""
    config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    first = await saver.aput(
        config, checkpoint_dict("1ef00000-0000-6000-8000-000000000001"), {"step": 0}, {"messages": "1"}
    )  # type: ignore[arg-type]
    counts: dict[str, int] = {}

    async def count(name: str, call: Any) -> None:
        async with counter() as sent:
            await call
        counts[name] = len(sent)

    second = checkpoint_dict("1ef00000-0000-6000-8000-000000000002")
    await count("aput", saver.aput(first, second, {"step": 1}, {"messages": "2"}))  # type: ignore[arg-type]
    latest = {"configurable": {**config["configurable"], "checkpoint_id": second["id"]}}
    await count("aput_writes", saver.aput_writes(latest, [("messages", ["a"]), ("x", 1)], "task"))  # type: ignore[arg-type]
    await count("aget_tuple", saver.aget_tuple(config))  # type: ignore[arg-type]

    async def page() -> None:
        assert len([t async for t in saver.alist(config, filter={"step": 1})]) == 1  # type: ignore[arg-type]

    await count("alist", page())
    return counts


async def test_postgres_round_trips_per_op(tmp_path: Path) -> None:
    if reason := ensure_postgres():
        pytest.skip(reason)
    async with pg_factory.fresh(tmp_path) as store:
        counts = await drive_one_step(RelaySaver(store), counted_statements)
    assert counts == {"aput": 1, "aput_writes": 1, "aget_tuple": 1, "alist": 1}


async def test_sqlite_statements_per_op(tmp_path: Path) -> None:
    async with relaystore.connect(f"sqlite:///{tmp_path / 'count.db'}") as store:

        @asynccontextmanager
        async def counter() -> AsyncIterator[list[str]]:
            with counted_sqlite(store) as sent:
                yield sent

        counts = await drive_one_step(RelaySaver(store), counter)
        writes = await store.checkpoints.list_writes("t1\x1f", "1ef00000-0000-6000-8000-000000000002")
    assert len(writes) == 2
    # a save with its channel value is one transaction: BEGIN, the checkpoint, its value, COMMIT;
    # get_tuple is one statement, inline or on a read thread (a large checkpoint never stalls
    # the event loop)
    assert counts == {"aput": 4, "aput_writes": 1, "aget_tuple": 1, "alist": 1}
