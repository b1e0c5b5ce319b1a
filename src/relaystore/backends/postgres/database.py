"""The PostgreSQL backend's connections: the pool, the schema, the error policy around both.

- No lock in the process: every call borrows its own connection from a psycopg pool, so calls
  run concurrently. A write that must be atomic is one transaction holding a transaction-scoped
  advisory lock on exactly what it protects (:meth:`PgDatabase.lock`).
- psycopg errors never escape (:func:`translate`): connection loss and timeouts become
  :class:`BackendUnavailable` (and stale pooled connections are discarded, so the next call
  reconnects), values PostgreSQL cannot hold become :class:`InvalidInput`.
- Every call has a client-side deadline (``call_timeout``, :class:`Deadline`): a server that stops
  answering (frozen, a dead network path) fails the call promptly, and its connection is dropped,
  not pooled again. The deadline stays here rather than in the shared policy: its mechanism,
  cutting a psycopg connection's socket, is what makes it work, and that is PostgreSQL's alone.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, LiteralString, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from relaystore.backends.postgres.url import PgOptions
from relaystore.errors import BackendUnavailable, Conflict, InvalidInput

Conn = psycopg.AsyncConnection[Any]
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
"""Take the transaction-scoped advisory lock whose key is the hash of the one text parameter."""


def compose(template: str, schema: sql.Identifier) -> sql.Composed:
    """``template`` with ``{s}`` replaced by the quoted ``schema``."""
    return sql.SQL(cast(LiteralString, template)).format(s=schema)


def translate(exc: psycopg.Error) -> Exception:
    """The relaystore error that stands for a psycopg error."""
    if isinstance(exc, pg_errors.UniqueViolation):
        return Conflict(f"already exists: {exc.diag.message_detail or exc}")
    if isinstance(exc, pg_errors.QueryCanceled):
        return BackendUnavailable(f"PostgreSQL statement timed out or was cancelled: {exc}")
    if isinstance(exc, psycopg.DataError):  # e.g. \u0000 in jsonb, a number jsonb cannot hold
        return InvalidInput(f"PostgreSQL cannot store this value: {str(exc).splitlines()[0]}")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return BackendUnavailable(f"PostgreSQL is unreachable: {exc}")
    return BackendUnavailable(f"PostgreSQL error {exc.sqlstate or ''}: {exc}".strip())


def _lost_connection(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not isinstance(
        exc, pg_errors.QueryCanceled
    )


def _connection_kwargs(options: PgOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "application_name": options.application_name,
        "connect_timeout": max(2, round(options.timeout)),
    }
    if options.statement_timeout:
        kwargs["options"] = f"-c statement_timeout={round(options.statement_timeout * 1000)}"
    return kwargs


def _cut(conn: Conn) -> None:
    """Shut the connection's socket down, without waiting for the server or closing the fd.

    A query waiting on a frozen server then reads EOF at once: psycopg raises OperationalError,
    libpq marks the connection bad, and the pool discards it instead of lending it again.
    Closing the fd instead would leave the waiter registered on a dead fd, never woken; cancelling
    the task makes psycopg send a cancel request and wait for its answer (up to 10 s).
    """
    # Closing the dup leaves psycopg's fd open; the shutdown applies to the socket behind both.
    with suppress(OSError, psycopg.Error), socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


class Deadline:
    """A client-side bound on one call's work on a connection: past ``seconds``, :func:`_cut`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False

    @contextmanager
    def watch(self, conn: Conn) -> Iterator[None]:
        """Arm the deadline around a block of work on ``conn`` (0 seconds: no deadline)."""
        if not self.seconds:
            yield
            return
        handle = asyncio.get_running_loop().call_later(self.seconds, self._expire, conn)
        try:
            yield
        finally:
            handle.cancel()

    def _expire(self, conn: Conn) -> None:
        self.expired = True
        _cut(conn)

    def error(self, exc: Exception) -> BackendUnavailable:
        """What a call raises when its deadline cut the connection under it."""
        return BackendUnavailable(
            f"PostgreSQL did not answer within call_timeout={self.seconds:g}s; "
            f"the connection was dropped ({str(exc).splitlines()[0] if str(exc) else exc!r})"
        )


