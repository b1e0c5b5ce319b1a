"""The PostgreSQL floor: one psycopg autocommit connection, one statement per call.

Same row shape as relaystore's ``checkpoints`` table (identity ``seq``, ``jsonb`` metadata,
``bytea`` state, primary key ``(thread_id, seq)``) in a schema of its own, so a save is exactly one
round trip and one commit: no pool check, no transaction block, no advisory lock. Whatever
relaystore's PostgreSQL backend does on top of this is its overhead (and its guarantees).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.harness import PG_URL

TABLE = """CREATE TABLE {t} (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    thread_id TEXT COLLATE "C" NOT NULL,
    checkpoint_id TEXT COLLATE "C" NOT NULL,
    metadata JSONB NOT NULL,
    state BYTEA NOT NULL,
    PRIMARY KEY (thread_id, seq))"""


class RawPostgres:
    """Checkpoint statements (insert, latest, count, distinct threads, COPY) on a private schema's table."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        self.conn = conn
        table = sql.Identifier(schema, "checkpoints")
        self._create = sql.SQL(TABLE).format(t=table)
        self._insert = sql.SQL(
            "INSERT INTO {} (thread_id, checkpoint_id, metadata, state) VALUES (%s, %s, %s::jsonb, %s)"
        ).format(table)
        self._latest = sql.SQL(
            "SELECT metadata::text, state FROM {} WHERE thread_id = %s ORDER BY seq DESC LIMIT 1"
        ).format(table)
        self._count = sql.SQL("SELECT COUNT(*) FROM {} WHERE thread_id = %s").format(table)
        self._thread_ids = sql.SQL("SELECT DISTINCT thread_id FROM {} ORDER BY thread_id").format(table)
        self._copy = sql.SQL("COPY {} (thread_id, checkpoint_id, metadata, state) FROM STDIN").format(table)
        self._analyze = sql.SQL("ANALYZE {}").format(table)

    @classmethod
    @asynccontextmanager
    async def open(cls, schema: str) -> AsyncIterator[RawPostgres]:
        """Create ``schema`` and its table; the caller drops the schema afterwards."""
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            raw = cls(conn, schema)
            await conn.execute(raw._create)
            yield raw

    async def insert_checkpoint(self, thread_id: str, metadata: dict[str, Any], state: bytes) -> None:
        await self.conn.execute(self._insert, (thread_id, metadata["id"], json.dumps(metadata), state))

    async def latest_checkpoint(self, thread_id: str) -> tuple[dict[str, Any], bytes] | None:
        cur = await self.conn.execute(self._latest, (thread_id,))
        row = await cur.fetchone()
        return None if row is None else (json.loads(row[0]), row[1])

    async def count_checkpoints(self, thread_id: str) -> int:
        cur = await self.conn.execute(self._count, (thread_id,))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def thread_ids(self) -> list[str]:
        cur = await self.conn.execute(self._thread_ids)
        return [r[0] for r in await cur.fetchall()]

    async def copy_checkpoints(self, rows: Iterable[tuple[str, dict[str, Any], bytes]]) -> None:
        """Bulk prefill: COPY ``(thread_id, metadata, state)`` rows, then ANALYZE, as relaystore's
        prefill does (``bulk_fill_postgres``), so both tables start with fresh statistics."""
        async with self.conn.cursor() as cur, cur.copy(self._copy) as sink:
            for thread_id, metadata, state in rows:
                await sink.write_row((thread_id, metadata["id"], json.dumps(metadata), state))
        await self.conn.execute(self._analyze)
