"""Small SQLite writes run on the event loop thread, and step aside whenever that could stall it.

See the notes in ``relaystore.backends.sqlite``: an inline write never waits for a lock (another
connection holding it sends the write to the worker thread, which waits), a slow disk sends the
next writes to the worker, large writes always go there, and the worker copies the WAL back.
The knobs patched here live in ``relaystore.backends.sqlite.database``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import relaystore
from relaystore.backends.sqlite import database as sqlite_backend
from relaystore.models import CheckpointMetadata

FINAL = {"type": "final", "ok": True, "content": {"kind": "inline", "value": 1}}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[relaystore.Store]:
    async with relaystore.connect(f"sqlite:///{tmp_path / 'inline.db'}") as opened:
        yield opened


def _db(store: relaystore.Store) -> sqlite_backend.SqliteDatabase:
    db = store.checkpoints._db  # type: ignore[attr-defined]
    assert isinstance(db, sqlite_backend.SqliteDatabase)
    return db


def _record_threads(db: sqlite_backend.SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads that ran each write transaction, in order."""
    seen: list[str] = []
    original = sqlite_backend._transaction

    def spy(conn: sqlite3.Connection, fn):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return original(conn, fn)

    monkeypatch.setattr(sqlite_backend, "_transaction", spy)
    return seen


async def _save(store: relaystore.Store, thread_id: str, state: bytes = b"s") -> str:
    return await store.checkpoints.save(thread_id, CheckpointMetadata.new(thread_id), state)


async def test_small_writes_run_on_the_loop_thread_and_large_ones_on_the_worker(
    store: relaystore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await store.outputs.list() == []  # the outputs tables are made on first use, a write of its own
    threads = _record_threads(_db(store), monkeypatch)
    await _save(store, "t")
    await _save(store, "t", b"x" * (sqlite_backend.INLINE_MAX_BYTES + 1))
    await store.outputs.append("task", 0, "agent", FINAL)
    loop_thread = threading.current_thread().name
    assert threads[0] == loop_thread
    assert threads[1].startswith("relaystore-sqlite")
    assert threads[2] == loop_thread
    assert await store.checkpoints.count("t") == 2


async def test_a_write_lock_held_elsewhere_sends_the_write_to_the_worker_which_waits(
    store: relaystore.Store, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer, say
    try:
        saving = asyncio.create_task(_save(store, "t"))
        await asyncio.sleep(0.2)
        assert not saving.done()  # the loop kept running; the worker waits for the lock
    finally:
        other.execute("COMMIT")
        other.close()
    saved = await saving
    assert (await store.checkpoints.load_latest("t")).metadata.id == saved


async def test_slow_inline_commits_send_the_next_writes_to_the_worker(
    store: relaystore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "INLINE_SLOW_S", 0.0)  # every commit counts as slow
    monkeypatch.setattr(sqlite_backend, "INLINE_BACKOFF", 3)
    threads = _record_threads(_db(store), monkeypatch)
    for _ in range(5):
        await _save(store, "t")
    loop_thread = threading.current_thread().name
    on_loop = [name == loop_thread for name in threads]
    assert on_loop == [True, False, False, False, True]
    assert await store.checkpoints.count("t") == 5


async def test_a_failed_inline_write_leaves_no_transaction_open(store: relaystore.Store) -> None:
    saved = await _save(store, "t")
    with pytest.raises(relaystore.errors.Conflict):
        again = CheckpointMetadata.new("t").model_copy(update={"id": saved})
        await store.checkpoints.save("t", again, b"again")
    assert await _save(store, "t")  # the inline connection is usable: no BEGIN left dangling
    assert await store.checkpoints.count("t") == 2


async def test_the_worker_checkpoints_the_wal_after_inline_commits(
    store: relaystore.Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The inline connection never checkpoints, so without the worker's passive checkpoint every
    # commit would stay in the WAL and the database file would not grow.
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_EVERY", 4)
    monkeypatch.setattr(sqlite_backend, "INLINE_SLOW_S", 60.0)  # as below: only inline writes count
    database = tmp_path / "inline.db"
    before = database.stat().st_size
    for _ in range(8):
        await _save(store, "t", b"x" * 8192)
    await _db(store).call(lambda: None)  # the queued checkpoints have run
    assert database.stat().st_size > before + 8 * 8192


async def test_the_wal_is_rewound_after_each_checkpoint_not_grown_forever(
    store: relaystore.Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A checkpoint that runs beside inline commits must still let the next writer start the WAL
    # from the beginning; a WAL that only grows makes every fsync extend the file.
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_EVERY", 20)
    # Every write here must be an inline one, which counts toward the checkpoints: on a loaded
    # machine fsyncs over INLINE_SLOW_S would send them to the worker (the slow-disk rule, tested
    # above), where no checkpoint follows and the WAL grows for reasons this test is not about.
    monkeypatch.setattr(sqlite_backend, "INLINE_SLOW_S", 60.0)
    wal = tmp_path / "inline.db-wal"

    async def save_many(count: int) -> int:
        for _ in range(count):
            await _save(store, "t", b"x" * 4096)
        await _db(store).call(lambda: None)
        return wal.stat().st_size

    after_two_rounds = await save_many(40)
    after_twelve_rounds = await save_many(200)
    assert after_twelve_rounds < 2 * after_two_rounds
