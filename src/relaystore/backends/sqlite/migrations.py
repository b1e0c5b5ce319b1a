"""The SQLite backend's tables, as versioned migrations, and the code that applies them.

A ``relaystore_schema`` table records applied migrations; opening a file applies the missing ones
in one write transaction. The item face keeps its own list and version table
(``relaystore_items_schema``, see :mod:`.items`), and so do the outputs, adaptive and blob faces,
whose tables are made on first use (:mod:`.faces`).
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable

from relaystore.backends.sqlite.faces import has_table
from relaystore.errors import BackendUnavailable


def _as_rowid_table(table: str, columns: str, key: str) -> str:
    """SQL rebuilding ``table`` as an ordinary rowid table with the same columns (all NOT NULL)
    and primary key, keeping its rows. ``columns`` is ``"name TYPE, …"``."""
    names = ", ".join(column.split()[0] for column in columns.split(", "))
    definitions = ", ".join(f"{column} NOT NULL" for column in columns.split(", "))
    return (
        f"CREATE TABLE {table}_new ({definitions}, PRIMARY KEY ({key}));"
        f"INSERT INTO {table}_new SELECT {names} FROM {table};"
        f"DROP TABLE {table};"
        f"ALTER TABLE {table}_new RENAME TO {table}"
    )


def _rebuild_large_tables(conn: sqlite3.Connection) -> None:
    """Migration 4: tables whose rows can be large become rowid tables. A WITHOUT ROWID table
    keeps each row inside its primary-key b-tree, so a 200 KB value spills into overflow pages on
    every write and read (SQLite advises it only for rows under ~1/20 of a page): a 200 KB
    attachment read 3-4x slower, a write ~30% slower. The primary key becomes a unique index.
    Tables of faces not used yet do not exist (they are created in this shape on first use)."""
    for table, columns, key in (
        ("documents", "kind TEXT, key TEXT, doc TEXT", "kind, key"),
        (
            "checkpoint_writes",
            "thread_id TEXT, checkpoint_id TEXT, task_id TEXT, idx INTEGER, write TEXT",
            "thread_id, checkpoint_id, task_id, idx",
        ),
        ("thread_attachments", "thread_id TEXT, key TEXT, value BLOB", "thread_id, key"),
        ("blob_chunks", "owner TEXT, idx INTEGER, data BLOB", "owner, idx"),
    ):
        if has_table(conn, table):
            for statement in _as_rowid_table(table, columns, key).split(";"):
                conn.execute(statement)


# The main track: checkpoints with their writes and attachments. The outputs, adaptive and blob
# faces were created here by migrations 1 and 2 before they had tracks of their own
# (:mod:`.faces`: a store used for checkpoints only keeps no empty tables of theirs); a
# file made then keeps them, and a new file gets them on first use, in the same shape.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    # 1: checkpoints (and, before the face tracks, outputs, output_parents, runs, documents)
    """
    CREATE TABLE checkpoints (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        thread_id TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        metadata TEXT NOT NULL,
        state BLOB NOT NULL,
        UNIQUE (thread_id, checkpoint_id)
    );
    CREATE INDEX checkpoints_thread_seq ON checkpoints (thread_id, seq)
    """,
    # 2: content-addressed blobs as numbered 1 MiB chunks (now the blob face's own track)
    "",
    # 3: pending writes of a checkpoint, and attachments shared by a thread's checkpoints
    """
    CREATE TABLE checkpoint_writes (
        thread_id TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        write TEXT NOT NULL,
        PRIMARY KEY (thread_id, checkpoint_id, task_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE thread_attachments (
        thread_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (thread_id, key)
    ) WITHOUT ROWID;
    """,
    # 4: large tables as rowid tables (see _rebuild_large_tables)
    _rebuild_large_tables,
    # 5: pending writes one column per field, the value raw bytes (it was base64 inside a JSON
    # text: a third more bytes than the native savers store, and a JSON parse on every read).
    # rs_b64decode is registered on the migrating connection (see migrate).
    """
    CREATE TABLE checkpoint_writes_new (
        thread_id TEXT NOT NULL,
        checkpoint_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        channel TEXT NOT NULL,
        type TEXT,
        task_path TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (thread_id, checkpoint_id, task_id, idx)
    );
    INSERT INTO checkpoint_writes_new
        SELECT thread_id, checkpoint_id, task_id, idx, write ->> '$.channel', write ->> '$.type',
               COALESCE(write ->> '$.task_path', ''), rs_b64decode(write ->> '$.value')
        FROM checkpoint_writes WHERE json_valid(write);
    DROP TABLE checkpoint_writes;
    ALTER TABLE checkpoint_writes_new RENAME TO checkpoint_writes
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply the missing migrations inside the caller's write transaction.

    Raises :class:`BackendUnavailable` when ``path`` was written by a newer relaystore.
    """
    conn.create_function("rs_b64decode", 1, _b64decode, deterministic=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS relaystore_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM relaystore_schema").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise BackendUnavailable(
            f"{path} has schema version {current}; this relaystore knows up to "
            f"{SCHEMA_VERSION}. Upgrade relaystore."
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        step = MIGRATIONS[version - 1]
        if callable(step):
            step(conn)
        else:
            for statement in step.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(
            "INSERT INTO relaystore_schema VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (version,),
        )


def _b64decode(text: str | None) -> bytes:
    """Either base64 alphabet, padded or not (pydantic wrote the URL-safe one)."""
    raw = (text or "").replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
