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
  the worker runs a RESTART checkpoint (see :meth:`SqliteDatabase._checkpoint_soon`).
- Reads run inline on a read-only connection (WAL gives each statement a consistent snapshot).
- A ``relaystore_schema`` table records applied migrations; opening a file applies missing ones.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import TypeAdapter

from relaystore.backends import _full_reads as full_reads
from relaystore.backends._group_commit import GroupCommit
from relaystore.backends._lazy import CreatedOnFirstUse
from relaystore.backends._options import merge_options, number
from relaystore.backends._policy import STALE_UPLOAD_SECONDS
from relaystore.backends.sqlite_faces import create_face, face_counts, has_table
from relaystore.backends.sqlite_items import SqliteItemStore
from relaystore.errors import BackendUnavailable, Conflict, InvalidInput
from relaystore.models.checkpoints import Checkpoint, CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.models.outputs import BlobContent, OutputRecord, OutputRef
from relaystore.stores import AdaptiveStore, CheckpointStore, DocKind, OutputFilter, OutputStore, Store
from relaystore.stores._common import ANY, parse_json, parse_rows, prefix_upper_bound
from relaystore.stores.adaptive import AGENT_DOC_KINDS
from relaystore.stores.blobs import BlobStore
from relaystore.stores.checkpoints import FullQuery, SeqRow, check_head, duplicate_conflict

