"""The PostgreSQL backend's tables, as versioned migrations, and the code that applies them.

Migrations are versioned in ``{schema}.relaystore_schema`` and run at open under an advisory
lock; :func:`migrate` also runs inside a caller's own transaction. The item face keeps its own
list and version table (``relaystore_items_schema``, see :mod:`.items`), applied the same way by
:func:`upgrade`.
"""

from __future__ import annotations

from typing import cast

import psycopg
from psycopg import sql

from relaystore.backends.postgres.database import LOCK, Conn, compose, translate
from relaystore.backends.postgres.url import DEFAULT_SCHEMA, check_schema_name
from relaystore.errors import BackendUnavailable

# Each migration is a list of statements; ``{s}`` is the quoted schema. Plain CREATE INDEX (never
# CONCURRENTLY) so that a migration can run inside the caller's transaction.
# Ids are COLLATE "C" so that listings sort by code point whatever the database's locale.
# Checkpoints and runs have no index on seq alone, on purpose: given one, the planner may answer
# "latest of thread X" by walking all seqs backwards and filtering (it does when X holds a large
# share of rows), which reads every newer row of every other thread. Keyed (thread_id, seq), the
# latest checkpoint and a page of a thread are one index descent whatever the table holds.
# The main track: checkpoints with their writes and attachments. The outputs, adaptive and blob
# faces were created here by migrations 1 and 2 before they had tracks of their own (.faces: a
# store used for checkpoints only keeps no empty tables of theirs); a schema made then keeps
# them, and a new schema gets them on first use, in the same shape.
MIGRATIONS: list[list[str]] = [
    [  # 1: checkpoints (and, before the face tracks, outputs, output_parents, runs, documents)
        """CREATE TABLE {s}.checkpoints (
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_id TEXT COLLATE "C" NOT NULL,
            metadata JSONB NOT NULL,
            state BYTEA NOT NULL,
            CONSTRAINT checkpoints_thread_seq PRIMARY KEY (thread_id, seq),
            UNIQUE (thread_id, checkpoint_id))""",
    ],
    [],  # 2: blobs (now the blob face's own track, see .faces)
    [  # 3: pending writes of a checkpoint, and attachments shared by a thread's checkpoints
        # One column per field: the value stays raw bytea (no base64, no JSON parse on read).
        # The primary key's (thread_id, checkpoint_id) prefix serves every cascade delete.
        """CREATE TABLE {s}.checkpoint_writes (
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_id TEXT COLLATE "C" NOT NULL,
            task_id TEXT COLLATE "C" NOT NULL,
            idx BIGINT NOT NULL,
            channel TEXT COLLATE "C" NOT NULL,
            type TEXT COLLATE "C",
            task_path TEXT COLLATE "C" NOT NULL,
            value BYTEA NOT NULL,
            PRIMARY KEY (thread_id, checkpoint_id, task_id, idx))""",
        """CREATE TABLE {s}.thread_attachments (
            thread_id TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            value BYTEA NOT NULL,
            PRIMARY KEY (thread_id, key))""",
    ],
    [  # 4: output records as json, the exact text: jsonb rewrote 1e20 as the integer 1000…0
        # (and changed 5.771043964779723e16) and refused \u0000. Rows written as jsonb keep the
        # text jsonb already normalized; nothing can restore what it lost.
        # (a schema whose outputs face was never used has no such table: it gets json directly)
        "ALTER TABLE IF EXISTS {s}.outputs ALTER COLUMN record TYPE json USING record::text::json",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
VERSION_TABLE = "relaystore_schema"


async def migrate(conn: Conn, schema: str = DEFAULT_SCHEMA) -> int:
    """Create or upgrade relaystore's tables in ``schema`` on ``conn``; return the schema version.

    Works on an autocommit connection (it commits its own transaction) and inside a transaction
    the caller has open (it uses a savepoint, and the caller's COMMIT or ROLLBACK decides).
    Concurrent callers are serialized by an advisory lock held until their transaction ends.
    Raises :class:`InvalidInput` for a bad schema name and :class:`BackendUnavailable` if the
    schema is newer than this relaystore or the server fails.
    """
    check_schema_name(schema)
    try:
        async with conn.transaction():
            await conn.execute(LOCK, (f"relaystore:migrate:{schema}",))
            return await upgrade(
                conn, schema, MIGRATIONS[:SCHEMA_VERSION], VERSION_TABLE, f"schema {schema!r}"
            )
    except psycopg.Error as exc:
        raise translate(exc) from exc


async def upgrade(
    conn: Conn, schema: str, migrations: list[list[str]], table: str, what: str, *, baseline: int = 0
) -> int:
    """Apply the ``migrations`` that ``schema.table`` does not record yet; return the version.

    The caller holds the transaction and the lock that serializes upgrades. ``what`` names the
    versioned thing in the error raised when it is newer than this relaystore
    (:class:`BackendUnavailable`). ``baseline`` is the version to assume while ``table`` does
    not exist (tables made before they had a track of their own).
    """
    ident = sql.Identifier(schema)
    current = await _current_version(conn, schema, ident, table) or baseline
    target = len(migrations)
    if current > target:
        raise BackendUnavailable(
            f"{what} has version {current}; this relaystore knows up to {target}. Upgrade relaystore."
        )
    # Only DDL when something is missing: a role without CREATE rights can open a schema that a
    # deployment step migrated.
    if current < target:
        await _create_version_table(conn, ident, table)
    for version in range(current + 1, target + 1):
        for statement in migrations[version - 1]:
            await conn.execute(compose(statement, ident))
        await conn.execute(
            sql.SQL("INSERT INTO {}.{} (version) VALUES (%s)").format(ident, sql.Identifier(table)),
            (version,),
        )
    return max(current, target)


async def _current_version(conn: Conn, schema: str, ident: sql.Identifier, table: str) -> int:
    """The version recorded in ``schema.table``, 0 if there is no such table (or schema)."""
    cur = await conn.execute(
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s", (schema, table)
    )
    if await cur.fetchone() is None:
        return 0
    cur = await conn.execute(
        sql.SQL("SELECT COALESCE(MAX(version), 0) FROM {}.{}").format(ident, sql.Identifier(table))
    )
    return int(cast(tuple[int], await cur.fetchone())[0])


async def _create_version_table(conn: Conn, ident: sql.Identifier, table: str) -> None:
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
    await conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ).format(ident, sql.Identifier(table))
    )
