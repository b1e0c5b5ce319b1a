"""mlua-swarm's SQLite output store, rebuilt in Python from the spec (no code ported).

Per output-and-checkpoint-stores.md §A "SQLite backend": one table ``outputs`` with the event and
parent refs as JSON text, three indexes, and ``seq = COALESCE(MAX(seq), 0) + 1`` computed inside a
default (DEFERRED) transaction. No PRAGMAs: rollback journal, no busy_timeout, default
``synchronous``. One connection driven by one dedicated thread, closures in FIFO order, as the
Rust ``AsyncIsle`` does, so the thread hop matches relaystore's and the layout is what differs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outputs (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    producer_agent TEXT NOT NULL,
    event_json TEXT NOT NULL,
    parent_refs_json TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_outputs_attempt ON outputs (task_id, attempt, seq);
CREATE INDEX IF NOT EXISTS ix_outputs_producer ON outputs (producer_agent, seq);
CREATE INDEX IF NOT EXISTS ix_outputs_producer_run ON outputs (producer_agent, task_id, attempt, seq);
"""


class MluaSqliteOutputs:
    """``append`` and ``get`` with mlua-swarm's SQLite layout and transaction shape."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlua-isle")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        def connect() -> None:
            # isolation_level=None: we issue BEGIN ourselves, as rusqlite's transaction() does.
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._conn.executescript(SCHEMA)

        await self._run(connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._conn is not None:
                self._conn.close()

        await self._run(disconnect)
        self._thread.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def append(
        self, task_id: str, attempt: int, producer_agent: str, event: dict[str, Any], parent_refs: list[str]
    ) -> str:
        """Store one output; the store makes the ref (``out-`` + 10 hex, as mlua-swarm)."""
        ref = "out-" + secrets.token_hex(5)
        event_json, parents_json = json.dumps(event), json.dumps(parent_refs)

        def insert() -> None:
            conn = self._require()
            conn.execute("BEGIN")  # DEFERRED, rusqlite's default
            try:
                (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM outputs").fetchone()
                conn.execute(
                    "INSERT INTO outputs (id, task_id, attempt, producer_agent, event_json,"
                    " parent_refs_json, seq) VALUES (?,?,?,?,?,?,?)",
                    (ref, task_id, attempt, producer_agent, event_json, parents_json, seq),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        await self._run(insert)
        return ref

    async def get(self, ref: str) -> dict[str, Any]:
        """The record with ``ref``, event and parent refs decoded; KeyError if absent."""

        def select() -> tuple[Any, ...] | None:
            cursor = self._require().execute(
                "SELECT id, task_id, attempt, producer_agent, event_json, parent_refs_json"
                " FROM outputs WHERE id = ?",
                (ref,),
            )
            return cursor.fetchone()  # type: ignore[no-any-return]

        row = await self._run(select)
        if row is None:
            raise KeyError(ref)
        ref_, task_id, attempt, producer, event_json, parents_json = row
        return {
            "id": ref_,
            "task_id": task_id,
            "attempt": int(attempt),
            "producer_agent": producer,
            "event": json.loads(event_json),
            "parent_refs": json.loads(parents_json),
        }

    def _require(self) -> sqlite3.Connection:
        assert self._conn is not None, "open() first"
        return self._conn
