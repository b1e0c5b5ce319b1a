"""The SQLite backend's database: its connections, the worker thread, and the single writer.

One writer connection per store, used by one worker thread; small writes may first try a second
connection on the event loop thread, and reads run on a read-only connection (the package notes,
:mod:`relaystore.backends.sqlite`, give the reasons). Every sqlite3 error leaves this module
translated: "database is locked" is retried until the call's deadline, then raises
:class:`BackendUnavailable`, as does every other database error.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from relaystore.backends._group_commit import GroupCommit
from relaystore.backends.sqlite.migrations import migrate
from relaystore.errors import BackendUnavailable

T = TypeVar("T")
CHUNK = 500  # bound on "IN (?, ?, …)" lists
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
        self._retry(lambda: _transaction(conn, lambda c: migrate(c, self.path)))

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


def placeholders(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def chunks(values: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
