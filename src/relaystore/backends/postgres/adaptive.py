"""Adaptive state of the PostgreSQL backend: ``{schema}.runs`` and ``{schema}.documents``.

Both hold ``json``, the exact text written. A read-modify-write (``update_*``) is one transaction
under an advisory lock on the document, so ``apply`` runs once, never retried; it runs on the event
loop while that transaction holds the lock and a pooled connection, so it should be quick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from psycopg import errors as pg_errors

from relaystore.backends._lazy import CreatedOnFirstUse
from relaystore.backends.postgres.database import Conn, PgDatabase
from relaystore.backends.postgres.faces import create_face
from relaystore.backends.postgres.paging import after_key, key_range, skip_scan
from relaystore.errors import Conflict
from relaystore.stores import AdaptiveStore, DocKind
from relaystore.stores.adaptive import AGENT_DOC_KINDS


class PgAdaptiveStore(CreatedOnFirstUse, AdaptiveStore):
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def _create_tables(self) -> None:
        await create_face(self._db, "adaptive")

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        async with self._db.transaction() as conn:
            try:
                await conn.execute(
                    self._db.sql("INSERT INTO {s}.runs (agent_id, run_id, doc) VALUES (%s, %s, %s::json)"),
                    (agent_id, run_id, text),
                )
            except pg_errors.UniqueViolation:
                raise Conflict(f"agent {agent_id!r} already has run {run_id}") from None

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        rows = await self._db.all(
            "SELECT seq, run_id, doc::text FROM {s}.runs WHERE agent_id = %s AND seq > %s "
            "ORDER BY seq LIMIT %s",
            (agent_id, -1 if after is None else after, limit),
        )
        table = f"{self._db.schema}.runs"
        return [(seq, f"{table} row seq={seq} ({agent_id}:{run_id})", doc) for seq, run_id, doc in rows]

    async def _count_runs(self, agent_id: str) -> int:
        return int(await self._db.scalar("SELECT COUNT(*) FROM {s}.runs WHERE agent_id = %s", (agent_id,)))

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        return await self._db.rowcount(
            "DELETE FROM {s}.runs WHERE agent_id = %s AND seq <= "
            "(SELECT seq FROM {s}.runs WHERE agent_id = %s ORDER BY seq DESC OFFSET %s LIMIT 1)",
            (agent_id, agent_id, keep),
        )

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        # The first `limit` distinct agents of runs and of documents, merged: the first `limit`
        # of the union are among them. DISTINCT matters: one agent has up to three documents.
        # Named parameters throughout: the skip scan's are named, and psycopg cannot mix styles.
        rows = await self._db.all(
            f"SELECT k FROM (({skip_scan('runs', 'agent_id')}) UNION "
            "(SELECT DISTINCT key FROM {s}.documents WHERE kind = ANY(%(kinds)s::text[]) "
            "AND key > %(after)s ORDER BY key LIMIT %(limit)s)) AS agents ORDER BY k LIMIT %(limit)s",
            {**key_range(after, None, limit), "kinds": list(AGENT_DOC_KINDS)},
        )
        return [r[0] for r in rows]

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        return cast(
            str | None,
            await self._db.scalar(
                "SELECT doc::text FROM {s}.documents WHERE kind = %s AND key = %s", (kind, key)
            ),
        )

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        async with self._db.connection() as conn:
            await self._upsert(conn, kind, key, text)

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        return (
            await self._db.rowcount("DELETE FROM {s}.documents WHERE kind = %s AND key = %s", (kind, key)) > 0
        )

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        rows = await self._db.all(
            "SELECT key FROM {s}.documents WHERE kind = %s AND key > %s ORDER BY key LIMIT %s",
            (kind, after_key(after), limit),
        )
        return [r[0] for r in rows]

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        async with self._db.transaction() as conn:
            # An advisory lock rather than SELECT … FOR UPDATE: it also covers a document that
            # does not exist yet, so two first writers cannot both start from None.
            await self._db.lock(conn, "doc", kind, key)
            cur = await conn.execute(
                self._db.sql("SELECT doc::text FROM {s}.documents WHERE kind = %s AND key = %s"), (kind, key)
            )
            row = await cur.fetchone()
            current = None if row is None else cast(str, row[0])
            new = apply(current)
            if new is None:
                return current
            await self._upsert(conn, kind, key, new)
            return new

    async def _upsert(self, conn: Conn, kind: str, key: str, text: str) -> None:
        await conn.execute(
            self._db.sql(
                "INSERT INTO {s}.documents (kind, key, doc) VALUES (%s, %s, %s::json) "
                "ON CONFLICT (kind, key) DO UPDATE SET doc = EXCLUDED.doc"
            ),
            (kind, key, text),
        )
