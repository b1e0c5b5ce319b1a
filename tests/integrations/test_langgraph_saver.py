"""RelaySaver's mapping onto relaystore: dedup of channel values, no orphaned attachments,
serializers, addressing and the sync twins."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.base")

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

import relaystore
from relaystore.errors import InvalidInput
from relaystore.integrations.langgraph import RelaySaver
from relaystore.models import CheckpointMetadata
from relaystore.stores import Store

BIG = [{"role": "user", "content": f"{i:04d}" + "x" * 1996} for i in range(100)]  # ~200 KB


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect(f"sqlite:///{tmp_path / 'lg.db'}") as opened:
        yield opened


class Graph:
    """Puts checkpoints the way a running graph does: parent = previous, only changed channels."""

    def __init__(self, saver: RelaySaver, thread_id: str = "t1", namespace: str = "") -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.namespace = namespace
        self.head: str | None = None
        self.versions: dict[str, Any] = {}
        self.values: dict[str, Any] = {}

    async def step(self, n: int, /, run_id: str = "run-1", **changed: Any) -> str:
        new_versions = {c: self.saver.get_next_version(self.versions.get(c), None) for c in changed}
        self.versions.update(new_versions)
        self.values.update(changed)
        checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=n)),
            "ts": datetime.now(UTC).isoformat(),
            "channel_values": dict(self.values),
            "channel_versions": dict(self.versions),
            "versions_seen": {},
            "updated_channels": list(changed),
        }
        configurable = {"thread_id": self.thread_id, "checkpoint_ns": self.namespace}
        if self.head:
            configurable["checkpoint_id"] = self.head
        metadata = {"source": "loop", "step": n, "parents": {}, "run_id": run_id}
        saved = await self.saver.aput({"configurable": configurable}, checkpoint, metadata, new_versions)  # type: ignore[arg-type]
        self.head = saved["configurable"]["checkpoint_id"]
        return self.head

    def config(self, checkpoint_id: str | None = None) -> RunnableConfig:
        configurable = {"thread_id": self.thread_id, "checkpoint_ns": self.namespace}
        if checkpoint_id:
            configurable["checkpoint_id"] = checkpoint_id
        return {"configurable": configurable}


async def all_attachments(store: Store, thread: str) -> list[str]:
    return list(await store.checkpoints.list_attachments(thread, limit=10_000))


async def referenced(saver: RelaySaver, graph: Graph) -> set[str]:
    """Attachment keys the thread's remaining checkpoints point at."""
    keys: set[str] = set()
    async for t in saver.alist(graph.config()):
        keys.update(f"{c}\x1f{v}" for c, v in t.checkpoint["channel_versions"].items())
    return keys


