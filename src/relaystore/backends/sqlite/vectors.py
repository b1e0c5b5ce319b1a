"""Native vector search for the SQLite item face, with sqlite-vec (``pip install 'relaystore[sqlite-vec]'``).

Every put also writes its vectors to ``item_vectors`` (one row per vector: namespace, key,
name, dims, the float32 blob sqlite-vec reads), whether or not sqlite-vec is installed, so a
database written without it is indexed when opened with it. Triggers keep the table in step:
deleting an item (a delete, a sweep) deletes its vectors, and an overwrite clears them before
the put writes its own.

A search runs sqlite-vec's ``vec_distance_cosine`` over ``item_vectors`` joined with ``items``,
with the namespace range, expiry and filter conditions in the same SQL: exact (sqlite-vec 0.1
has no approximate index), scores ``1 - cosine distance`` as :mod:`relaystore.stores.vectors`
defines them, up to float32 rounding. Python's own ``sqlite3`` often cannot load extensions; the
search then runs on a read-only connection of ``pysqlite3`` (the same file, WAL readers never
block the writer). Without either, or for an in-memory database, :attr:`SqliteItemStore.native_vectors`
is None and the exact numpy search is used.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from relaystore.backends import _vector_sql
from relaystore.stores.items import ItemWrite, unpack_vectors
from relaystore.stores.vectors import float32_bytes

log = logging.getLogger("relaystore")

_STATEMENTS = [
    """CREATE TABLE item_vectors (
        ns TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        dims INTEGER NOT NULL,
        embedding BLOB NOT NULL,
        PRIMARY KEY (ns, key, name))""",
    """CREATE TRIGGER item_vectors_deleted AFTER DELETE ON items BEGIN
        DELETE FROM item_vectors WHERE ns = old.ns AND key = old.key; END""",
    """CREATE TRIGGER item_vectors_replaced AFTER UPDATE OF vectors ON items BEGIN
        DELETE FROM item_vectors WHERE ns = old.ns AND key = old.key; END""",
]
INSERT = "INSERT INTO item_vectors (ns, key, name, dims, embedding) VALUES (?, ?, ?, ?, ?)"


def migrate(conn: sqlite3.Connection) -> None:
    """Items migration 2: the vectors table and its triggers, filled from the items' vectors."""
    for statement in _STATEMENTS:
        conn.execute(statement)
    rows = conn.execute("SELECT ns, key, vectors FROM items WHERE vectors IS NOT NULL").fetchall()
    conn.executemany(
        INSERT,
        [
            (ns, key, name, len(v), float32_bytes(v))
            for ns, key, packed in rows
            for name, v in unpack_vectors(packed).items()
        ],
    )


def vector_rows(puts: Sequence[ItemWrite]) -> list[tuple[str, str, str, int, Any]]:
    """The ``item_vectors`` rows of ``puts`` (float32 blobs)."""
    return _vector_sql.vector_rows(puts, float32_bytes)


class VectorReader:
    """A read-only connection with sqlite-vec loaded, and the driver's error class. Searches run
    on the database's read threads; ``lock`` makes them take turns on the one connection."""

    def __init__(self, conn: Any, error: type[Exception]) -> None:
        self.conn = conn
        self.error = error
        self.lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()


def open_reader(path: str) -> VectorReader | None:
    """A :class:`VectorReader` on the database at ``path``, or None (no sqlite-vec, no driver
    that loads extensions, or an in-memory database)."""
    if path == ":memory:":
        return None
    try:
        import sqlite_vec
    except ImportError:
        return None
    uri = f"file:{Path(path).resolve()}?mode=ro"
    for connect, error in _drivers():
        conn = None
        try:
            conn = connect(uri)
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
            conn.execute("PRAGMA busy_timeout = 0")
            return VectorReader(conn, error)
        except (AttributeError, error) as exc:  # AttributeError: built without extension loading
            log.debug("sqlite-vec not loadable with %s: %s", connect, exc)
            if conn is not None:
                conn.close()
    return None


def _drivers() -> list[tuple[Callable[[str], Any], type[Exception]]]:
    """``(connect(uri), its Error class)`` for the stdlib ``sqlite3`` and, if installed, ``pysqlite3``."""

    def stdlib(uri: str) -> Any:
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    drivers: list[tuple[Callable[[str], Any], type[Exception]]] = [(stdlib, sqlite3.Error)]
    try:
        from pysqlite3 import dbapi2
    except ImportError:
        return drivers

    def bundled(uri: str) -> Any:
        return dbapi2.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    drivers.append((bundled, dbapi2.Error))
    return drivers


_ITEM = "i.ns, i.key, i.value, i.created_at, i.updated_at, i.expires_at, i.ttl, NULL"


def nearest_rows(
    reader: VectorReader, scope: tuple[str, list[Any]], query: list[float], limit: int, offset: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """``(scored rows, unscored rows)`` of one page: item columns then the score (scored) in
    ranking order; the unscored (no vector of ``len(query)`` dims) fill what the page has left.

    ``scope`` is :func:`.._vector_sql.scope`'s (filters from .items.condition_sql). Raises
    ``reader.error`` on an SQLite error (the caller falls back to the exact search).
    """
    where, params = scope
    dims = len(query)
    # Rank keys first (values stay unread for the 10k candidates), then read the page's items.
    ranked = f"""
        WITH ranked AS (
            SELECT i.ns AS ns, i.key AS key, i.updated_at AS u,
                   MIN(COALESCE(vec_distance_cosine(v.embedding, ?), 1.0)) AS d
            FROM item_vectors v JOIN items i ON i.ns = v.ns AND i.key = v.key
            WHERE v.dims = ? AND {where}
            GROUP BY i.ns, i.key
            ORDER BY d, u DESC, ns, key LIMIT ? OFFSET ?)
        SELECT {_ITEM}, 1.0 - r.d FROM ranked r JOIN items i ON i.ns = r.ns AND i.key = r.key
        ORDER BY r.d, r.u DESC, r.ns, r.key"""
    no_vector = "NOT EXISTS (SELECT 1 FROM item_vectors v WHERE v.ns = i.ns AND v.key = i.key AND v.dims = ?)"
    conn = reader.conn
    conn.execute("BEGIN")  # one snapshot for both queries
    try:
        scored = conn.execute(ranked, [float32_bytes(query), dims, *params, limit, offset]).fetchall()
        unscored: list[tuple[Any, ...]] = []
        if len(scored) < limit:
            total = scored_count(conn, where, params, dims) if not scored else offset + len(scored)
            skip = max(0, offset - total)
            unscored = conn.execute(
                f"SELECT {_ITEM} FROM items i WHERE {where} AND {no_vector} "
                "ORDER BY i.updated_at DESC, i.ns, i.key LIMIT ? OFFSET ?",
                [*params, dims, limit - len(scored), skip],
            ).fetchall()
    finally:
        conn.execute("COMMIT")
    return scored, unscored


def scored_count(conn: Any, where: str, params: list[Any], dims: int) -> int:
    """How many items in scope have a vector of ``dims`` dims (to page past them)."""
    sql = (
        "SELECT COUNT(*) FROM items i WHERE " + where + " AND EXISTS (SELECT 1 FROM item_vectors v "
        "WHERE v.ns = i.ns AND v.key = i.key AND v.dims = ?)"
    )
    return int(conn.execute(sql, [*params, dims]).fetchone()[0])