T = TypeVar("T")
_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)
_CHUNK = 500  # bound on "IN (?, ?, …)" lists
# Larger writes run on the worker; below it, the loop already spends about as long encoding the value.
INLINE_MAX_BYTES = 256 * 1024
INLINE_SLOW_S = 0.002  # when inline writes average more than this, the next ones go to the worker…
INLINE_BACKOFF = 256  # …this many of them
INLINE_WEIGHT = 1 / 16  # of the newest inline write in that moving average: one spike is not a slow disk
CHECKPOINT_EVERY = 200  # inline commits between WAL checkpoints on the worker (~1,200 frames at 2 KB)
CHECKPOINT_WAIT_MS = 100  # how long that checkpoint waits for other connections before giving up
_BUSY: Any = object()  # an inline write found the lock taken; nothing was written


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
# (:mod:`.sqlite_faces`: a store used for checkpoints only keeps no empty tables of theirs); a
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
    # rs_b64decode is registered on the migrating connection (see SqliteDatabase._migrate).
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
_SYNC_MODES = {"off", "normal", "full", "extra"}


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class SqliteDatabase:
    """One connection, one worker thread, and the retry policy around both."""

    def __init__(self, path: str, *, timeout: float = 30.0, synchronous: str = "full") -> None:
        self.path = path
        self.timeout = timeout
        self.synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relaystore-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_pause = 0  # writes left to send to the worker after slow inline ones
        self._busy_ms = int(timeout * 1000)  # the busy_timeout the worker connection has now
        self._inline_average_s = 0.0
        self._inline_commits = 0
        self._checkpointing = False  # while True, writes queue on the worker behind the checkpoint
        self._group = GroupCommit(self._commit_group)  # writes waiting for the worker share commits

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        await self.call(self._open_sync)
        if self.path != ":memory:":  # a private in-memory database has no second connection
            self._reader = self._open_reader()
            self._inline = self._open_inline_writer()

    def _open_reader(self) -> sqlite3.Connection:
        # Reads run on the event loop thread: an indexed read costs microseconds, less than a
        # hop to the worker thread. In WAL mode a reader never waits for the writer, and
        # busy_timeout 0 makes the rare exception (WAL recovery) fail fast into the worker path.
        uri = f"file:{Path(self.path).resolve()}?mode=ro"
        reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA busy_timeout = 0")
        return reader

    def _open_inline_writer(self) -> sqlite3.Connection:
        # timeout=0: on the event loop a taken lock must fail at once (the worker then waits).
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # copying the WAL back is the worker's job
        return conn

    def _open_sync(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._conn = conn
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        self._busy_ms = int(self.timeout * 1000)
        self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        self._retry(self._migrate)

    def _migrate(self) -> None:
        conn = self._require()
        conn.create_function("rs_b64decode", 1, _b64decode, deterministic=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS relaystore_schema "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM relaystore_schema").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise BackendUnavailable(
                    f"{self.path} has schema version {current}; this relaystore knows up to "
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
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    async def close(self) -> None:
        for conn in (self._reader, self._inline):
            if conn is not None:
                conn.close()
        self._reader = self._inline = None

        def close_sync() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self.call(close_sync)
        self._executor.shutdown(wait=True)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendUnavailable(f"SQLite store {self.path!r} is closed")
        return self._conn

    # ---------------------------------------------------------------- running work

    async def call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except RuntimeError as exc:  # executor shut down
            raise BackendUnavailable(f"SQLite store {self.path!r} is closed") from exc

    def _retry(self, fn: Callable[[], T], deadline: float | None = None) -> T:
        """Run ``fn`` on the worker, retrying "database is locked" until ``deadline``
        (``time.monotonic()``, fixed when the call was made: time queued for the worker counts;
        default: ``timeout`` from now)."""
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        delay = 0.001
        while True:
            # SQLite's own busy wait must end at the caller's deadline too, not a fresh timeout
            try:
                self._busy_until(deadline)
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise BackendUnavailable(f"SQLite error on {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise BackendUnavailable(f"{self.path} stayed locked for {self.timeout}s") from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.05)
            except sqlite3.DatabaseError as exc:  # e.g. "file is not a database", disk full
                raise BackendUnavailable(f"SQLite error on {self.path}: {exc}") from exc

    def _busy_until(self, deadline: float) -> None:
        """Make the worker connection's busy wait end at ``deadline`` (set only when it changes
        by more than 50 ms, so an unqueued call runs no extra statement)."""
        wanted = max(0, int((deadline - time.monotonic()) * 1000))
        if abs(wanted - self._busy_ms) > 50:
            self._require().execute(f"PRAGMA busy_timeout = {wanted}")
            self._busy_ms = wanted

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn(conn)`` in autocommit mode (WAL gives it a consistent snapshot
        per statement): inline on the read connection, or on the worker if that is busy."""
        if self._reader is not None:
            try:
                return fn(self._reader)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise BackendUnavailable(f"SQLite error on {self.path}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise BackendUnavailable(f"SQLite error on {self.path}: {exc}") from exc
        deadline = time.monotonic() + self.timeout
        return await self.call(lambda: self._retry(lambda: fn(self._require()), deadline))

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, inline_bytes: int | None = None) -> T:
        """Run ``fn(conn)`` inside one ``BEGIN IMMEDIATE`` transaction; roll back if it raises.

        ``inline_bytes`` (the size of what ``fn`` writes) marks a small, bounded write that may
        run on the event loop thread (see the module notes); without it the worker runs ``fn``.
        """
        deadline = time.monotonic() + self.timeout
        if inline_bytes is not None and self._may_inline(inline_bytes):
            result = self._write_inline(fn)
            if result is not _BUSY:
                return result
        return await self._group.write(fn, deadline)

    async def _commit_group(self, fn: Callable[[sqlite3.Connection], T], deadline: float) -> T:
        """One group of writes (see ``_group_commit``) as one transaction on the worker."""
        return await self.call(lambda: self._retry(lambda: _transaction(self._require(), fn), deadline))

    async def execute(self, sql: str, params: Sequence[Any], *, inline_bytes: int) -> int:
        """One data statement in autocommit mode, its own atomic transaction (no BEGIN/COMMIT
        round): inline when small and the lock is free, else on the worker. Returns rowcount."""
        deadline = time.monotonic() + self.timeout
        if self._may_inline(inline_bytes):
            result = self._write_inline(lambda c: c.execute(sql, params).rowcount, wrap=False)
            if result is not _BUSY:
                return int(result)
        return int(await self._group.write(lambda c: c.execute(sql, params).rowcount, deadline))

    def _may_inline(self, size: int) -> bool:
        # While the worker commits a group, a new write joins the next group instead: inline it
        # would only find the lock taken, and alone it would cost a commit of its own.
        if self._inline is None or size > INLINE_MAX_BYTES or self._checkpointing or self._group.busy:
            return False
        if self._inline_pause:
            self._inline_pause -= 1
            return False
        return True

    def _write_inline(self, fn: Callable[[sqlite3.Connection], T], *, wrap: bool = True) -> T:
        assert self._inline is not None
        started = time.perf_counter()
        try:
            result = _transaction(self._inline, fn) if wrap else fn(self._inline)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return _BUSY
            raise BackendUnavailable(f"SQLite error on {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise BackendUnavailable(f"SQLite error on {self.path}: {exc}") from exc
        elapsed = time.perf_counter() - started
        self._inline_average_s += (elapsed - self._inline_average_s) * INLINE_WEIGHT
        if self._inline_average_s > INLINE_SLOW_S:
            self._inline_pause, self._inline_average_s = INLINE_BACKOFF, 0.0
        self._inline_commits += 1
        if self._inline_commits % CHECKPOINT_EVERY == 0:
            self._checkpoint_soon()
        return result

    def _checkpoint_soon(self) -> None:
        """Copy the WAL back into the database on the worker, without waiting for it.

        A passive checkpoint racing inline commits never finds the WAL fully copied when the
        next writer starts, so SQLite never rewinds it: the file grows without end and every
        fsync also extends it (measured: commits 1.8x slower, the WAL past 180 MB). So until the
        checkpoint is done, writes queue on the worker behind it, and it is a RESTART checkpoint,
        which also holds other processes' writers back until the WAL is copied: the next commit
        starts the WAL from the beginning again. It waits at most ``CHECKPOINT_WAIT_MS`` for
        other processes' readers and writers, then leaves the rest for next time.
        """

        def checkpoint() -> None:
            try:
                conn = self._require()
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
                    try:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                    finally:
                        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                        self._busy_ms = int(self.timeout * 1000)
            except BackendUnavailable:
                pass  # closed meanwhile
            finally:
                self._checkpointing = False

        self._checkpointing = True
        try:
            self._executor.submit(checkpoint)
        except RuntimeError:  # the store is closing
            self._checkpointing = False


def _b64decode(text: str | None) -> bytes:
    """Either base64 alphabet, padded or not (pydantic wrote the URL-safe one)."""
    raw = (text or "").replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(conn)`` between ``BEGIN IMMEDIATE`` and ``COMMIT``; a failure anywhere rolls back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")  # a busy COMMIT leaves the transaction open: roll it back too
    except BaseException:
        _rollback(conn)
        raise
    return result


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
        conn.execute("ROLLBACK")


def _placeholders(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _chunks(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


# ------------------------------------------------------------------------- checkpoints


_PUT_ATTACHMENT = "INSERT OR REPLACE INTO thread_attachments VALUES (?,?,?)"
_INSERT_WRITES = (
    "INSERT INTO checkpoint_writes "
    "(thread_id, checkpoint_id, task_id, idx, channel, type, task_path, value) VALUES "
)
_WRITE_ROW = "(?,?,?,?,?,?,?,?)"
_WRITES_PER_STATEMENT = 4000  # 8 variables each, under SQLite's 32,766
_ON_WRITE_CONFLICT = {
    False: " ON CONFLICT DO NOTHING",
    True: " ON CONFLICT DO UPDATE SET channel = excluded.channel, type = excluded.type, "
    "task_path = excluded.task_path, value = excluded.value",
}
_DELETE_ORPHAN_WRITES = (
    "DELETE FROM checkpoint_writes WHERE thread_id = ? AND checkpoint_id NOT IN "
    "(SELECT checkpoint_id FROM checkpoints WHERE thread_id = ?) RETURNING checkpoint_id"
)


def _write_values(write: PendingWrite) -> tuple[Any, ...]:
    return (write.task_id, write.idx, write.channel, write.type, write.task_path, write.value)


def _full_read_sql(where: str, direction: str) -> str:
    """One page of checkpoints with their refs' attachments and writes (see ``_full_reads``).

    MATERIALIZED: the page is chosen once, not once per branch that reads it. json_each gets
    '{}' for an unreadable metadata text, so the statement still runs and that row is skipped.
    """
    return (
        "WITH c AS MATERIALIZED (SELECT seq, checkpoint_id, metadata, "
        "CASE WHEN :values THEN state ELSE X'' END AS state FROM checkpoints "
        f"WHERE thread_id = :thread{where} ORDER BY seq {direction} LIMIT :limit) "
        "SELECT 0, seq, checkpoint_id, metadata, state, NULL, NULL, NULL FROM c "
        "UNION ALL SELECT 1, NULL, NULL, a.key, a.value, NULL, NULL, NULL FROM thread_attachments a "
        "WHERE :values AND a.thread_id = :thread AND a.key IN (SELECT j.value FROM c, "
        "json_each(CASE WHEN json_valid(c.metadata) THEN c.metadata ELSE '{}' END, '$.refs') j) "
        "UNION ALL SELECT 2, w.idx, w.checkpoint_id, w.task_id, w.value, w.channel, w.type, w.task_path "
        "FROM checkpoint_writes w WHERE w.thread_id = :thread "
        "AND w.checkpoint_id IN (SELECT checkpoint_id FROM c)"
    )


_HEAD = "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? ORDER BY seq DESC LIMIT 1"


def _checkpoint(row: tuple[int, str, bytes]) -> Checkpoint:
    seq, metadata, state = row
    return Checkpoint(parse_json(_METADATA, metadata, f"checkpoints row seq={seq}"), bytes(state))


class SqliteCheckpointStore(CheckpointStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> None:
        doc = metadata.json_text()
        rows = [(thread_id, key, value) for key, value in attachments.items()]

        def save(conn: sqlite3.Connection) -> None:
            if expected_head is not ANY:  # the head is read inside the write lock: CAS is exact
                row = conn.execute(_HEAD, (thread_id,)).fetchone()
                check_head(thread_id, expected_head, row[0] if row else None)
            try:
                conn.execute(
                    "INSERT INTO checkpoints (thread_id, checkpoint_id, metadata, state) VALUES (?,?,?,?)",
                    (thread_id, metadata.id, doc, state),
                )
            except sqlite3.IntegrityError:
                raise duplicate_conflict(thread_id, metadata.id) from None
            conn.executemany(_PUT_ATTACHMENT, rows)

        size = len(doc) + len(state) + sum(len(value) for value in attachments.values())
        await self._db.write(save, inline_bytes=size)

    async def _head(self, thread_id: str) -> str | None:
        row = await self._db.read(lambda c: c.execute(_HEAD, (thread_id,)).fetchone())
        return None if row is None else row[0]

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT seq, metadata, state FROM checkpoints WHERE thread_id = ? AND checkpoint_id = ?",
                (thread_id, checkpoint_id),
            ).fetchone()
        )
        return None if row is None else _checkpoint(row)

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT seq, metadata, state FROM checkpoints WHERE thread_id = ? ORDER BY seq DESC LIMIT 1",
                (thread_id,),
            ).fetchone()
        )
        return None if row is None else _checkpoint(row)

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        direction, compare = ("DESC", "<") if newest_first else ("ASC", ">")
        sql = "SELECT seq, metadata FROM checkpoints WHERE thread_id = ?"
        params: list[Any] = [thread_id]
        if after is not None:
            sql += f" AND seq {compare} ?"
            params.append(after)
        sql += f" ORDER BY seq {direction} LIMIT ?"
        params.append(-1 if limit is None else limit)
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return parse_rows(_METADATA, ((seq, f"checkpoints row seq={seq}", md) for seq, md in rows))

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            key = (thread_id, checkpoint_id)
            conn.execute("DELETE FROM checkpoint_writes WHERE thread_id = ? AND checkpoint_id = ?", key)
            return (
                conn.execute(
                    "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_id = ?", key
                ).rowcount
                > 0
            )

        return await self._db.write(delete)

    async def _delete_thread(self, thread_id: str) -> int:
        def delete_thread(conn: sqlite3.Connection) -> int:
            for table in ("checkpoint_writes", "thread_attachments"):
                conn.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))
            return conn.execute("DELETE FROM checkpoints WHERE thread_id = ?", (thread_id,)).rowcount

        return await self._db.write(delete_thread)

    async def _count(self, thread_id: str) -> int:
        return await self._db.read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (thread_id,)
            ).fetchone()[0]
        )

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        clauses: list[str] = []
        params: list[str | int] = []
        if after is not None:
            clauses.append("thread_id > ?")
            params.append(after)
        if prefix is not None:
            clauses.append("thread_id >= ?")
            params.append(prefix)
            if (bound := prefix_upper_bound(prefix)) is not None:
                clauses.append("thread_id < ?")
                params.append(bound)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT DISTINCT thread_id FROM checkpoints{where} ORDER BY thread_id LIMIT ?"
        params.append(-1 if limit is None else limit)
        return await self._db.read(lambda c: [r[0] for r in c.execute(sql, params)])

    async def _prune(self, thread_id: str, keep: int) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM checkpoints WHERE thread_id = ? AND seq NOT IN "
                "(SELECT seq FROM checkpoints WHERE thread_id = ? ORDER BY seq DESC LIMIT ?)",
                (thread_id, thread_id, keep),
            ).rowcount
            conn.execute(
                "DELETE FROM checkpoint_writes WHERE thread_id = ? AND checkpoint_id NOT IN "
                "(SELECT checkpoint_id FROM checkpoints WHERE thread_id = ?)",
                (thread_id, thread_id),
            )
            return deleted

        return await self._db.write(prune)

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        # One autocommit INSERT per _WRITES_PER_STATEMENT writes (the variable limit): no lock on
        # the checkpoint, which may not be saved yet (see CheckpointStore.put_writes).
        for start in range(0, len(writes), _WRITES_PER_STATEMENT):
            chunk = writes[start : start + _WRITES_PER_STATEMENT]
            params = [v for w in chunk for v in (thread_id, checkpoint_id, *_write_values(w))]
            sql = _INSERT_WRITES + ",".join([_WRITE_ROW] * len(chunk)) + _ON_WRITE_CONFLICT[replace]
            await self._db.execute(sql, params, inline_bytes=sum(len(w.value) for w in chunk))

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return len({row[0] for row in conn.execute(_DELETE_ORPHAN_WRITES, (thread_id, thread_id))})

        return await self._db.write(delete)

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT task_id, idx, channel, type, task_path, value FROM checkpoint_writes "
                "WHERE thread_id = ? AND checkpoint_id = ?",
                (thread_id, checkpoint_id),
            ).fetchall()
        )
        return [
            PendingWrite.model_construct(task_id=t, idx=i, channel=c, type=ty, task_path=p, value=bytes(v))
            for t, i, c, ty, p, v in rows
        ]

    async def _load_full(self, thread_id: str, checkpoint_id: str | None) -> CheckpointBundle | None:
        where = "" if checkpoint_id is None else " AND checkpoint_id = :id"
        sql = _full_read_sql(where, "DESC")
        params = {"thread": thread_id, "id": checkpoint_id, "limit": 1, "values": 1}
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        found = full_reads.bundles(rows, full_reads.SINGLE, "checkpoints", strict=True)
        return found[0][1] if found else None

    async def _list_full(self, thread_id: str, query: FullQuery) -> list[tuple[int, Any]]:
        clauses, params = [], {"thread": thread_id, "limit": -1 if query.limit is None else query.limit}
        if query.after is not None:
            clauses.append(f" AND seq {'<' if query.newest_first else '>'} :after")
            params["after"] = query.after
        if query.before is not None:
            clauses.append(" AND checkpoint_id < :before")
            params["before"] = query.before
        for n, (key, value) in enumerate(full_reads.pushed_filter(query)):
            clauses.append(f" AND metadata ->> '$.attributes.{key}' = :f{n}")
            params[f"f{n}"] = value
        params["values"] = int(query.values)
        sql = _full_read_sql("".join(clauses), "DESC" if query.newest_first else "ASC")
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return full_reads.bundles(rows, query, "checkpoints")

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        rows = [(thread_id, key, value) for key, value in items.items()]
        await self._db.write(lambda c: c.executemany(_PUT_ATTACHMENT, rows))

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        def get(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk in _chunks(keys):
                found.update(
                    (key, bytes(value))
                    for key, value in conn.execute(
                        "SELECT key, value FROM thread_attachments "
                        f"WHERE thread_id = ? AND key IN ({_placeholders(chunk)})",
                        [thread_id, *chunk],
                    )
                )
            return found

        return await self._db.read(get)

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return sum(
                conn.execute(
                    f"DELETE FROM thread_attachments WHERE thread_id = ? AND key IN ({_placeholders(chunk)})",
                    [thread_id, *chunk],
                ).rowcount
                for chunk in _chunks(keys)
            )

        return await self._db.write(delete)

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT key FROM thread_attachments WHERE thread_id = ? AND key > ? ORDER BY key LIMIT ?",
                (thread_id, "" if after is None else after, -1 if limit is None else limit),
            ).fetchall()
        )
        return [r[0] for r in rows]


# ------------------------------------------------------------------------- outputs


def _record(seq: int, text: str) -> OutputRecord:
    record = parse_json(_RECORD, text, f"outputs row seq={seq}")
    record.seq = seq
    return record


def _records(rows: Iterable[tuple[int, str]], skip_corrupt: bool) -> list[OutputRecord]:
    if not skip_corrupt:
        return [_record(seq, text) for seq, text in rows]
    decoded = parse_rows(_RECORD, ((seq, f"outputs row seq={seq}", text) for seq, text in rows))
    for seq, record in decoded:
        record.seq = seq  # a Skipped placeholder keeps its seq too, for paging
    return [record for _, record in decoded]


def _where(flt: OutputFilter) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for column, value in (
        ("task_id", flt.task_id),
        ("attempt", flt.attempt),
        ("producer_agent", flt.producer_agent),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SqliteOutputStore(CreatedOnFirstUse, OutputStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _create_tables(self) -> None:
        await self._db.write(lambda conn: create_face(conn, "outputs"))

    async def _insert(self, record: OutputRecord) -> int:
        doc = record.model_dump_json(exclude={"seq"})
        parents = list(dict.fromkeys(record.parent_refs))

        def insert(conn: sqlite3.Connection) -> int:
            try:
                cursor = conn.execute(
                    "INSERT INTO outputs (id, task_id, attempt, producer_agent, record) VALUES (?,?,?,?,?)",
                    (record.id, record.task_id, record.attempt, record.producer_agent, doc),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"output {record.id} already exists") from None
            seq = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO output_parents (parent, child_seq) VALUES (?, ?)", ((p, seq) for p in parents)
            )
            return seq

        return await self._db.write(insert, inline_bytes=len(doc))

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        def get(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            rows: list[tuple[int, str]] = []
            for chunk in _chunks(refs):
                rows += conn.execute(
                    f"SELECT seq, record FROM outputs WHERE id IN ({_placeholders(chunk)})", list(chunk)
                ).fetchall()
            return rows

        return _records(await self._db.read(get), skip_corrupt=False)

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        where, params = _where(flt)
        row = await self._db.read(
            lambda c: c.execute(
                f"SELECT seq, record FROM outputs{where} ORDER BY seq DESC LIMIT 1", params
            ).fetchone()
        )
        return None if row is None else _record(*row)

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        where, params = _where(flt)
        if after is not None:
            where += (" AND" if where else " WHERE") + " seq > ?"
            params.append(after)
        params.append(-1 if limit is None else limit)
        sql = f"SELECT seq, record FROM outputs{where} ORDER BY seq LIMIT ?"
        return _records(await self._db.read(lambda c: c.execute(sql, params).fetchall()), skip_corrupt=True)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        def children(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            rows: list[tuple[int, str]] = []
            for chunk in _chunks(refs):
                rows += conn.execute(
                    "SELECT DISTINCT o.seq, o.record FROM output_parents p "
                    f"JOIN outputs o ON o.seq = p.child_seq WHERE p.parent IN ({_placeholders(chunk)})",
                    list(chunk),
                ).fetchall()
            return rows

        return _records(await self._db.read(children), skip_corrupt=True)

    async def _ancestor_records(self, start: OutputRecord) -> list[OutputRecord] | None:
        def reach(conn: sqlite3.Connection) -> list[tuple[int, str]] | None:
            try:
                return conn.execute(_ANCESTORS, (json.dumps(start.parent_refs),)).fetchall()
            except sqlite3.OperationalError as exc:
                if "malformed JSON" in str(exc):
                    return None  # the walk reads record by record and names the corrupt one
                raise

        rows = await self._db.read(reach)
        return None if rows is None else _records(rows, skip_corrupt=False)


# Each id once (UNION), however many paths lead to it: the walk orders them by level afterwards.
_ANCESTORS = """
WITH RECURSIVE reach(id) AS (
    SELECT value FROM json_each(?)
    UNION
    SELECT parent.value FROM reach JOIN outputs AS o ON o.id = reach.id,
        json_each(o.record, '$.parent_refs') AS parent
)
SELECT o.seq, o.record FROM reach JOIN outputs AS o ON o.id = reach.id
"""


# ------------------------------------------------------------------------- adaptive


def _keys_after(table_sql: str, params: list[Any], after: str | None, limit: int | None) -> tuple[str, list]:
    sql = table_sql
    if after is not None:
        sql = f"SELECT k FROM ({table_sql}) WHERE k > ?"
        params = [*params, after]
    return f"{sql} ORDER BY 1 LIMIT ?", [*params, -1 if limit is None else limit]


class SqliteAdaptiveStore(CreatedOnFirstUse, AdaptiveStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _create_tables(self) -> None:
        await self._db.write(lambda conn: create_face(conn, "adaptive"))

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        def store(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO runs (agent_id, run_id, doc) VALUES (?,?,?)", (agent_id, run_id, text)
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"agent {agent_id!r} already has run {run_id}") from None

        await self._db.write(store, inline_bytes=len(text))

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT seq, run_id, doc FROM runs WHERE agent_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (agent_id, -1 if after is None else after, -1 if limit is None else limit),
            ).fetchall()
        )
        return [(seq, f"runs row seq={seq} ({agent_id}:{run_id})", doc) for seq, run_id, doc in rows]

    async def _count_runs(self, agent_id: str) -> int:
        return await self._db.read(
            lambda c: c.execute("SELECT COUNT(*) FROM runs WHERE agent_id = ?", (agent_id,)).fetchone()[0]
        )

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        return await self._db.write(
            lambda c: (
                c.execute(
                    "DELETE FROM runs WHERE agent_id = ? AND seq NOT IN "
                    "(SELECT seq FROM runs WHERE agent_id = ? ORDER BY seq DESC LIMIT ?)",
                    (agent_id, agent_id, keep),
                ).rowcount
            )
        )

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        kinds = list(AGENT_DOC_KINDS)
        union = (
            "SELECT agent_id AS k FROM runs UNION "
            f"SELECT key AS k FROM documents WHERE kind IN ({_placeholders(kinds)})"
        )
        sql, params = _keys_after(union, kinds, after, limit)
        return await self._db.read(lambda c: [r[0] for r in c.execute(sql, params)])

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM documents WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
        )
        return None if row is None else row[0]

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        await self._db.write(lambda c: _upsert_doc(c, kind, key, text))

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        return await self._db.write(
            lambda c: c.execute("DELETE FROM documents WHERE kind = ? AND key = ?", (kind, key)).rowcount > 0
        )

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        sql, params = _keys_after("SELECT key AS k FROM documents WHERE kind = ?", [kind], after, limit)
        return await self._db.read(lambda c: [r[0] for r in c.execute(sql, params)])

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        def update(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT doc FROM documents WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            current = None if row is None else row[0]
            new = apply(current)
            if new is None:
                return current
            _upsert_doc(conn, kind, key, new)
            return new

        return await self._db.write(update)


def _upsert_doc(conn: sqlite3.Connection, kind: str, key: str, text: str) -> None:
    conn.execute(
        "INSERT INTO documents (kind, key, doc) VALUES (?,?,?) "
        "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc",
        (kind, key, text),
    )


# ------------------------------------------------------------------------- blobs

# Staged chunks are owned by "upload:<id>"; committing re-owns them to the digest. Uploads a
# crashed process left behind are dropped after a day (they may belong to a live process before).


class SqliteBlobStore(CreatedOnFirstUse, BlobStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _create_tables(self) -> None:
        await self._db.write(lambda conn: create_face(conn, "blobs"))

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        def put(conn: sqlite3.Connection) -> None:
            if index == 0:
                conn.execute("INSERT INTO blob_uploads VALUES (?, ?)", (upload_id, time.time()))
            conn.execute("INSERT INTO blob_chunks VALUES (?, ?, ?)", (f"upload:{upload_id}", index, data))

        await self._db.write(put)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        def commit(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM blob_uploads WHERE upload_id = ?", (upload_id,))
            exists = conn.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (blob.sha256,)).fetchone()
            if exists:
                conn.execute("DELETE FROM blob_chunks WHERE owner = ?", (f"upload:{upload_id}",))
                return
            conn.execute(
                "INSERT INTO blobs (sha256, size, mime) VALUES (?,?,?)", (blob.sha256, blob.size, blob.mime)
            )
            conn.execute(
                "UPDATE blob_chunks SET owner = ? WHERE owner = ?", (blob.sha256, f"upload:{upload_id}")
            )

        await self._db.write(commit)

    async def _abort(self, upload_id: str) -> None:
        def abort(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM blob_uploads WHERE upload_id = ?", (upload_id,))
            conn.execute("DELETE FROM blob_chunks WHERE owner = ?", (f"upload:{upload_id}",))

        await self._db.write(abort)

    async def _stat(self, sha256: str) -> BlobContent | None:
        row = await self._db.read(
            lambda c: c.execute("SELECT size, mime FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        )
        return None if row is None else BlobContent(sha256=sha256, size=row[0], mime=row[1])

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT data FROM blob_chunks WHERE owner = ? AND idx = ?", (sha256, index)
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    async def _delete(self, sha256: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM blob_chunks WHERE owner = ?", (sha256,))
            return conn.execute("DELETE FROM blobs WHERE sha256 = ?", (sha256,)).rowcount > 0

        return await self._db.write(delete)

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT sha256, size, mime FROM blobs WHERE sha256 > ? ORDER BY sha256 LIMIT ?",
                ("" if after is None else after, -1 if limit is None else limit),
            ).fetchall()
        )
        return [BlobContent(sha256=sha, size=size, mime=mime) for sha, size, mime in rows]

    async def drop_stale_uploads(self) -> int:
        """Remove chunks of uploads started more than a day ago (left by a crashed writer)."""

        def drop(conn: sqlite3.Connection) -> int:
            if not has_table(conn, "blob_uploads"):  # the blob face was never used
                return 0
            cutoff = time.time() - STALE_UPLOAD_SECONDS
            stale = [
                r[0]
                for r in conn.execute("SELECT upload_id FROM blob_uploads WHERE started_at < ?", (cutoff,))
            ]
            for upload_id in stale:
                conn.execute("DELETE FROM blob_chunks WHERE owner = ?", (f"upload:{upload_id}",))
                conn.execute("DELETE FROM blob_uploads WHERE upload_id = ?", (upload_id,))
            return len(stale)

        return await self._db.write(drop)


# ------------------------------------------------------------------------- opening


def parse_url(url: str, options: dict[str, Any]) -> tuple[str, float, str]:
    """``(path, timeout seconds, synchronous mode)`` from a ``sqlite://`` URL and keyword options."""
    parts = urlsplit(url)
    if parts.netloc:
        raise InvalidInput(
            f"{url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db (three or four /)"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise InvalidInput(f"{url!r} names no database file")
    query = merge_options(parts.query, options, {"timeout", "synchronous"}, "sqlite")
    timeout = number(query, "timeout", float, 30.0, low=0, exclusive=True)
    synchronous = query.get("synchronous", "full").lower()
    if synchronous not in _SYNC_MODES:
        raise InvalidInput(f"synchronous must be one of {sorted(_SYNC_MODES)}, got {synchronous!r}")
    return path, timeout, synchronous


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
