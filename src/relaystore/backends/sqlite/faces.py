"""The SQLite tables of the outputs, adaptive and blob faces, created on first use.

Each face has its own versioned migrations, recorded in ``relaystore_<face>_schema`` and applied
inside a write transaction (``BEGIN IMMEDIATE``, so two processes create them once), the way the
item face keeps ``relaystore_items_schema``. A file made before the faces had their own tracks
already holds their tables (the main track's migrations 1, 2 and 4 created and rebuilt them):
it counts as version 1 of each face and gets no version table until a later face migration.
"""

from __future__ import annotations

import sqlite3

from relaystore.errors import BackendUnavailable

# Version 1 of each face is the shape the main track left these tables in (its migration 4
# rebuilt documents and blob_chunks as rowid tables: their rows can be large).
FACES: dict[str, list[str]] = {
    "outputs": [
        """
        CREATE TABLE IF NOT EXISTS outputs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            task_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            producer_agent TEXT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS outputs_attempt ON outputs (task_id, attempt, seq);
        CREATE INDEX IF NOT EXISTS outputs_producer ON outputs (producer_agent, seq);
        CREATE INDEX IF NOT EXISTS outputs_producer_run ON outputs (producer_agent, task_id, attempt, seq);
        CREATE TABLE IF NOT EXISTS output_parents (
            parent TEXT NOT NULL,
            child_seq INTEGER NOT NULL,
            PRIMARY KEY (parent, child_seq)
        ) WITHOUT ROWID
        """,
    ],
    "adaptive": [
        """
        CREATE TABLE IF NOT EXISTS runs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            agent_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            doc TEXT NOT NULL,
            UNIQUE (agent_id, run_id)
        );
        CREATE INDEX IF NOT EXISTS runs_agent_seq ON runs (agent_id, seq);
        CREATE TABLE IF NOT EXISTS documents (
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            doc TEXT NOT NULL,
            PRIMARY KEY (kind, key)
        )
        """,
    ],
    "blobs": [
        """
        CREATE TABLE IF NOT EXISTS blobs (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mime TEXT,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS blob_chunks (
            owner TEXT NOT NULL,
            idx INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (owner, idx)
        );
        CREATE TABLE IF NOT EXISTS blob_uploads (
            upload_id TEXT PRIMARY KEY,
            started_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ],
}
# The table whose presence, in a file without the face's version table, means version 1.
_FIRST_TABLE = {"outputs": "outputs", "adaptive": "runs", "blobs": "blobs"}


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone()
        is not None
    )


def face_version(conn: sqlite3.Connection, face: str) -> int:
    """The face's schema version in this database (0: its tables are absent)."""
    table = f"relaystore_{face}_schema"
    if has_table(conn, table):
        return int(conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {table}").fetchone()[0])
    return 1 if has_table(conn, _FIRST_TABLE[face]) else 0


def create_face(conn: sqlite3.Connection, face: str) -> None:
    """Apply the face's missing migrations inside the caller's write transaction."""
    migrations, table = FACES[face], f"relaystore_{face}_schema"
    current = face_version(conn, face)
    if current > len(migrations):
        raise BackendUnavailable(
            f"the {face} tables have schema version {current}; this relaystore knows up to {len(migrations)}"
        )
    if current == len(migrations):
        return
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    for version in range(current + 1, len(migrations) + 1):
        for statement in migrations[version - 1].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            f"INSERT INTO {table} VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (version,),
        )


def face_counts(conn: sqlite3.Connection) -> dict[str, object]:
    """``info()``'s counts of the lazily created faces: 0 (and no documents) while a table is absent."""

    def count(table: str) -> int:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] if has_table(conn, table) else 0

    documents = (
        dict(conn.execute("SELECT kind, COUNT(*) FROM documents GROUP BY kind"))
        if has_table(conn, "documents")
        else {}
    )
    return {
        "outputs": count("outputs"),
        "runs": count("runs"),
        "blobs": count("blobs"),
        "documents": documents,
    }
