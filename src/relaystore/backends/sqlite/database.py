"""The SQLite backend's database: its connections, the worker thread, and the single writer.

One writer connection per store, used by one worker thread; small writes may first try a second
connection on the event loop thread. Reads that can be large run on ``READ_THREADS`` read threads,
each with a read-only connection; small point reads run inline on one more (the package notes,
:mod:`relaystore.backends.sqlite`, give the reasons). Every sqlite3 error leaves this module
translated: "database is locked" is retried until the call's deadline, then raises
:class:`BackendUnavailable`, as does every other database error.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

from relaystore._load import concurrent
from relaystore.backends._group_commit import GroupCommit
from relaystore.backends.sqlite.faces import FACES, create_face, face_version
from relaystore.backends.sqlite.migrations import SCHEMA_VERSION, migrate
from relaystore.errors import BackendUnavailable

T = TypeVar("T")
log = logging.getLogger("relaystore")
CHUNK = 500  # bound on "IN (?, ?, …)" lists
INLINE_ROWS = 32  # a page of at most this many keys or metadata rows may be read on the loop thread
INLINE_READ_BYTES = 256 * 1024  # a point read of at most this much may run on the loop thread (as writes)
READ_THREADS = 2  # threads for reads that can be large: one of them in a long read leaves another free
# Larger writes run on the worker; below it, the loop already spends about as long encoding the value.
INLINE_MAX_BYTES = 256 * 1024
INLINE_SLOW_S = 0.002  # when inline writes average more than this, the next ones go to the worker…
INLINE_BACKOFF = 256  # …this many of them
INLINE_WEIGHT = 1 / 16  # of the newest inline write in that moving average: one spike is not a slow disk
CHECKPOINT_EVERY = 200  # inline commits between WAL checkpoints on the worker (~1,200 frames at 2 KB)
CHECKPOINT_WAIT_MS = 100  # how long that checkpoint waits for other connections before giving up
_BUSY: Any = object()  # an inline write found the lock taken; nothing was written


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def text_or_bytes(raw: bytes) -> str | bytes:
    """Every connection's ``text_factory``: TEXT as ``str``, or its bytes when they are not UTF-8.

    sqlite3's own decoding fails the whole statement ("Could not decode to UTF-8 column"), so one
    damaged record would fail every listing that reads it; handed on as bytes, it fails only its
    own decoding (:func:`relaystore.stores._common.parse_json` reports it as corrupt)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


