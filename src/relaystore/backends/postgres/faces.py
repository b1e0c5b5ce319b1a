"""The PostgreSQL tables of the outputs, adaptive and blob faces, created on first use.

Each face has its own versioned migrations, recorded in ``{schema}.relaystore_<face>_schema``
and applied in one transaction under an advisory lock (so concurrent processes create the
tables once), the way the item face keeps ``relaystore_items_schema``. A schema made before the
faces had their own tracks already holds their tables (the main track's migrations 1, 2 and 4
made them): it counts as version 1 of each face and needs no DDL, so a role without CREATE
rights still opens a schema that a deployment step migrated.
"""

from __future__ import annotations

from typing import Any

from relaystore.backends.postgres.database import Conn, PgDatabase
from relaystore.backends.postgres.migrations import VERSION_TABLE, upgrade
from relaystore.errors import BackendUnavailable

# Version 1 of each face is the shape the main track left its tables in (outputs.record json,
# as the main track's migration 4 made it).
FACES: dict[str, list[list[str]]] = {
    "outputs": [
        [
            """CREATE TABLE IF NOT EXISTS {s}.outputs (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT COLLATE "C" NOT NULL UNIQUE,
            task_id TEXT COLLATE "C" NOT NULL,
            attempt BIGINT NOT NULL,
            producer_agent TEXT COLLATE "C" NOT NULL,
            record JSON NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS outputs_attempt ON {s}.outputs (task_id, attempt, seq)",
            "CREATE INDEX IF NOT EXISTS outputs_producer ON {s}.outputs (producer_agent, seq)",
            "CREATE INDEX IF NOT EXISTS outputs_producer_run "
            "ON {s}.outputs (producer_agent, task_id, attempt, seq)",
            """CREATE TABLE IF NOT EXISTS {s}.output_parents (
            parent TEXT COLLATE "C" NOT NULL,
            child_seq BIGINT NOT NULL REFERENCES {s}.outputs (seq) ON DELETE CASCADE,
            PRIMARY KEY (parent, child_seq))""",
        ],
    ],
    "adaptive": [
        [
            """CREATE TABLE IF NOT EXISTS {s}.runs (
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            agent_id TEXT COLLATE "C" NOT NULL,
            run_id TEXT COLLATE "C" NOT NULL,
            doc JSON NOT NULL,
            CONSTRAINT runs_agent_seq PRIMARY KEY (agent_id, seq),
            UNIQUE (agent_id, run_id))""",
            """CREATE TABLE IF NOT EXISTS {s}.documents (
            kind TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            doc JSON NOT NULL,
            PRIMARY KEY (kind, key))""",
        ],
    ],
    "blobs": [
        [
            """CREATE TABLE IF NOT EXISTS {s}.blobs (
            sha256 TEXT COLLATE "C" PRIMARY KEY,
            size BIGINT NOT NULL,
            mime TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
            """CREATE TABLE IF NOT EXISTS {s}.blob_chunks (
            owner TEXT COLLATE "C" NOT NULL,
            idx INTEGER NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (owner, idx))""",
            """CREATE TABLE IF NOT EXISTS {s}.blob_uploads (
            upload_id TEXT COLLATE "C" PRIMARY KEY,
            started_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
        ],
    ],
}
# The table whose presence, in a schema without the face's version table, means version 1.
_FIRST_TABLE = {"outputs": "outputs", "adaptive": "runs", "blobs": "blobs"}


async def has_table(conn: Conn, schema: str, table: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s", (schema, table)
    )
    return await cur.fetchone() is not None


async def create_face(db: PgDatabase, face: str) -> None:
    """Apply the face's missing migrations in one transaction, under the face's advisory lock."""
    async with db.transaction() as conn:
        await db.lock(conn, f"{face}-migrate")
        if not await has_table(conn, db.schema, VERSION_TABLE):  # dropped since the store opened
            raise BackendUnavailable(f"schema {db.schema!r} has no relaystore tables (was it dropped?)")
        baseline = 1 if await has_table(conn, db.schema, _FIRST_TABLE[face]) else 0
        table = f"relaystore_{face}_schema"
        await upgrade(conn, db.schema, FACES[face], table, f"the {face} tables", baseline=baseline)


async def face_counts(db: PgDatabase, conn: Conn) -> dict[str, Any]:
    """``info()``'s counts of the lazily created faces: 0 (and no documents) while a table is absent."""

    async def count(table: str) -> int:
        if not await has_table(conn, db.schema, table):
            return 0
        cur = await conn.execute(db.sql(f"SELECT COUNT(*) FROM {{s}}.{table}"))
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    documents: dict[str, int] = {}
    if await has_table(conn, db.schema, "documents"):
        cur = await conn.execute(db.sql("SELECT kind, COUNT(*) FROM {s}.documents GROUP BY kind"))
        documents = dict(await cur.fetchall())
    return {
        "outputs": await count("outputs"),
        "runs": await count("runs"),
        "blobs": await count("blobs"),
        "documents": documents,
    }
