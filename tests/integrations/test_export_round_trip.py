"""Export/import moves everything: sqlite → postgres → redis → file → sqlite, and nothing changes.

The data is what runtimes leave behind: a LangGraph app (one thread stopped at an interrupt, with
its pending writes; one resumed to the end; a subgraph-free namespace ""), outputs with blobs,
adaptive state and long-term memory items. After the four hops, ``aget_tuple``, ``alist`` and
``aget_state`` on the copy equal the original's, and blob bytes are equal.
"""

from __future__ import annotations

import io
import itertools
import operator
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import relaystore
from relaystore.cli.transfer import export_to, import_from
from relaystore.integrations.langgraph import RelaySaver
from relaystore.testing import docs
from tests.conformance.factories.postgres import drop_schema
from tests.support.redis_stores import purge

pytestmark = pytest.mark.slow


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    answer: str


def think(state: State) -> dict[str, Any]:
    return {"messages": [f"thought {len(state['messages'])}"]}


def ask(state: State) -> dict[str, Any]:
    return {"answer": interrupt("approve?"), "messages": ["asked"]}


def build(saver: RelaySaver) -> Any:
    graph = StateGraph(State).add_node("think", think).add_node("ask", ask)
    graph.add_edge(START, "think").add_edge("think", "ask").add_edge("ask", END)
    return graph.compile(checkpointer=saver)


def config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


async def fill(url: str) -> dict[str, bytes]:
    """The runtimes' data in ``url``; returns the blobs' bytes by digest."""
    async with RelaySaver.from_url(url) as saver:
        app = build(saver)
        await app.ainvoke({"messages": ["hi"], "answer": ""}, config("waiting"))
        await app.ainvoke({"messages": ["hello"], "answer": ""}, config("done"))
        await app.ainvoke(Command(resume="yes"), config("done"))
        store = saver.store
        blobs = {}
        parent = await store.outputs.append("task", 0, "planner", docs.artifact_event())
        for payload in (b"\x00\xffbinary" * 1000, "résumé".encode()):
            ref = await store.blobs.put(payload, mime="application/octet-stream")
            blobs[ref.sha256] = payload
            event = {"type": "artifact", "name": ref.sha256[:8], "content": ref.model_dump(mode="json")}
            await store.outputs.append("task", 0, "writer", event, [parent])
        await store.adaptive.store_run(docs.run_record("agent"))
        await store.adaptive.store_plan(docs.execution_plan("agent"))
        await store.adaptive.store_trie("agent", docs.trie_envelope("agent"))
        await store.adaptive.store_accumulators("agent", docs.accumulator_state())
        await store.items.put(("users", "u1"), "profile", {"name": "Ada", "age": 36})
        await store.items.put(("users", "u1"), "note", {"text": "likes tea"}, ttl=3600)
    return blobs


async def view(url: str, blobs: dict[str, bytes]) -> dict[str, Any]:
    """What a runtime reads back, comparable across backends."""
    async with RelaySaver.from_url(url) as saver:
        app = build(saver)
        seen: dict[str, Any] = {}
        for thread in ("waiting", "done"):
            cfg = config(thread)
            tup = await saver.aget_tuple(cfg)
            assert tup is not None
            state = await app.aget_state(cfg)
            history = [t async for t in saver.alist(cfg)]
            seen[thread] = {
                "tuple": (tup.checkpoint, tup.metadata, tup.pending_writes, tup.parent_config),
                "list": [(t.checkpoint, t.metadata, t.pending_writes) for t in history],
                "state": (state.values, state.next, [i.value for t in state.tasks for i in t.interrupts]),
            }
        store = saver.store
        seen["outputs"] = [r.model_dump(mode="json", exclude={"seq"}) for r in await store.outputs.list()]
        seen["blobs"] = {sha: await store.blobs.get(sha) for sha in blobs}
        seen["runs"] = [r.to_dict() for r in await store.adaptive.list_runs("agent")]
        seen["plan"] = (await store.adaptive.load_plan("agent")).to_dict()
        seen["trie"] = (await store.adaptive.load_trie("agent")).to_dict()
        seen["accumulators"] = (await store.adaptive.load_accumulators("agent")).to_dict()
        items = await store.items.search(("users",), limit=None, newest_first=False)
        seen["items"] = [(i.namespace, i.key, i.value, i.ttl) for i in items]
    return seen


