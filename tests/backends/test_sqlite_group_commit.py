"""SQLite group commit: writes that queue for the worker share one transaction and one fsync,
each is answered only after that commit, and one that fails is rolled back alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import relaystore
from relaystore._load import caller
from relaystore.backends import sqlite as sqlite_backend
from relaystore.errors import Conflict
from relaystore.models import CheckpointMetadata, PendingWrite


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[relaystore.Store]:
    async with relaystore.connect(f"sqlite:///{tmp_path / 'group.db'}") as opened:
        yield opened


def worker_statements(store: relaystore.Store) -> list[str]:
    """Every statement the worker connection runs from now on (inline writes are switched off)."""
    db = store.checkpoints._db  # type: ignore[attr-defined]
    assert isinstance(db, sqlite_backend.SqliteDatabase)
    db._inline = None  # every write goes to the worker, as when inline writes are paused
    sent: list[str] = []
    db._require().set_trace_callback(sent.append)
    return sent


def metadata(thread: str, checkpoint_id: str) -> CheckpointMetadata:
    return CheckpointMetadata(id=checkpoint_id, thread_id=thread)


async def test_concurrent_writes_share_commits(store: relaystore.Store) -> None:
    sent = worker_statements(store)
    write = PendingWrite(task_id="a", idx=0, channel="c", value=b"v")
    await asyncio.gather(
        *(store.checkpoints.save(f"t{i % 4}", metadata(f"t{i % 4}", f"c{i}"), b"s") for i in range(40)),
        *(store.checkpoints.put_writes("t0", f"c{i}", [write]) for i in range(40)),
    )
    commits = sum(1 for s in sent if s == "COMMIT")
    assert 1 <= commits < 20  # 80 writes; alone each would commit once
    assert sum([await store.checkpoints.count(f"t{i}") for i in range(4)]) == 40
    assert all([await store.checkpoints.list_writes("t0", f"c{i}") == [write] for i in range(40)])


async def test_a_failing_write_in_a_group_is_rolled_back_alone(store: relaystore.Store) -> None:
    worker_statements(store)
    await store.checkpoints.save("t", metadata("t", "dup"), b"first")
    outcomes = await asyncio.gather(
        *(store.checkpoints.save("t", metadata("t", f"c{i}"), b"s") for i in range(5)),
        store.checkpoints.save("t", metadata("t", "dup"), b"second"),  # a duplicate id: Conflict
        *(store.checkpoints.save("t", metadata("t", f"d{i}"), b"s") for i in range(5)),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes].count("Conflict") == 1
    assert isinstance(outcomes[5], Conflict)
    assert await store.checkpoints.count("t") == 11
    assert (await store.checkpoints.load("t", "dup")).state == b"first"


async def test_a_write_is_answered_after_its_commit(store: relaystore.Store, tmp_path: Path) -> None:
    worker_statements(store)
    saves = [store.checkpoints.save("t", metadata("t", f"c{i}"), b"s") for i in range(10)]
    for done in asyncio.as_completed(saves):
        saved = await done
        async with relaystore.connect(f"sqlite:///{tmp_path / 'group.db'}") as other:
            assert (await other.checkpoints.load("t", saved)).state == b"s"  # committed, visible


def inline_statements(store: relaystore.Store) -> list[str]:
    """Every statement the event-loop (inline) writer connection runs from now on."""
    db = store.checkpoints._db  # type: ignore[attr-defined]
    assert isinstance(db, sqlite_backend.SqliteDatabase) and db._inline is not None
    sent: list[str] = []
    db._inline.set_trace_callback(sent.append)
    return sent


EVENT = {"type": "progress", "stage": "s"}


async def test_appends_of_concurrent_callers_share_commits_off_the_loop(store: relaystore.Store) -> None:
    """While a server has several requests in flight (relaystore._load), small writes skip the
    inline path, which commits alone on the event loop, and join the worker's group commits."""
    db = store.checkpoints._db  # type: ignore[attr-defined]
    on_loop, on_worker = inline_statements(store), []
    db._require().set_trace_callback(on_worker.append)

    async def request(i: int) -> str:
        with caller():
            await asyncio.sleep(0)  # every request is in flight before the first writes
            return await store.outputs.append(f"task-{i}", 0, "p", EVENT)

    refs = await asyncio.gather(*(request(i) for i in range(32)))
    assert "COMMIT" not in on_loop
    assert 1 <= on_worker.count("COMMIT") < 16  # 32 appends; alone each would commit once
    assert len({(await store.outputs.get(ref)).task_id for ref in refs}) == 32


async def test_a_lone_caller_still_writes_inline(store: relaystore.Store) -> None:
    on_loop = inline_statements(store)
    with caller():
        await store.outputs.append("task", 0, "p", EVENT)
    await store.outputs.append("task", 0, "p", EVENT)  # no caller counted at all: a library user
    assert on_loop.count("COMMIT") == 2
