"""Reads that can be large run on the SQLite backend's read threads, never on the event loop.

A read held in its thread (a ``threading.Event`` in a wrapped connection) stands for a large one:
while it is in flight, point reads, a listing on the other read thread and the server's
``/healthz`` and ``/v1/info`` all complete. No timing is asserted; the order is forced.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import relaystore
from relaystore.backends.sqlite import SqliteDatabase
from relaystore.models import CheckpointMetadata
from relaystore.server import create_app

ADMIN = "admin-token-for-the-off-loop-test"
BIG = b"x" * 4_000_000
FINAL = {"type": "final", "ok": True, "content": {"kind": "inline", "value": 1}}


class Watched:
    """A connection that records, for every statement, whether it ran on the loop thread, and
    holds statements matching ``hold`` until ``release`` is set (``started`` says one is held)."""

    def __init__(self, conn: sqlite3.Connection, loop_thread: threading.Thread, log: list[tuple[bool, str]]):
        self._conn = conn
        self._loop_thread = loop_thread
        self._log = log
        self.hold: str | None = None
        self.started = threading.Event()
        self.release = threading.Event()

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self._log.append((threading.current_thread() is self._loop_thread, sql))
        if self.hold is not None and self.hold in sql:
            self.started.set()
            assert self.release.wait(30), "the test never released the held read"
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _database(store: relaystore.Store) -> SqliteDatabase:
    db = store.checkpoints._db  # type: ignore[attr-defined]
    assert isinstance(db, SqliteDatabase)
    return db


def watch(store: relaystore.Store, monkeypatch: pytest.MonkeyPatch) -> tuple[Watched, list[tuple[bool, str]]]:
    """Wrap every connection a read may use: the loop thread's and each read thread's."""
    db = _database(store)
    log: list[tuple[bool, str]] = []
    loop_thread = threading.current_thread()
    assert db._reader is not None
    watched = Watched(db._reader, loop_thread, log)
    monkeypatch.setattr(db, "_reader", watched)
    opener = db._open_reader

    def open_watched() -> Any:
        wrapped = Watched(opener(), loop_thread, log)
        wrapped.hold, wrapped.started, wrapped.release = watched.hold, watched.started, watched.release
        return wrapped

    monkeypatch.setattr(db, "_open_reader", open_watched)
    return watched, log


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[relaystore.Store]:
    async with relaystore.connect(f"sqlite:///{tmp_path / 'reads.db'}") as opened:
        yield opened


async def _seed(store: relaystore.Store) -> dict[str, str]:
    await store.checkpoints.put_attachments("t", {"big": BIG})
    small = await store.checkpoints.save("t", CheckpointMetadata.new("t"), b"state")
    first = await store.checkpoints.save(
        "t", CheckpointMetadata.new("t").model_copy(update={"refs": ["big"]}), b"state"
    )
    one = await store.outputs.append("task", 0, "agent", FINAL)
    two = await store.outputs.append("task", 0, "agent", FINAL, parent_refs=[one])
    digest = (await store.blobs.put(b"b" * 3_000_000)).sha256
    await store.items.put(("ns",), "k", {"v": 1})
    return {"checkpoint": first, "small": small, "output": two, "blob": digest}


# Each read, and a piece of the statement that can be large (a point read may come before it).
LARGE_READS: dict[str, tuple[Callable[[relaystore.Store, dict[str, str]], Awaitable[Any]], str]] = {
    "list all checkpoints": (lambda s, _: s.checkpoints.list("t"), "SELECT seq, metadata FROM checkpoints"),
    "count": (lambda s, _: s.checkpoints.count("t"), "COUNT(*) FROM checkpoints WHERE thread_id"),
    "list_threads": (lambda s, _: s.checkpoints.list_threads(), "DISTINCT thread_id"),
    "attachments": (lambda s, _: s.checkpoints.get_attachments("t", ["big"]), "FROM thread_attachments"),
    "load_full, a large attachment": (lambda s, _: s.checkpoints.load_full("t"), "WITH c AS MATERIALIZED"),
    "list_full": (lambda s, _: s.checkpoints.list_full("t"), "WITH c AS MATERIALIZED"),
    "list_writes": (
        lambda s, ids: s.checkpoints.list_writes("t", ids["checkpoint"]),
        "FROM checkpoint_writes",
    ),
    "ancestors": (lambda s, ids: s.outputs.ancestors(ids["output"]), "WITH RECURSIVE"),
    "outputs list": (lambda s, _: s.outputs.list(task_id="task"), "FROM outputs WHERE task_id"),
    "blob read": (lambda s, ids: s.blobs.get(ids["blob"]), "FROM blob_chunks"),
    "list_runs": (lambda s, _: s.adaptive.list_runs("agent"), "FROM runs WHERE agent_id"),
    "items search": (lambda s, _: s.items.search(("ns",)), "FROM items WHERE"),
    "info": (lambda s, _: s.info(), "COUNT(DISTINCT thread_id)"),
}


@pytest.mark.parametrize("read", sorted(LARGE_READS))
async def test_a_read_that_can_be_large_runs_off_the_loop(
    store: relaystore.Store, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    seeded = await _seed(store)
    _, log = watch(store, monkeypatch)
    run, large = LARGE_READS[read]
    await run(store, seeded)
    ran = [on_loop for on_loop, sql in log if large in sql]
    assert ran, f"no statement with {large!r} ran on a read connection: {log}"
    assert not any(ran), f"{large!r} ran on the event loop thread"


async def test_small_point_reads_stay_on_the_loop(
    store: relaystore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = await _seed(store)
    _, log = watch(store, monkeypatch)
    await store.checkpoints.load_full("t", seeded["small"])  # new here: a read thread, size kept
    assert [on_loop for on_loop, _ in log] == [False]
    log.clear()
    await store.checkpoints.load_latest("t")
    await store.checkpoints.head("t")
    await store.checkpoints.list("t", limit=10)
    await store.outputs.get(seeded["output"])
    small = await store.checkpoints.load_full("t", seeded["small"])  # small last time: inline
    assert small is not None and small.state == b"state" and small.attachments == {}
    assert len(log) == 5 and all(on_loop for on_loop, _ in log)


async def test_a_large_read_in_flight_blocks_neither_the_loop_nor_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'served.db'}", admin_token=ADMIN, signing_key="k" * 32)
    async with app.router.lifespan_context(app):
        store: relaystore.Store = app.state.stores.main
        await _seed(store)
        watched, _ = watch(store, monkeypatch)
        watched.hold = "FROM thread_attachments"
        large = asyncio.create_task(store.checkpoints.get_attachments("t", ["big"]))
        assert await asyncio.to_thread(watched.started.wait, 30)  # held in a read thread now
        try:
            latest = await store.checkpoints.load_latest("t")  # inline point read
            threads = await store.checkpoints.list_threads()  # the other read thread
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
                health = await client.get("/healthz")
                info = await client.get("/v1/info", headers={"Authorization": f"Bearer {ADMIN}"})
            assert not large.done()  # everything above finished while the large read was held
        finally:
            watched.release.set()
        assert latest.state == b"state" and threads == ["t"]
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert info.status_code == 200 and info.json()["checkpoints"] == 2
        assert await large == {"big": BIG}


async def test_a_sqlite_vec_search_runs_on_a_read_thread(
    store: relaystore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaystore.backends.sqlite import vectors as sqlite_vectors

    await store.items.put(("ns",), "k", {"v": 1}, vectors={"text": [1.0, 0.0]})
    await store.items.search(("ns",))  # the item face is set up, its vector reader opened
    if store.items.native_vectors != "sqlite-vec":
        pytest.skip("sqlite-vec is not loadable here")
    threads: list[str] = []
    original = sqlite_vectors.nearest_rows

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(sqlite_vectors, "nearest_rows", spy)
    found = await store.items.nearest(("ns",), [1.0, 0.0])
    assert [item.key for _, item in found] == ["k"]
    assert len(threads) == 1 and threads[0].startswith("relaystore-sqlite-read")
