"""The outputs, adaptive and blob tables are created on their face's first use (a checkpoint-only
store keeps none of them), once across concurrent stores, and a database made when the main
migrations created them opens with its data and without DDL."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import relaystore
from relaystore.backends import sqlite as sqlite_backend
from relaystore.models import CheckpointMetadata
from relaystore.stores import Store
from relaystore.testing import docs

CHECKPOINT_TABLES = {"checkpoints", "checkpoint_writes", "thread_attachments", "relaystore_schema"}
FACE_TABLES = {"outputs", "output_parents", "runs", "documents", "blobs", "blob_chunks", "blob_uploads"}
TRACKS = {"relaystore_outputs_schema", "relaystore_adaptive_schema", "relaystore_blobs_schema"}
EVENT = {"type": "final", "content": {"kind": "inline", "value": 1}, "ok": True}


async def use_every_face(store: Store) -> tuple[Any, str]:
    """Writes through each lazily created face; returns what to read back."""
    ref = await store.outputs.append("task", 0, "agent", EVENT)
    await store.adaptive.store_accumulators("agent", docs.accumulator_state(count=3))
    digest = (await store.blobs.put(b"blob" * 1000)).sha256
    return ref, digest


async def read_every_face(store: Store, ref: Any, digest: str) -> None:
    assert (await store.outputs.get(ref)).event.content.value == 1
    assert docs.counter_of(await store.adaptive.load_accumulators("agent")) == 3
    assert await store.blobs.get(digest) == b"blob" * 1000


# --------------------------------------------------------------------------- sqlite


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}


async def test_sqlite_checkpoint_only_store_has_no_face_tables(tmp_path: Path) -> None:
    path = tmp_path / "lean.db"
    async with relaystore.connect(f"sqlite:///{path}") as store:
        await store.checkpoints.save("t", CheckpointMetadata.new("t"), b"s")
        info = await store.info()
        assert (info["outputs"], info["runs"], info["blobs"], info["documents"]) == (0, 0, 0, {})
    assert sqlite_tables(path) - {"sqlite_sequence"} == CHECKPOINT_TABLES
    async with relaystore.connect(f"sqlite:///{path}") as store:
        ref, digest = await use_every_face(store)
        await read_every_face(store, ref, digest)
    assert sqlite_tables(path) >= FACE_TABLES | TRACKS


async def test_sqlite_concurrent_first_uses_create_the_tables_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    stores = [await relaystore.connect(url) for _ in range(4)]
    try:
        refs = await asyncio.gather(*(s.outputs.append("task", 0, "agent", EVENT) for s in stores))
        assert len(set(refs)) == 4
        assert len(await stores[0].outputs.list(task_id="task")) == 4
    finally:
        for store in stores:
            await store.close()
    with sqlite3.connect(tmp_path / "race.db") as conn:
        assert conn.execute("SELECT version FROM relaystore_outputs_schema").fetchall() == [(1,)]


async def test_sqlite_file_from_before_the_face_tracks_keeps_its_tables(tmp_path: Path) -> None:
    """A version-3 file as relaystore then wrote it: every face's table made by the main track,
    documents WITHOUT ROWID. It upgrades (documents rebuilt), keeps its rows, and gets no
    face version table (its tables count as each face's version 1)."""
    path = tmp_path / "v3.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            f"""
            CREATE TABLE relaystore_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
            INSERT INTO relaystore_schema VALUES (1, 'then'), (2, 'then'), (3, 'then');
            {sqlite_backend.MIGRATIONS[0]};
            {sqlite_backend.MIGRATIONS[2]};
            CREATE TABLE documents (kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,
                PRIMARY KEY (kind, key)) WITHOUT ROWID;
            CREATE TABLE runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL,
                run_id TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (agent_id, run_id));
            CREATE INDEX runs_agent_seq ON runs (agent_id, seq);
            """
        )
    scratch = tmp_path / "scratch.db"  # the document row, as relaystore writes it
    async with relaystore.connect(f"sqlite:///{scratch}") as store:
        await store.adaptive.store_accumulators("agent", docs.accumulator_state(count=5))
    with sqlite3.connect(scratch) as source, sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO documents VALUES (?, ?, ?)", source.execute("SELECT * FROM documents"))
    assert "WITHOUT ROWID" in sqlite_sql(path, "documents")

    async with relaystore.connect(f"sqlite:///{path}") as store:
        assert docs.counter_of(await store.adaptive.load_accumulators("agent")) == 5
    assert "WITHOUT ROWID" not in sqlite_sql(path, "documents")
    assert "relaystore_adaptive_schema" not in sqlite_tables(path)


def sqlite_sql(path: Path, table: str) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0])


# --------------------------------------------------------------------------- postgres


@pytest.fixture
async def pg_schema(postgres_url: str) -> AsyncIterator[str]:
    schema = f"rs_faces_{uuid.uuid4().hex}"
    yield schema
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def pg_tables(url: str, schema: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        return {name for (name,) in await cur.fetchall()}


async def test_postgres_tables_on_first_use_once_and_legacy_schemas(
    postgres_url: str, pg_schema: str
) -> None:
    async with relaystore.connect(postgres_url, schema=pg_schema) as store:
        await store.checkpoints.save("t", CheckpointMetadata.new("t"), b"s")
        assert (await store.info())["outputs"] == 0
    assert await pg_tables(postgres_url, pg_schema) == CHECKPOINT_TABLES

    stores = [await relaystore.connect(postgres_url, schema=pg_schema) for _ in range(3)]
    try:  # three stores (pools) use each face at once: the tables are made once
        found = await asyncio.gather(*(use_every_face(s) for s in stores))
        for ref, digest in found:
            await read_every_face(stores[0], ref, digest)
    finally:
        for store in stores:
            await store.close()
    assert await pg_tables(postgres_url, pg_schema) >= FACE_TABLES | TRACKS

    # A schema from before the face tracks: the same tables, no track tables. It opens with its
    # data and no DDL (a role without CREATE rights can use it).
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        for track in TRACKS:
            await conn.execute(
                sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(pg_schema), sql.Identifier(track))
            )
    async with relaystore.connect(postgres_url, schema=pg_schema) as store:
        for ref, digest in found:
            await read_every_face(store, ref, digest)
        await use_every_face(store)
    assert not TRACKS & await pg_tables(postgres_url, pg_schema)