class SqliteDatabase:
    """The writer connection and its worker thread, the inline writer, the readers, and the
    retry policy around them."""

    def __init__(self, path: str, *, timeout: float = 30.0, synchronous: str = "full") -> None:
        self.path = path
        self.timeout = timeout
        self.synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relaystore-sqlite")
        # Reads that can be large run here, each thread on a read-only connection of its own:
        # never on the event loop, never queued behind the writer's commits, and one large read
        # leaves the other threads free (sqlite3 releases the GIL while a statement runs).
        self._read_executor = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="relaystore-sqlite-read")
        self._read_local = threading.local()  # .conn: the read thread's connection
        self._read_conns: list[sqlite3.Connection] = []  # every read thread's, to close them
        self._read_conns_lock = threading.Lock()
        self._read_setup: list[str] = []  # statements every read connection runs once (on_each_connection)
        self._trace: Callable[[str], object] | None = None  # see trace()
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # small point reads, on the loop thread
        self._inline: sqlite3.Connection | None = None
        self._inline_pause = 0  # writes left to send to the worker after slow inline ones
        self._busy_ms = int(timeout * 1000)  # the busy_timeout the worker connection has now
        self._inline_average_s = 0.0
        self._inline_commits = 0
        self._checkpointing = False  # while True, writes queue on the worker behind the checkpoint
        self._group = GroupCommit(self._commit_group)  # writes waiting for the worker share commits
        self.read_only: str | None = None
        """Why the file was opened read-only (see :meth:`_open_read_only`), or None."""

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        await self.call(self._open_sync)
        if self.read_only is not None:  # reads only, each connection on the snapshot
            self._reader = self._immutable()
            return
        if self.path != ":memory:":  # a private in-memory database has no second connection
            self._reader = self._open_reader()
            self._inline = self._open_inline_writer()

    def _open_reader(self) -> sqlite3.Connection:
        # In WAL mode a reader never waits for the writer, and busy_timeout 0 makes the rare
        # exception (WAL recovery) fail fast into the worker path, which retries.
        uri = f"file:{Path(self.path).resolve()}?mode=ro"
        reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        reader.text_factory = text_or_bytes
        reader.execute("PRAGMA busy_timeout = 0")
        return reader

    def _open_inline_writer(self) -> sqlite3.Connection:
        # timeout=0: on the event loop a taken lock must fail at once (the worker then waits).
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        conn.text_factory = text_or_bytes
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # copying the WAL back is the worker's job
        return conn

    def _open_sync(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open_writable()
        except BackendUnavailable as exc:
            if self.path == ":memory:" or not Path(self.path).is_file():
                raise
            self._open_read_only(exc)

    def _open_writable(self) -> None:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._conn = conn
        try:
            conn.text_factory = text_or_bytes
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._busy_ms = int(self.timeout * 1000)
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            self._retry(lambda: _transaction(conn, lambda c: migrate(c, self.path)))
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _open_read_only(self, why: BackendUnavailable) -> None:
        """Open the file as an immutable snapshot when it cannot be opened for writing.

        A WAL database needs its ``-shm`` file even to be read; on a full disk (or in a directory
        this process may not write) SQLite cannot create it, and every open fails with "disk I/O
        error". ``immutable=1`` reads the database file alone, with no locking and no ``-shm``:
        the store then serves reads and refuses writes (:attr:`read_only` says why). Raises
        ``why`` if even that fails or the file needs a migration."""
        try:
            conn = self._immutable()
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM relaystore_schema").fetchone()[0]
        except sqlite3.Error:
            raise why from None
        if current != SCHEMA_VERSION:
            conn.close()
            raise BackendUnavailable(
                f"{why}; and {self.path} (schema version {current}) needs a migration to "
                f"{SCHEMA_VERSION}, which a read-only open cannot apply"
            ) from why
        self._conn = conn
        self.read_only = str(why)
        log.warning(
            "%s cannot be opened for writing (%s): serving it read-only, as a snapshot taken now; "
            "writes fail until space is freed (or the directory is writable) and the store is reopened",
            self.path,
            why,
        )

    def _immutable(self) -> sqlite3.Connection:
        uri = f"file:{quote(str(Path(self.path).resolve()))}?immutable=1"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.text_factory = text_or_bytes
        return conn

    async def on_each_connection(self, sql: str) -> None:
        """Run ``sql`` on the reader, on the worker connection and, before their next read, on
        the read threads' connections (a TEMP table for a read-only snapshot: a connection-local
        object that writes nothing to the file)."""
        with self._read_conns_lock:
            self._read_setup.append(sql)
        if self._reader is not None:
            self._reader.execute(sql)
        await self.call(lambda: self._require().execute(sql))

    async def ensure_face(self, face: str) -> None:
        """Make the face's tables current (:mod:`.faces`): a read when they already are (most
        opens, and a store opened read-only on a full disk), else its migrations under the
        write lock."""
        if await self.read(lambda conn: face_version(conn, face) == len(FACES[face]), inline=True):
            return
        await self.write(lambda conn: create_face(conn, face))

    def trace(self, callback: Callable[[str], object] | None) -> None:
        """Call ``callback(sql)`` for every statement that any of this store's connections runs,
        the read threads' included (those opened later too); None stops. For tests that count
        statements. Set it while no call is running."""
        self._trace = callback
        with self._read_conns_lock:
            connections = [self._reader, self._inline, self._conn, *self._read_conns]
        for conn in connections:
            if conn is not None:
                conn.set_trace_callback(callback)

    def refuse_writes(self) -> None:
        """Raise :class:`BackendUnavailable` when the store was opened read-only."""
        if self.read_only is not None:
            raise BackendUnavailable(
                f"SQLite store {self.path} is open read-only ({self.read_only}); nothing was written. "
                "Free disk space (or make its directory writable), then reopen the store"
            )

    async def close(self) -> None:
        for conn in (self._reader, self._inline):
            if conn is not None:
                conn.close()
        self._reader = self._inline = None

        def close_sync() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        # Reads already running finish first; waiting for them on a thread keeps the loop free.
        await asyncio.to_thread(self._read_executor.shutdown, wait=True)
        with self._read_conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()
        await self.call(close_sync)
        self._executor.shutdown(wait=True)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendUnavailable(f"SQLite store {self.path!r} is closed")
        return self._conn

    # ---------------------------------------------------------------- running work

    async def call(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:  # with the caller's context, as in_read_thread
            return await loop.run_in_executor(self._executor, contextvars.copy_context().run, fn)
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

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        """Run a read-only ``fn(conn)`` in autocommit mode (WAL gives it a consistent snapshot
        per statement) and return what it returns.

        By default ``fn`` runs on the read thread, so a read that can be large (a listing, a
        count over a range, a recursive lineage query, attachments, a blob chunk, a full read)
        never stalls the event loop. ``inline=True`` marks a small point read (one row or a few,
        found by key, at most ``INLINE_ROWS`` rows of keys or metadata): it runs on the loop
        thread, where an indexed probe costs less than the hop to a thread and back. If a read
        connection is busy (WAL recovery), or the database is ``:memory:`` (no second
        connection), the worker runs ``fn`` and retries until the timeout. Raises
        :class:`BackendUnavailable` for any database error.
        """
        result: Any = _BUSY
        if inline and self._reader is not None:
            result = self._read_on(self._reader, fn)
        elif self._reader is not None:  # a file: the read threads may open connections to it
            result = await self.in_read_thread(lambda: self._read_on(self._thread_reader(), fn))
        if result is not _BUSY:
            return cast(T, result)
        deadline = time.monotonic() + self.timeout
        return await self.call(lambda: self._retry(lambda: fn(self._require()), deadline))

    async def in_read_thread(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on a read thread (work on a connection of the caller's own, such as the
        vector search's) and return what it returns. Raises :class:`BackendUnavailable` once the
        store is closed."""
        # the caller's context goes along (as asyncio.to_thread does): what the read logs, such
        # as a skipped corrupt record, reaches the caller's collectors (the server's warnings)
        run = contextvars.copy_context().run
        try:
            return await asyncio.get_running_loop().run_in_executor(self._read_executor, run, fn)
        except RuntimeError as exc:  # executor shut down
            raise BackendUnavailable(f"SQLite store {self.path!r} is closed") from exc

    def _thread_reader(self) -> sqlite3.Connection:
        """This read thread's connection, opened on its first read (on the snapshot when the
        store is read-only), with every :meth:`on_each_connection` statement it has not run yet."""
        local = self._read_local
        if getattr(local, "conn", None) is None:
            try:
                local.conn = self._immutable() if self.read_only is not None else self._open_reader()
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
            local.applied = 0
            local.conn.set_trace_callback(self._trace)
            with self._read_conns_lock:
                self._read_conns.append(local.conn)
        conn: sqlite3.Connection = local.conn
        with self._read_conns_lock:
            pending = self._read_setup[local.applied :]
        for sql in pending:
            conn.execute(sql)
            local.applied += 1
        return conn

    def _read_on(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> Any:
        """``fn(conn)``, or ``_BUSY`` when ``conn`` found the database busy."""
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise BackendUnavailable(f"SQLite error on {self.path}: {exc}") from exc
            return _BUSY
        except sqlite3.DatabaseError as exc:
            raise BackendUnavailable(f"SQLite error on {self.path}: {exc}") from exc

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, inline_bytes: int | None = None) -> T:
        """Run ``fn(conn)`` inside one ``BEGIN IMMEDIATE`` transaction; roll back if it raises.

        ``inline_bytes`` (the size of what ``fn`` writes) marks a small, bounded write that may
        run on the event loop thread (see the module notes); without it the worker runs ``fn``.
        """
        self.refuse_writes()
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
        self.refuse_writes()
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
        if concurrent():  # other callers in flight (a server): join a group commit, free the loop
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


def few(count: int | None) -> bool:
    """Whether ``count`` rows of keys or metadata (None: unbounded) are few enough to read inline."""
    return count is not None and count <= INLINE_ROWS


def placeholders(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def chunks(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