def database_bytes(path: Path) -> int:
    """The SQLite file plus its WAL, after a truncating checkpoint folds the WAL in."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def test_an_unchanged_channel_is_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "dedup.db"
    async with RelaySaver.from_url(f"sqlite:///{path}") as saver:
        graph = Graph(saver)
        await graph.step(0, messages=BIG, step=0)
        for i in range(1, 200):
            await graph.step(i, step=i)
        attachments = await all_attachments(saver.store, "t1\x1f")
        latest = await saver.aget_tuple(graph.config())
    size = database_bytes(path)
    print(f"\n200 checkpoints with an unchanged ~200 KB channel on sqlite: {size:,} bytes")
    assert len(attachments) == 201  # messages once, step 200 times
    assert latest is not None and latest.checkpoint["channel_values"] == {"messages": BIG, "step": 199}
    assert size <= 2_000_000


async def test_get_tuple_rebuilds_values_of_an_old_checkpoint(store: Store) -> None:
    saver = RelaySaver(store)
    graph = Graph(saver)
    first = await graph.step(0, messages=["a"], step=0)
    await graph.step(1, messages=["a", "b"])
    old = await saver.aget_tuple(graph.config(first))
    new = await saver.aget_tuple(graph.config())
    assert old is not None and old.checkpoint["channel_values"] == {"messages": ["a"], "step": 0}
    assert new is not None and new.checkpoint["channel_values"] == {"messages": ["a", "b"], "step": 0}
    assert new.parent_config == graph.config(first)


async def test_put_again_stores_the_new_values_with_the_checkpoint(store: Store) -> None:
    # The first save of an upsert raises Conflict and, being atomic, writes no value: the retry
    # after the delete must carry the values again.
    saver = RelaySaver(store)
    config: RunnableConfig = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    checkpoint_id = str(uuid6(clock_seq=0))
    for n, value in enumerate(["first", "second"], start=1):
        version = saver.get_next_version(None if n == 1 else f"{n - 1}", None)
        checkpoint = {
            "v": 4,
            "id": checkpoint_id,
            "ts": datetime.now(UTC).isoformat(),
            "channel_values": {"answer": value},
            "channel_versions": {"answer": version},
            "versions_seen": {},
            "updated_channels": ["answer"],
        }
        metadata = {"source": "loop", "step": n, "parents": {}}
        await saver.aput(config, checkpoint, metadata, {"answer": version})  # type: ignore[arg-type]
    got = await saver.aget_tuple(config)
    assert got is not None and got.checkpoint["channel_values"] == {"answer": "second"}
    assert got.metadata["step"] == 2


async def test_prune_keep_latest_leaves_no_orphans(store: Store) -> None:
    saver = RelaySaver(store)
    root, child = Graph(saver), Graph(saver, namespace="child:1")
    for graph in (root, child):
        await graph.step(0, messages=["a"], step=0)
        for i in range(1, 5):
            await graph.step(i, messages=["a"] * i, step=i)
    await saver.aprune(["t1"])
    for graph, thread in ((root, "t1\x1f"), (child, "t1\x1fchild:1")):
        assert await store.checkpoints.count(thread) == 1
        assert set(await all_attachments(store, thread)) == await referenced(saver, graph)
        assert len(await all_attachments(store, thread)) == 2
        latest = await saver.aget_tuple(graph.config())
        assert latest is not None and latest.checkpoint["channel_values"]["step"] == 4


async def test_delete_for_runs_leaves_no_orphans_and_keeps_shared_values(store: Store) -> None:
    saver = RelaySaver(store)
    graph = Graph(saver)
    await graph.step(0, run_id="keep", messages=["shared"], step=0)
    await graph.step(1, run_id="drop", step=1)
    await graph.step(2, run_id="drop", messages=["dropped"], step=2)
    writer = graph.config(graph.head)
    await saver.aput_writes(writer, [("messages", "pending")], "task-1")
    await saver.adelete_for_runs(["drop"])
    remaining = [t async for t in saver.alist(graph.config())]
    assert [t.metadata["run_id"] for t in remaining] == ["keep"]
    assert set(await all_attachments(store, "t1\x1f")) == await referenced(saver, graph)
    assert remaining[0].checkpoint["channel_values"] == {"messages": ["shared"], "step": 0}
    assert await store.checkpoints.list_writes("t1\x1f", writer["configurable"]["checkpoint_id"]) == []


async def test_delete_thread_removes_every_namespace_and_its_values(store: Store) -> None:
    saver = RelaySaver(store)
    for namespace in ("", "child:1"):
        await Graph(saver, namespace=namespace).step(0, messages=["a"], step=0)
    await Graph(saver, thread_id="t2").step(0, messages=["other"], step=0)
    await saver.adelete_thread("t1")
    assert list(await store.checkpoints.list_threads()) == ["t2\x1f"]
    for thread in ("t1\x1f", "t1\x1fchild:1"):
        assert await all_attachments(store, thread) == []
    assert await saver.aget_tuple(Graph(saver, thread_id="t2").config()) is not None


class HmacStreamCipher:
    """A stand-in for AES (pycryptodome may be absent): an HMAC-SHA256 keystream plus an HMAC tag,
    enough to prove the saver stores only ciphertext and reads it back through the serde."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _stream(self, nonce: bytes, size: int) -> bytes:
        blocks = (
            hmac.digest(self.key, nonce + i.to_bytes(8, "big"), "sha256") for i in range(size // 32 + 1)
        )
        return b"".join(blocks)[:size]

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(16)
        body = bytes(a ^ b for a, b in zip(plaintext, self._stream(nonce, len(plaintext)), strict=True))
        return "hmacx", nonce + hmac.digest(self.key, nonce + body, "sha256") + body

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        nonce, tag, body = ciphertext[:16], ciphertext[16:48], ciphertext[48:]
        assert ciphername == "hmacx" and hmac.compare_digest(
            tag, hmac.digest(self.key, nonce + body, "sha256")
        )
        return bytes(a ^ b for a, b in zip(body, self._stream(nonce, len(body)), strict=True))


def _serializers() -> list[Any]:
    found = [EncryptedSerializer(HmacStreamCipher(hashlib.sha256(b"k").digest()), JsonPlusSerializer())]
    # without pycryptodome the stand-in cipher still covers the protocol
    with contextlib.suppress(ImportError):
        found.append(EncryptedSerializer.from_pycryptodome_aes(key=b"0123456789abcdef"))
    return found


@pytest.mark.parametrize("serde", _serializers(), ids=lambda s: type(s.cipher).__name__)
async def test_encrypted_serializer_round_trip(tmp_path: Path, serde: EncryptedSerializer) -> None:
    path = tmp_path / "enc.db"
    secret = "the launch code is 0000"
    async with RelaySaver.from_url(f"sqlite:///{path}", serde) as saver:
        graph = Graph(saver)
        await graph.step(0, messages=[secret], step=0)
        await saver.aput_writes(graph.config(graph.head), [("messages", secret)], "task-1")
        got = await saver.aget_tuple(graph.config())
    assert got is not None
    assert got.checkpoint["channel_values"]["messages"] == [secret]
    assert got.pending_writes == [("task-1", "messages", secret)]
    database_bytes(path)
    assert secret.encode() not in path.read_bytes()


async def test_separator_in_ids_is_refused(store: Store) -> None:
    saver = RelaySaver(store)
    with pytest.raises(InvalidInput, match="thread_id"):
        await saver.aget_tuple({"configurable": {"thread_id": "a\x1fb", "checkpoint_ns": ""}})
    with pytest.raises(InvalidInput, match="checkpoint_ns"):
        await Graph(saver, namespace="x\x1fy").step(0, step=0)


async def test_thread_prefix_isolates_savers(store: Store) -> None:
    tenant_a, tenant_b = RelaySaver(store, thread_prefix="a/"), RelaySaver(store, thread_prefix="b/")
    await Graph(tenant_a).step(0, step=0)
    await Graph(tenant_b).step(0, step=0)
    await store.checkpoints.save("plain", CheckpointMetadata.new("plain"), b"x")
    assert len([t async for t in tenant_a.alist(None)]) == 1
    await tenant_a.adelete_for_runs(["run-1"])
    assert len([t async for t in tenant_b.alist(None)]) == 1
    assert await store.checkpoints.count("plain") == 1


async def test_list_before_filter_and_limit(store: Store) -> None:
    saver = RelaySaver(store)
    graph = Graph(saver)
    ids = [await graph.step(i, run_id=f"r{i % 2}", step=i) for i in range(6)]
    listed = [t.config["configurable"]["checkpoint_id"] async for t in saver.alist(graph.config())]
    assert listed == ids[::-1]
    before = [t async for t in saver.alist(graph.config(), before=graph.config(ids[3]), limit=2)]
    assert [t.config["configurable"]["checkpoint_id"] for t in before] == [ids[2], ids[1]]
    odd = [t.metadata["step"] async for t in saver.alist(graph.config(), filter={"run_id": "r1"})]
    assert odd == [5, 3, 1]


def test_versions_grow_as_strings() -> None:
    saver = RelaySaver.__new__(RelaySaver)
    first = saver.get_next_version(None, None)
    second = saver.get_next_version(first, None)
    assert first.startswith("0" * 31 + "1.") and second > first
    assert saver.get_next_version(7, None).startswith("0" * 30 + "08.")


def test_sync_twins_on_from_url_sync(tmp_path: Path) -> None:
    with RelaySaver.from_url_sync(f"sqlite:///{tmp_path / 'sync.db'}") as saver:
        config = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
        checkpoint = {"v": 4, "id": str(uuid6()), "ts": "", "channel_values": {"x": 1}}
        checkpoint |= {"channel_versions": {"x": "1"}, "versions_seen": {}}
        saved = saver.put(config, checkpoint, {"step": 0}, {"x": "1"})  # type: ignore[arg-type]
        saver.put_writes(saved, [("x", 2)], "task")
        got = saver.get_tuple(config)  # type: ignore[arg-type]
        assert got is not None and got.checkpoint["channel_values"] == {"x": 1}
        assert got.pending_writes == [("task", "x", 2)]
        assert len(list(saver.list(None))) == 1
        saver.delete_thread("t1")
        assert saver.get_tuple(config) is None  # type: ignore[arg-type]


async def test_sync_call_on_the_stores_loop_is_refused(store: Store) -> None:
    saver = RelaySaver(store)
    with pytest.raises(asyncio.InvalidStateError, match="a\\* methods"):
        saver.get_tuple({"configurable": {"thread_id": "t1", "checkpoint_ns": ""}})
    # from a worker thread the same call works, on the store's loop
    got = await asyncio.to_thread(saver.get_tuple, {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}})
    assert got is None


