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
- Reads run inline on a read-only connection (WAL gives each statement a consistent snapshot).
- A ``relaystore_schema`` table records applied migrations; opening a file applies missing ones.

Modules: :mod:`.url` (options), :mod:`.database` (connections, worker thread, single writer, error
translation), :mod:`.migrations`, and one per face: :mod:`.checkpoints`, :mod:`.outputs`,
:mod:`.adaptive`, :mod:`.blobs`, :mod:`.items`.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

from relaystore.backends.sqlite.adaptive import SqliteAdaptiveStore
from relaystore.backends.sqlite.blobs import SqliteBlobStore
from relaystore.backends.sqlite.checkpoints import SqliteCheckpointStore
from relaystore.backends.sqlite.database import INLINE_MAX_BYTES, SqliteDatabase
from relaystore.backends.sqlite.faces import face_counts
from relaystore.backends.sqlite.items import SqliteItemStore
from relaystore.backends.sqlite.migrations import MIGRATIONS, SCHEMA_VERSION
from relaystore.backends.sqlite.outputs import SqliteOutputStore
from relaystore.backends.sqlite.url import parse_url
from relaystore.stores import Store

__all__ = [
    "INLINE_MAX_BYTES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SqliteDatabase",
    "open_store",
    "parse_url",
]


async def open_store(url: str, **options: Any) -> Store:
    """Open (creating if needed) the SQLite database that ``url`` names.

    Options (URL query or keywords): ``timeout`` (busy timeout, seconds, default 30) and
    ``synchronous`` (``full`` default, ``normal``, ``extra``, ``off``).
    """
    path, timeout, synchronous = parse_url(url, options)
    db = SqliteDatabase(path, timeout=timeout, synchronous=synchronous)
    blobs = SqliteBlobStore(db)
    try:
        await db.open()
        await blobs.drop_stale_uploads()
    except BaseException:
        await db.close()
        raise

    async def info() -> dict[str, Any]:
        def collect(conn: sqlite3.Connection) -> dict[str, Any]:
            one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            return {
                "path": str(Path(path).resolve()) if path != ":memory:" else path,
                "schema_version": one("SELECT MAX(version) FROM relaystore_schema"),
                "sqlite_version": sqlite3.sqlite_version,
                "journal_mode": one("PRAGMA journal_mode"),
                "synchronous": synchronous,
                "threads": one("SELECT COUNT(DISTINCT thread_id) FROM checkpoints"),
                "checkpoints": one("SELECT COUNT(*) FROM checkpoints"),
                **face_counts(conn),
            }

        return await db.read(collect)

    return Store(
        url,
        "sqlite",
        SqliteCheckpointStore(db),
        SqliteOutputStore(db),
        SqliteAdaptiveStore(db),
        blobs=blobs,
        items=SqliteItemStore(db),
        close=db.close,
        info=info,
        reopenable=path != ":memory:",
        compress_below=sys.maxsize,  # SQLite stores every byte as given
    )
