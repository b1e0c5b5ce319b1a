"""benchmarks/peers/counting.py counts what it claims, on the real savers and servers.

The counts are protocol facts (statements the server executes, times the client waits), so they
are asserted exactly where the native savers' code fixes them; no timing is asserted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from benchmarks.peers.counting import OUTSIDE, OpCost, counting
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg import _cursor_base, sql

from relaystore.integrations.langgraph import RelaySaver


def _config(thread: str, checkpoint_id: str | None = None) -> Any:
    configurable = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def _put(saver: Any, thread: str) -> Any:
    checkpoint = empty_checkpoint()
    return await saver.aput(_config(thread), checkpoint, {"step": 0}, {})


@pytest.fixture
async def pg_saver(postgres_url: str) -> AsyncIterator[AsyncPostgresSaver]:
    schema = f"test_counting_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            url = f"{postgres_url}?options=-csearch_path%3D{schema}"
            async with AsyncPostgresSaver.from_conn_string(url) as saver:
                await saver.setup()
                yield saver
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def test_postgres_saver_writes_are_one_pipelined_round_trip(pg_saver: AsyncPostgresSaver) -> None:
    saved = await _put(pg_saver, "t1")
    writes = [("a", 1), ("b", 2), ("c", 3)]
    async with counting(pg_saver) as tally:
        await pg_saver.aput_writes(saved, writes, task_id="task")
        assert await pg_saver.aget_tuple(saved) is not None
        assert await pg_saver.aget_tuple(saved) is not None
    # executemany in a pipeline: one INSERT per write, one sync.
    assert tally["aput_writes"] == OpCost(calls=1, statements=3, round_trips=1)
    # The read is one query; the saver's connection prepares every query on first use
    # (prepare_threshold=0), and outside a pipeline that PREPARE is a round trip of its own.
    assert tally["aget_tuple"] == OpCost(calls=2, statements=2, round_trips=3)
    assert tally[OUTSIDE] == OpCost()


async def test_concurrent_calls_are_told_apart(pg_saver: AsyncPostgresSaver) -> None:
    saved = [await _put(pg_saver, f"t{k}") for k in range(4)]
    async with counting(pg_saver) as tally:
        await asyncio.gather(
            *(pg_saver.aput_writes(s, [("x", k)], task_id="task") for k, s in enumerate(saved)),
            *(pg_saver.aget_tuple(s) for s in saved),
            *(_drain(pg_saver.alist(s)) for s in saved),
        )
    assert tally["aput_writes"] == OpCost(calls=4, statements=4, round_trips=4)
    assert tally["aget_tuple"].calls == 4 and tally["aget_tuple"].statements == 4
    assert tally["alist"].calls == 4 and tally["alist"].statements == 4
    assert tally.calls_text() == "aput_writes 4, aget_tuple 4, alist 4"


async def _drain(items: Any) -> list[Any]:
    return [item async for item in items]


async def test_hooks_are_undone(pg_saver: AsyncPostgresSaver) -> None:
    original = _cursor_base.BaseCursor.__dict__["_execute_send"]
    async with counting(pg_saver) as tally:
        assert _cursor_base.BaseCursor.__dict__["_execute_send"] is not original
        assert "aput" in vars(pg_saver)
    assert _cursor_base.BaseCursor.__dict__["_execute_send"] is original
    assert "aput" not in vars(pg_saver)
    await _put(pg_saver, "after")
    assert tally.statements == 0 and tally["aput"].calls == 0


async def test_sqlite_statements_are_traced_through_the_worker_thread(tmp_path: Path) -> None:
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "native.db")) as saver:
        await saver.setup()
        async with counting(saver) as tally:
            saved = await _put(saver, "t1")
            await saver.aput_writes(saved, [("a", 1), ("b", 2)], task_id="task")
    # aiosqlite runs every statement on its own thread: counted there, charged to the call here.
    assert tally["aput"].statements >= 1 and tally["aput"].round_trips >= 1
    assert tally["aput_writes"].statements >= 2
    assert tally[OUTSIDE].statements == 0


async def test_relay_saver_connections_are_found(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    async with RelaySaver.from_url(url) as saver, counting(saver) as tally:
        saved = await _put(saver, "t1")
        assert await saver.aget_tuple(saved) is not None
    assert tally["aput"].statements >= 1
    assert tally["aget_tuple"].statements >= 1
