"""Adaptive state of the SQLite backend: agent runs in ``runs``, every other document in
``documents`` keyed ``(kind, key)``. An update reads and writes inside one write transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from relaystore.backends._lazy import CreatedOnFirstUse
from relaystore.backends.sqlite.database import SqliteDatabase, few, placeholders
from relaystore.errors import Conflict
from relaystore.stores import AdaptiveStore, DocKind
from relaystore.stores.adaptive import AGENT_DOC_KINDS


def _keys_after(table_sql: str, params: list[Any], after: str | None, limit: int | None) -> tuple[str, list]:
    sql = table_sql
    if after is not None:
        sql = f"SELECT k FROM ({table_sql}) WHERE k > ?"
        params = [*params, after]
    return f"{sql} ORDER BY 1 LIMIT ?", [*params, -1 if limit is None else limit]


class SqliteAdaptiveStore(CreatedOnFirstUse, AdaptiveStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _create_tables(self) -> None:
        await self._db.ensure_face("adaptive")

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        def store(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO runs (agent_id, run_id, doc) VALUES (?,?,?)", (agent_id, run_id, text)
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"agent {agent_id!r} already has run {run_id}") from None

        await self._db.write(store, inline_bytes=len(text))

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT seq, run_id, doc FROM runs WHERE agent_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (agent_id, -1 if after is None else after, -1 if limit is None else limit),
            ).fetchall()
        )
        return [(seq, f"runs row seq={seq} ({agent_id}:{run_id})", doc) for seq, run_id, doc in rows]

    async def _count_runs(self, agent_id: str) -> int:
        return await self._db.read(
            lambda c: c.execute("SELECT COUNT(*) FROM runs WHERE agent_id = ?", (agent_id,)).fetchone()[0]
        )

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        return await self._db.write(
            lambda c: (
                c.execute(
                    "DELETE FROM runs WHERE agent_id = ? AND seq NOT IN "
                    "(SELECT seq FROM runs WHERE agent_id = ? ORDER BY seq DESC LIMIT ?)",
                    (agent_id, agent_id, keep),
                ).rowcount
            )
        )

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        kinds = list(AGENT_DOC_KINDS)
        union = (
            "SELECT agent_id AS k FROM runs UNION "
            f"SELECT key AS k FROM documents WHERE kind IN ({placeholders(kinds)})"
        )
        sql, params = _keys_after(union, kinds, after, limit)
        return await self._db.read(lambda c: [r[0] for r in c.execute(sql, params)])

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM documents WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone(),
            inline=True,
        )
        return None if row is None else row[0]

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        await self._db.write(lambda c: _upsert_doc(c, kind, key, text))

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        return await self._db.write(
            lambda c: c.execute("DELETE FROM documents WHERE kind = ? AND key = ?", (kind, key)).rowcount > 0
        )

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        sql, params = _keys_after("SELECT key AS k FROM documents WHERE kind = ?", [kind], after, limit)
        return await self._db.read(lambda c: [r[0] for r in c.execute(sql, params)], inline=few(limit))

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        def update(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT doc FROM documents WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            current = None if row is None else row[0]
            new = apply(current)
            if new is None:
                return current
            _upsert_doc(conn, kind, key, new)
            return new

        return await self._db.write(update)


def _upsert_doc(conn: sqlite3.Connection, kind: str, key: str, text: str) -> None:
    conn.execute(
        "INSERT INTO documents (kind, key, doc) VALUES (?,?,?) "
        "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
        (kind, key, text),
    )