async def test_writes_sent_before_their_checkpoint_are_stored_at_once(store: Store) -> None:
    """LangGraph (durability="async") may put a step's writes while its checkpoint's put is in
    flight: they are stored without waiting, as the native savers store them."""
    saver = RelaySaver(store)
    graph = Graph(saver)
    checkpoint_id = str(uuid6(clock_seq=0))
    config = {"configurable": {"thread_id": "t1", "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}
    await asyncio.wait_for(saver.aput_writes(config, [("messages", "early")], "task-1"), 5)  # type: ignore[arg-type]
    assert await saver.aget_tuple(graph.config()) is None  # writes alone are no checkpoint
    checkpoint = {"v": 4, "id": checkpoint_id, "ts": "", "channel_values": {}, "channel_versions": {}}
    await saver.aput(graph.config(), {**checkpoint, "versions_seen": {}}, {"step": 0}, {})  # type: ignore[arg-type,typeddict-item]
    got = await saver.aget_tuple(graph.config())
    assert got is not None and got.pending_writes == [("task-1", "messages", "early")]


def test_sync_graph_invoke_with_from_url_sync(tmp_path: Path) -> None:
    from langgraph.graph import END, START, StateGraph

    def bump(state: dict[str, int]) -> dict[str, int]:
        return {"n": state["n"] + 1}

    builder = StateGraph(dict)  # type: ignore[type-var]
    builder.add_node("bump", bump)  # type: ignore[type-var]
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    with RelaySaver.from_url_sync(f"sqlite:///{tmp_path / 'graph.db'}") as saver:
        app = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "sync"}}
        assert app.invoke({"n": 1}, config) == {"n": 2}  # type: ignore[arg-type,call-overload]
        assert app.get_state(config).values == {"n": 2}  # type: ignore[arg-type]
        assert len(list(saver.list(config))) >= 2  # type: ignore[arg-type]
