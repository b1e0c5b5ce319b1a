"""Outputs of the SQLite backend: one ``outputs`` row per record, its parents in ``output_parents``.

Lineage (every ancestor of a record) is one recursive query over the records' ``parent_refs``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import TypeAdapter

from relaystore.backends._lazy import CreatedOnFirstUse
from relaystore.backends.sqlite.database import SqliteDatabase, chunks, few, placeholders
from relaystore.errors import Conflict
from relaystore.models.outputs import OutputRecord, OutputRef
from relaystore.stores import OutputFilter, OutputStore
from relaystore.stores._common import parse_json, parse_rows

_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)


def _record(seq: int, text: str) -> OutputRecord:
    record = parse_json(_RECORD, text, f"outputs row seq={seq}")
    record.seq = seq
    return record


def _records(rows: Iterable[tuple[int, str]], skip_corrupt: bool) -> list[OutputRecord]:
    if not skip_corrupt:
        return [_record(seq, text) for seq, text in rows]
    decoded = parse_rows(_RECORD, ((seq, f"outputs row seq={seq}", text) for seq, text in rows))
    for seq, record in decoded:
        record.seq = seq  # a Skipped placeholder keeps its seq too, for paging
    return [record for _, record in decoded]


def _where(flt: OutputFilter) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for column, value in (
        ("task_id", flt.task_id),
        ("attempt", flt.attempt),
        ("producer_agent", flt.producer_agent),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SqliteOutputStore(CreatedOnFirstUse, OutputStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _create_tables(self) -> None:
        await self._db.ensure_face("outputs")

    async def _insert(self, record: OutputRecord) -> int:
        doc = record.model_dump_json(exclude={"seq"})
        parents = list(dict.fromkeys(record.parent_refs))

        def insert(conn: sqlite3.Connection) -> int:
            try:
                cursor = conn.execute(
                    "INSERT INTO outputs (id, task_id, attempt, producer_agent, record) VALUES (?,?,?,?,?)",
                    (record.id, record.task_id, record.attempt, record.producer_agent, doc),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"output {record.id} already exists") from None
            seq = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO output_parents (parent, child_seq) VALUES (?, ?)", ((p, seq) for p in parents)
            )
            return seq

        return await self._db.write(insert, inline_bytes=len(doc))

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        def get(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            rows: list[tuple[int, str]] = []
            for chunk in chunks(refs):
                rows += conn.execute(
                    f"SELECT seq, record FROM outputs WHERE id IN ({placeholders(chunk)})", list(chunk)
                ).fetchall()
            return rows

        return _records(await self._db.read(get, inline=few(len(refs))), skip_corrupt=False)

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        where, params = _where(flt)
        row = await self._db.read(
            lambda c: c.execute(
                f"SELECT seq, record FROM outputs{where} ORDER BY seq DESC LIMIT 1", params
            ).fetchone(),
            inline=True,
        )
        return None if row is None else _record(*row)

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        where, params = _where(flt)
        if after is not None:
            where += (" AND" if where else " WHERE") + " seq > ?"
            params.append(after)
        params.append(-1 if limit is None else limit)
        sql = f"SELECT seq, record FROM outputs{where} ORDER BY seq LIMIT ?"
        return _records(await self._db.read(lambda c: c.execute(sql, params).fetchall()), skip_corrupt=True)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        def children(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            rows: list[tuple[int, str]] = []
            for chunk in chunks(refs):
                rows += conn.execute(
                    "SELECT DISTINCT o.seq, o.record FROM output_parents p "
                    f"JOIN outputs o ON o.seq = p.child_seq WHERE p.parent IN ({placeholders(chunk)})",
                    list(chunk),
                ).fetchall()
            return rows

        return _records(await self._db.read(children), skip_corrupt=True)

    async def _ancestor_records(self, start: OutputRecord) -> list[OutputRecord] | None:
        def reach(conn: sqlite3.Connection) -> list[tuple[int, str]] | None:
            try:
                return conn.execute(_ANCESTORS, (json.dumps(start.parent_refs),)).fetchall()
            except sqlite3.OperationalError as exc:
                if "malformed JSON" in str(exc):
                    return None  # the walk reads record by record and names the corrupt one
                raise

        rows = await self._db.read(reach)
        return None if rows is None else _records(rows, skip_corrupt=False)


# Each id once (UNION), however many paths lead to it: the walk orders them by level afterwards.
_ANCESTORS = """
WITH RECURSIVE reach(id) AS (
    SELECT value FROM json_each(?)
    UNION
    SELECT parent.value FROM reach JOIN outputs AS o ON o.id = reach.id,
        json_each(o.record, '$.parent_refs') AS parent
)
SELECT o.seq, o.record FROM reach JOIN outputs AS o ON o.id = reach.id
"""
