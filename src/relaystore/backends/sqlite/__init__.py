"""SQLite backend: the embedded default. ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

Design:

- WAL journal, so readers never block the writer; ``synchronous=FULL`` by default, so a call that
  returned is on disk (``?synchronous=normal`` trades the last commits on power loss for speed).
- Every write is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so two
  processes never deadlock on a lock upgrade, and waits go through ``busy_timeout``
  (``?timeout=`` seconds, default 30). "database is locked" is retried until that deadline and
  then surfaces as :class:`BackendUnavailable`, never as a raw sqlite3 error.
- ``seq`` columns are ``INTEGER PRIMARY KEY AUTOINCREMENT``: assigned by SQLite, strictly
  increasing, never reused after a delete (mlua-swarm's ``MAX(seq)+1`` is unsafe across processes).
- One writer connection per store, used by one worker thread, so the event loop never waits for
  a lock or a large write. Small writes (a checkpoint, an output, a run: at most 256 KiB) first try
  a second connection on the event loop thread with no busy wait: a hop to a thread and back
  costs more than a fast commit. If the lock is taken they go to the worker; if inline commits
  average over 2 ms (a slow disk) the next 256 writes go to the worker too, so the loop never
  stalls for long. That connection never checkpoints the WAL itself; every 200 inline commits
  the worker runs a RESTART checkpoint (see :meth:`.SqliteDatabase._checkpoint_soon`).
- Reads that can be large (listings, counts, lineage, attachments, blob chunks, full reads of
  threads whose last one returned over 256 KiB, ``info()``) run on two read threads, each with
  a read-only connection, so one large read never
  stalls the event loop (or, under ``serve``, every other request); small point reads run inline
  on a read-only connection, cheaper than a hop to a thread. WAL gives each statement a
  consistent snapshot.
- A ``relaystore_schema`` table records applied migrations; opening a file applies missing ones.

Modules: :mod:`.url` (options), :mod:`.database` (connections, worker thread, single writer, error
translation), :mod:`.migrations`, and one per face: :mod:`.checkpoints`, :mod:`.outputs`,
:mod:`.adaptive`, :mod:`.blobs`, :mod:`.items`.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

from relaystore.backends.sqlite.adaptive import SqliteAdaptiveStore
from relaystore.backends.sqlite.blobs import SqliteBlobStore
from relaystore.backends.sqlite.checkpoints import SqliteCheckpointStore
from relaystore.backends.sqlite.database import INLINE_MAX_BYTES, SqliteDatabase
from relaystore.backends.sqlite.faces import face_counts
from relaystore.backends.sqlite.items import SqliteItemStore
from relaystore.backends.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from relaystore.backends.sqlite.outputs import SqliteOutputStore
from relaystore.backends.sqlite.url import SqliteOptions, parse_url
from relaystore.stores import Store

__all__ = [
    "INLINE_MAX_BYTES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SqliteDatabase",
    "SqliteOptions",
    "open_store",
    "parse_url",
]


def _collect_info(conn: sqlite3.Connection, options: SqliteOptions, read_only: str | None) -> dict[str, Any]:
    """``store.info()``: where the file is, its schema and journal, why it is read-only (None when
    it is not), and row counts (table-wide counts: run on a read thread, never on the event loop)."""

    def one(sql: str) -> Any:
        return conn.execute(sql).fetchone()[0]

    return {
        "path": str(options.local_path) if options.local_path is not None else options.path,
        "schema_version": one("SELECT MAX(version) FROM relaystore_schema"),
        "sqlite_version": sqlite3.sqlite_version,
        "journal_mode": one("PRAGMA journal_mode"),
        "read_only": read_only,
        "synchronous": options.synchronous,
        "threads": one("SELECT COUNT(DISTINCT thread_id) FROM checkpoints"),
        "checkpoints": one("SELECT COUNT(*) FROM checkpoints"),
        **face_counts(conn),  # outputs, runs, blobs, documents: 0 while a face's tables are absent
    }


async def open_store(url: str, **options: Any) -> Store:
    """Open (creating if needed) the SQLite database that ``url`` names.

    Options (URL query or keywords, see :mod:`.url`): ``timeout`` (busy timeout, seconds, default
    30) and ``synchronous`` (``full`` default, ``normal``, ``extra``, ``off``). A database that
    exists but cannot be opened for writing (a full disk: its ``-shm`` file cannot be created) is
    opened read-only, with a warning; its writes raise :class:`BackendUnavailable` saying why.
    Raises :class:`InvalidInput` for a bad URL or option and :class:`BackendUnavailable` for a
    file that cannot be opened at all or was written by a newer relaystore.
    """
    parsed = parse_url(url, options)
    db = SqliteDatabase(parsed.path, timeout=parsed.timeout, synchronous=parsed.synchronous)
    blobs = SqliteBlobStore(db)
    try:
        await db.open()
        if db.read_only is None:  # a read-only snapshot (a full disk) cleans nothing up
            await blobs.drop_stale_uploads()
    except BaseException:
        await db.close()
        raise

    async def info() -> dict[str, Any]:
        return await db.read(lambda conn: _collect_info(conn, parsed, db.read_only))

    items = SqliteItemStore(db)

    async def close() -> None:
        items.close()  # its sqlite-vec read connection, if any
        await db.close()

    return Store(
        url,
        "sqlite",
        SqliteCheckpointStore(db),
        SqliteOutputStore(db),
        SqliteAdaptiveStore(db),
        blobs=blobs,
        items=items,
        close=close,
        info=info,
        reopenable=not parsed.in_memory,  # a private :memory: database dies with its connection
        compress_below=sys.maxsize,  # SQLite stores every byte as given
    )
