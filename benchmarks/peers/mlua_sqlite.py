"""mlua-swarm's SQLite output store, rebuilt in Python from the spec (no code ported).

Per output-and-checkpoint-stores.md §A "SQLite backend": one table ``outputs`` with the event and
parent refs as JSON text, three indexes, and ``seq = COALESCE(MAX(seq), 0) + 1`` computed inside a
default (DEFERRED) transaction. No PRAGMAs: rollback journal, no busy_timeout, default
``synchronous``. One connection driven by one dedicated thread, closures in FIFO order, as the
Rust ``AsyncIsle`` does, so the thread hop matches relaystore's and the layout is what differs.

Reads follow §A "Queries": ``get_latest_by_name_in_run`` filters producer, task and attempt, newest
``seq`` first, ``LIMIT 1`` (served by ``ix_outputs_producer_run``); ``list_for_attempt`` filters
task and attempt, ``seq`` ascending, no limit (``ix_outputs_attempt``). Every record is decoded
into a typed record, as serde hands mlua-swarm's callers an ``OutputRecord`` (§A): the event
column into the same ``OutputEvent`` union relaystore uses, the parent refs into ``OutputRef``s.
So both sides return validated models and the ratio measures the store, not dicts against models.

mlua-swarm has no lineage query. :func:`ancestors_by_get` is what its user would write (one
``get`` per record); :meth:`MluaSqliteOutputs.ancestors_cte` is an extra, not in mlua-swarm: the
best its layout allows in SQL, a recursive CTE over ``parent_refs_json`` with ``json_each``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, NonNegativeInt, TypeAdapter

from relaystore.models.outputs import OutputEvent, OutputRef

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


COLUMNS = "id, task_id, attempt, producer_agent, event_json, parent_refs_json"

Row = tuple[str, str, int, str, str, str]
"""A stored output as :data:`COLUMNS` selects it."""


class Record(BaseModel):
    """mlua-swarm's ``OutputRecord``: no ``seq`` or ``created_at`` (its table has no timestamp)."""

    id: OutputRef
    task_id: str
    attempt: NonNegativeInt
    producer_agent: str
    event: OutputEvent
    parent_refs: list[OutputRef]


_EVENT: TypeAdapter[Any] = TypeAdapter(OutputEvent)
_REFS: TypeAdapter[list[OutputRef]] = TypeAdapter(list[OutputRef])

NewOutput = tuple[str, int, str, dict[str, Any], list[str]]
"""The arguments of one append: task_id, attempt, producer_agent, event, parent_refs."""

# Each id once (UNION dedupes, so a DAG's shared ancestors are walked once); SQLite runs the
# recursion as a FIFO queue, so ids come out breadth-first, nearest first.
ANCESTORS_CTE = f"""
WITH RECURSIVE walk(id) AS (
    SELECT parent.value FROM outputs AS o, json_each(o.parent_refs_json) AS parent WHERE o.id = ?
    UNION
    SELECT parent.value FROM walk JOIN outputs AS o ON o.id = walk.id, json_each(o.parent_refs_json) AS parent
)
SELECT {", ".join("o." + c for c in COLUMNS.split(", "))} FROM walk JOIN outputs AS o ON o.id = walk.id
"""


def new_ref() -> str:
    """A ref as mlua-swarm makes one: ``out-`` + 10 hex."""
    return "out-" + secrets.token_hex(5)


def decode(row: Row) -> Record:
    ref, task_id, attempt, producer, event_json, parents_json = row
    # Column by column, as serde_json::from_str does for each JSON column.
    return Record(
        id=ref,  # type: ignore[arg-type]  # validated into an OutputRef like every field
        task_id=task_id,
        attempt=attempt,
        producer_agent=producer,
        event=_EVENT.validate_json(event_json),
        parent_refs=_REFS.validate_json(parents_json),
    )


class MluaSqliteOutputs:
    """mlua-swarm's SQLite output store: its layout, transaction shape and queries."""

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
        ref = new_ref()
        row = (ref, task_id, attempt, producer_agent, json.dumps(event), json.dumps(parent_refs))
        await self._run(lambda: self._insert_rows([row]))
        return ref

    async def fill(self, outputs: Sequence[tuple[str, NewOutput]]) -> None:
        """Store ``(ref, append arguments)`` pairs in one transaction: untimed setup only.

        The rows are those ``append`` would write (refs made by :func:`new_ref`, ``seq`` counting
        up from ``MAX(seq) + 1``); committing once instead of per row just makes prefills quick.
        """
        rows = [
            (ref, task, attempt, producer, json.dumps(event), json.dumps(parents))
            for ref, (task, attempt, producer, event, parents) in outputs
        ]
        await self._run(lambda: self._insert_rows(rows))

    def _insert_rows(self, rows: Sequence[tuple[str, str, int, str, str, str]]) -> None:
        conn = self._require()
        conn.execute("BEGIN")  # DEFERRED, rusqlite's default
        try:
            (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM outputs").fetchone()
            conn.executemany(
                f"INSERT INTO outputs ({COLUMNS}, seq) VALUES (?,?,?,?,?,?,?)",
                [(*row, seq + k) for k, row in enumerate(rows)],
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def get(self, ref: str) -> Record:
        """The record with ``ref``, event and parent refs decoded; KeyError if absent."""
        row = await self._fetchone(f"SELECT {COLUMNS} FROM outputs WHERE id = ?", (ref,))
        if row is None:
            raise KeyError(ref)
        return decode(row)

    async def get_latest_by_name_in_run(self, task_id: str, attempt: int, name: str) -> Record:
        """Newest record of producer ``name`` in exactly this (task, attempt); KeyError if none."""
        row = await self._fetchone(
            f"SELECT {COLUMNS} FROM outputs WHERE producer_agent = ? AND task_id = ? AND attempt = ?"
            " ORDER BY seq DESC LIMIT 1",
            (name, task_id, attempt),
        )
        if row is None:
            raise KeyError(f"{task_id}/{attempt}/{name}")
        return decode(row)

    async def list_for_attempt(self, task_id: str, attempt: int) -> list[Record]:
        """Every record of one (task, attempt) in insertion order; empty if none."""
        rows = await self._fetchall(
            f"SELECT {COLUMNS} FROM outputs WHERE task_id = ? AND attempt = ? ORDER BY seq",
            (task_id, attempt),
        )
        return [decode(row) for row in rows]

    async def ancestors_cte(self, ref: str) -> list[Record]:
        """Not in mlua-swarm: every ancestor of ``ref`` in one recursive query, each once."""
        return [decode(row) for row in await self._fetchall(ANCESTORS_CTE, (ref,))]

    async def _fetchone(self, sql: str, params: tuple[Any, ...]) -> Row | None:
        return await self._run(lambda: self._require().execute(sql, params).fetchone())  # type: ignore[no-any-return]

    async def _fetchall(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        return await self._run(lambda: self._require().execute(sql, params).fetchall())

    def _require(self) -> sqlite3.Connection:
        assert self._conn is not None, "open() first"
        return self._conn


async def ancestors_by_get(store: MluaSqliteOutputs, ref: str) -> list[Record]:
    """Ancestors of ``ref`` as an mlua-swarm user finds them: breadth-first, one ``get`` per
    record, each once; parent refs that are not stored are skipped (the store never checks them)."""
    seen = {ref}
    queue = deque((await store.get(ref)).parent_refs)
    found: list[Record] = []
    while queue:
        parent = queue.popleft()
        if parent in seen:
            continue
        seen.add(parent)
        try:
            record = await store.get(parent)
        except KeyError:
            continue
        found.append(record)
        queue.extend(record.parent_refs)
    return found