class PgDatabase:
    """The pool, the schema, and the error policy around both."""

    def __init__(self, options: PgOptions) -> None:
        self.options = options
        self.schema = options.schema
        self._ident = sql.Identifier(options.schema)
        self._queries: dict[str, sql.Composed] = {}
        self.pool = AsyncConnectionPool(
            options.conninfo,
            min_size=options.pool_min,
            max_size=options.pool_max,
            open=False,
            timeout=options.timeout,
            max_idle=options.max_idle,
            max_lifetime=options.max_lifetime,
            check=self._check if options.check else None,
            name=options.application_name,
            kwargs=_connection_kwargs(options),
        )

    async def open(self) -> None:
        """Fill the pool to ``pool_min``; :class:`BackendUnavailable` if that takes over ``timeout``."""
        await self._probe()
        try:
            await self.pool.open(wait=True, timeout=self.options.timeout)
        except psycopg.Error as exc:
            raise BackendUnavailable(
                f"cannot connect to PostgreSQL within {self.options.timeout}s: {exc}"
            ) from exc

    async def _probe(self) -> None:
        """One direct connection first: a refusal that retrying cannot fix (the server's FATAL: no
        such database, bad password) fails at once with the server's words, instead of the pool
        retrying it until ``timeout`` and logging each try. A network error is left to the pool,
        which waits for a server that is still starting."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.options.conninfo, **_connection_kwargs(self.options)
            )
        except psycopg.OperationalError as exc:
            text = str(exc)
            if "FATAL:" not in text:
                return
            reason = text.rsplit("FATAL:", 1)[-1].strip().splitlines()[0]
            fix = "create it, or fix the URL" if "does not exist" in reason else "fix the URL"
            raise BackendUnavailable(f"cannot connect to PostgreSQL: {reason} ({fix})") from exc
        await conn.close()

    async def close(self) -> None:
        await self.pool.close()

    def compose(self, template: str) -> sql.Composed:
        """Like :meth:`sql`, not cached: for templates that vary with their arguments."""
        return compose(template, self._ident)

    def sql(self, template: str) -> sql.Composed:
        """``template`` with ``{s}`` replaced by the quoted schema (built once per template)."""
        query = self._queries.get(template)
        if query is None:
            query = compose(template, self._ident)
            self._queries[template] = query
        return query

    async def _check(self, conn: Conn) -> None:
        """The pool's test of a connection it lends (``check=true``), bounded by ``timeout``:
        it is part of getting a connection, and a frozen server must not hang it."""
        with Deadline(self.options.timeout).watch(conn):
            await AsyncConnectionPool.check_connection(conn)

    @asynccontextmanager
    async def connection(self, *, bounded: bool = True) -> AsyncIterator[Conn]:
        """A pooled autocommit connection; psycopg errors leave as relaystore errors.

        Unless ``bounded`` is false (migrations, which may rightly run long), the block must end
        within ``call_timeout``, or the connection is cut and :class:`BackendUnavailable` raised.
        """
        deadline = Deadline(self.options.call_timeout if bounded else 0)
        try:
            async with self.pool.connection() as conn:
                with deadline.watch(conn):
                    yield conn
        except psycopg.Error as exc:
            if deadline.expired:  # the server is frozen, not gone: checking the pool would hang
                raise deadline.error(exc) from exc
            if _lost_connection(exc):
                await self._drop_stale_connections()
            raise translate(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection inside one transaction, committed unless the block raises."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def _drop_stale_connections(self) -> None:
        # When one connection died, its idle siblings probably did too (server restart, a cloud
        # proxy's idle cut): check them now so that the next call gets a live one.
        # The pool replaces what fails; the caller gets the original error either way.
        with suppress(Exception):
            await self.pool.check()

    def lock_key(self, *parts: str) -> str:
        """The text hashed into the advisory lock key of ``parts`` within this schema."""
        return ":".join(("relaystore", self.schema, *parts))

    async def lock(self, conn: Conn, *parts: str) -> None:
        """Take a transaction-scoped advisory lock on ``parts`` within this schema."""
        await conn.execute(LOCK, (self.lock_key(*parts),))

    async def all(
        self, template: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        async with self.connection() as conn:
            cur = await conn.execute(self.sql(template), params)
            return await cur.fetchall()

    async def one(self, template: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        async with self.connection() as conn:
            cur = await conn.execute(self.sql(template), params)
            return await cur.fetchone()

    async def scalar(self, template: str, params: Sequence[Any] = ()) -> Any:
        row = await self.one(template, params)
        return None if row is None else row[0]

    async def rowcount(self, template: str, params: Sequence[Any] = ()) -> int:
        async with self.connection() as conn:
            cur = await conn.execute(self.sql(template), params)
            return cur.rowcount