@asynccontextmanager
async def hops(tmp_path: Path, postgres_url: str, redis_url: str) -> AsyncIterator[list[str]]:
    tag = uuid.uuid4().hex[:12]
    schema, prefix = f"rs_rt_{tag}", f"rt-{tag}:"
    try:
        yield [
            f"sqlite:///{tmp_path / 'a.db'}",
            f"{postgres_url}?schema={schema}",
            f"{redis_url}?prefix={prefix}",
            f"file:///{tmp_path / 'files'}",
            f"sqlite:///{tmp_path / 'z.db'}",
        ]
    finally:
        await drop_schema(schema)
        await purge(redis_url, prefix)


async def test_everything_survives_four_backends(tmp_path: Path, postgres_url: str, redis_url: str) -> None:
    async with hops(tmp_path, postgres_url, redis_url) as urls:
        blobs = await fill(urls[0])
        original = await view(urls[0], blobs)
        assert original["waiting"]["tuple"][2], "the interrupted thread has pending writes"
        assert original["waiting"]["state"][2] == ["approve?"]
        assert original["done"]["state"][0]["answer"] == "yes"
        assert len(original["done"]["list"]) >= 4 and len(original["outputs"]) == 3
        assert len(original["items"]) == 2 and original["items"][0][3] == 3600  # the note's TTL
        for source, target in itertools.pairwise(urls):
            dump = io.StringIO()
            exported = await export_to(source, dump)
            lines = [line.encode() for line in dump.getvalue().splitlines()]
            imported = await import_from(target, lines, False, None)
            assert imported["counts"] == exported["counts"], (source, target)
            assert exported["counts"]["write"] > 0 and exported["counts"]["item"] == 2
            assert exported["corrupt"] == []
            assert await view(target, blobs) == original, target


async def test_a_resumed_import_completes_the_copy(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    blobs = await fill(source)
    dump = io.StringIO()
    await export_to(source, dump)
    lines = [line.encode() for line in dump.getvalue().splitlines()]
    half = len(lines) // 2
    with pytest.raises(relaystore.errors.InvalidInput, match="cut short"):
        await import_from(target, lines[:half], False, None)
    resumed = await import_from(target, lines, True, None)
    assert sum(resumed["skipped"].values()) > 0
    assert await view(target, blobs) == await view(source, blobs)


async def test_export_leaves_out_corrupt_records_names_them_and_goes_on(tmp_path: Path) -> None:
    from tests.conformance.factories import sqlite as factory

    url = f"sqlite:///{tmp_path / 'c.db'}"
    async with relaystore.connect(url) as store:
        for step in range(3):
            await store.checkpoints.save("t", docs.checkpoint("t", f"c{step}", step), b"s")
        for agent in ("a", "b", "c"):
            await store.adaptive.store_accumulators(agent, docs.accumulator_state())
        await factory.corrupt(store, "checkpoint", ("t", "c1"))
        await factory.corrupt(store, "document", ("accumulators", "b"))
    dump = io.StringIO()
    exported = await export_to(url, dump)
    assert exported["counts"]["checkpoint"] == 2 and exported["counts"]["document"] == 2
    assert len(exported["corrupt"]) == 2
    checkpoint_key, document_key = exported["corrupt"]
    assert "checkpoints" in checkpoint_key and "accumulators" in document_key and "b" in document_key
    copy = f"sqlite:///{tmp_path / 'd.db'}"
    await import_from(copy, [line.encode() for line in dump.getvalue().splitlines()], False, None)
    async with relaystore.connect(copy) as store:
        assert [m.id for m in await store.checkpoints.list("t", newest_first=False)] == ["c0", "c2"]
        assert sorted(await store.adaptive.list_keys("accumulators")) == ["a", "c"]
