"""Group commit for the SQLite worker: concurrent writes share one transaction and one fsync.

With ``synchronous=FULL`` every commit waits for the disk. When writes arrive while the worker
is busy they queue here, and the worker runs the whole queue as one ``BEGIN IMMEDIATE`` … ``COMMIT``:
each write inside its own ``SAVEPOINT``, so one that raises is rolled back alone and only its
caller sees the error, while the others commit. Every caller is answered only after the
commit that holds its write returned (or with the error that stopped it), so an acknowledged
write is on disk exactly as before. Groups form by themselves: the first write of an idle
store goes out alone, and whatever arrives meanwhile waits for the next commit.

A group is retried as a whole while the database is locked by another process, until the
earliest deadline among its writes (a write may so fail sooner than its own deadline, never later).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from relaystore.errors import BackendUnavailable

Write = Callable[[sqlite3.Connection], Any]
Runner = Callable[[Callable[[sqlite3.Connection], list[Any]], float], Awaitable[list[Any]]]


@dataclass
class _Queued:
    fn: Write
    deadline: float
    future: asyncio.Future[Any] = field(repr=False)


class GroupCommit:
    """The queue of writes waiting for the worker, and the task that drains it.

    ``run(group_fn, deadline)`` is how the database runs one group on its worker thread:
    it must call ``group_fn(conn)`` inside ``BEGIN IMMEDIATE`` … ``COMMIT`` with the busy retry.
    """

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._queued: list[_Queued] = []
        self._draining: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """True while a group is being committed: a new write would only wait for its lock."""
        return self._draining is not None

    async def write(self, fn: Write, deadline: float) -> Any:
        """Run ``fn(conn)`` in the next group transaction; its result once that has committed."""
        loop = asyncio.get_running_loop()
        queued = _Queued(fn, deadline, loop.create_future())
        self._queued.append(queued)
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await queued.future

    async def _drain(self) -> None:
        try:
            while self._queued:
                group, self._queued = self._queued, []
                await self._commit(group)
        finally:
            self._draining = None

    async def _commit(self, group: list[_Queued]) -> None:
        try:
            outcomes = await self._run(lambda conn: _apply(conn, group), min(q.deadline for q in group))
        except BaseException as exc:  # the group as a whole: lock timeout, disk full, closed store
            for queued in group:
                if not queued.future.done():
                    queued.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for queued, (ok, value) in zip(group, outcomes, strict=True):
            if queued.future.done():  # the caller was cancelled; its write still committed
                continue
            if ok:
                queued.future.set_result(value)
            else:
                queued.future.set_exception(value)


def _apply(conn: sqlite3.Connection, group: list[_Queued]) -> list[tuple[bool, Any]]:
    """Each write of the group under its own savepoint (inside the caller's transaction)."""
    if len(group) == 1:  # nothing to isolate it from: no savepoint statements
        return [(True, group[0].fn(conn))]
    outcomes: list[tuple[bool, Any]] = []
    for queued in group:
        conn.execute("SAVEPOINT relaystore_write")
        try:
            outcomes.append((True, queued.fn(conn)))
        except Exception as exc:
            conn.execute("ROLLBACK TO relaystore_write")
            outcomes.append((False, _as_relaystore_error(exc)))
        conn.execute("RELEASE relaystore_write")
    return outcomes


def _as_relaystore_error(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        return BackendUnavailable(f"SQLite error: {exc}")
    return exc
