"""PostgreSQL backend: ``postgresql://user@host:5432/db?schema=relaystore&pool_min=1&pool_max=10``.

Design (details and the reasons in ``docs/backends/postgres.md``):

- Every table lives in one schema per tenant (``?schema=``, default ``relaystore``), always named
  with its schema, so nothing depends on ``search_path`` (unreliable behind PgBouncer).
- No lock in the process: every call borrows its own connection from a psycopg pool, so calls
  run concurrently. A write that must be atomic is one transaction holding a transaction-scoped
  advisory lock on exactly what it protects (one thread, one document).
- ``seq`` columns are identity columns: assigned by the server, increasing, never reused.
- Adaptive documents, runs and output records are ``json`` (the exact text written, ``\\u0000``
  escapes, ``17.0`` and ``1e20`` included); checkpoint metadata, relaystore's own model with no
  floats, is ``jsonb``; checkpoint state, pending-write values and attachments are ``bytea``.
- Migrations are versioned in ``{schema}.relaystore_schema`` and run at open under an advisory
  lock; :func:`migrate` also runs inside a caller's own transaction.
- psycopg errors never escape: connection loss and timeouts become :class:`BackendUnavailable`
  (and stale pooled connections are discarded, so the next call reconnects), values PostgreSQL
  cannot hold become :class:`InvalidInput`.
- Every call has a client-side deadline (``call_timeout``): a server that stops answering (frozen,
  a dead network path) fails the call promptly, and its connection is dropped, not pooled again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, LiteralString, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool
from pydantic import TypeAdapter

from relaystore.backends import _full_reads as full_reads
from relaystore.backends._options import flag, number
from relaystore.backends.postgres_items import PgItemStore
from relaystore.errors import BackendUnavailable, Conflict, InvalidInput
from relaystore.models.checkpoints import Checkpoint, CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.models.outputs import BlobContent, OutputRecord, OutputRef
from relaystore.stores import AdaptiveStore, CheckpointStore, DocKind, OutputFilter, OutputStore, Store
from relaystore.stores._common import ANY, parse_json, parse_rows, prefix_upper_bound
from relaystore.stores.adaptive import AGENT_DOC_KINDS
from relaystore.stores.blobs import BlobStore
from relaystore.stores.checkpoints import FullQuery, SeqRow, check_head, duplicate_conflict

_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)
Conn = psycopg.AsyncConnection[Any]

# Each migration is a list of statements; ``{s}`` is the quoted schema. Plain CREATE INDEX (never
# CONCURRENTLY) so that a migration can run inside the caller's transaction.
# Ids are COLLATE "C" so that listings sort by code point whatever the database's locale.
# Checkpoints and runs have no index on seq alone, on purpose: given one, the planner may answer
# "latest of thread X" by walking all seqs backwards and filtering (it does when X holds a large
# share of rows), which reads every newer row of every other thread. Keyed (thread_id, seq), the
# latest checkpoint and a page of a thread are one index descent whatever the table holds.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE {s}.checkpoints (
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_id TEXT COLLATE "C" NOT NULL,
            metadata JSONB NOT NULL,
            state BYTEA NOT NULL,
            CONSTRAINT checkpoints_thread_seq PRIMARY KEY (thread_id, seq),
            UNIQUE (thread_id, checkpoint_id))""",
        """CREATE TABLE {s}.outputs (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT COLLATE "C" NOT NULL UNIQUE,
            task_id TEXT COLLATE "C" NOT NULL,
            attempt BIGINT NOT NULL,
            producer_agent TEXT COLLATE "C" NOT NULL,
            record JSONB NOT NULL)""",
        "CREATE INDEX outputs_attempt ON {s}.outputs (task_id, attempt, seq)",
        "CREATE INDEX outputs_producer ON {s}.outputs (producer_agent, seq)",
        "CREATE INDEX outputs_producer_run ON {s}.outputs (producer_agent, task_id, attempt, seq)",
        """CREATE TABLE {s}.output_parents (
            parent TEXT COLLATE "C" NOT NULL,
            child_seq BIGINT NOT NULL REFERENCES {s}.outputs (seq) ON DELETE CASCADE,
            PRIMARY KEY (parent, child_seq))""",
        """CREATE TABLE {s}.runs (
            seq BIGINT GENERATED ALWAYS AS IDENTITY,
            agent_id TEXT COLLATE "C" NOT NULL,
            run_id TEXT COLLATE "C" NOT NULL,
            doc JSON NOT NULL,
            CONSTRAINT runs_agent_seq PRIMARY KEY (agent_id, seq),
            UNIQUE (agent_id, run_id))""",
        """CREATE TABLE {s}.documents (
            kind TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            doc JSON NOT NULL,
            PRIMARY KEY (kind, key))""",
    ],
    [  # 2: content-addressed blobs as numbered 1 MiB chunks; staged under "upload:<id>"
        """CREATE TABLE {s}.blobs (
            sha256 TEXT COLLATE "C" PRIMARY KEY,
            size BIGINT NOT NULL,
            mime TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
        """CREATE TABLE {s}.blob_chunks (
            owner TEXT COLLATE "C" NOT NULL,
            idx INTEGER NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (owner, idx))""",
        """CREATE TABLE {s}.blob_uploads (
            upload_id TEXT COLLATE "C" PRIMARY KEY,
            started_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
    ],
    [  # 3: pending writes of a checkpoint, and attachments shared by a thread's checkpoints
        # One column per field: the value stays raw bytea (no base64, no JSON parse on read).
        # The primary key's (thread_id, checkpoint_id) prefix serves every cascade delete.
        """CREATE TABLE {s}.checkpoint_writes (
            thread_id TEXT COLLATE "C" NOT NULL,
            checkpoint_id TEXT COLLATE "C" NOT NULL,
            task_id TEXT COLLATE "C" NOT NULL,
            idx BIGINT NOT NULL,
            channel TEXT COLLATE "C" NOT NULL,
            type TEXT COLLATE "C",
            task_path TEXT COLLATE "C" NOT NULL,
            value BYTEA NOT NULL,
            PRIMARY KEY (thread_id, checkpoint_id, task_id, idx))""",
        """CREATE TABLE {s}.thread_attachments (
            thread_id TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            value BYTEA NOT NULL,
            PRIMARY KEY (thread_id, key))""",
    ],
    [  # 4: output records as json, the exact text: jsonb rewrote 1e20 as the integer 1000…0
        # (and changed 5.771043964779723e16) and refused \u0000. Rows written as jsonb keep the
        # text jsonb already normalized; nothing can restore what it lost.
        "ALTER TABLE {s}.outputs ALTER COLUMN record TYPE json USING record::text::json",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
DEFAULT_SCHEMA = "relaystore"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_OPTIONS = {
    "schema",
    "pool_min",
    "pool_max",
    "timeout",
    "call_timeout",
    "check",
    "max_idle",
    "max_lifetime",
    "statement_timeout",
    "application_name",
}
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


# ------------------------------------------------------------------------- options


@dataclass(frozen=True)
class PgOptions:
    """Where and how to connect. Times are seconds."""

    conninfo: str
    schema: str = DEFAULT_SCHEMA
    pool_min: int = 1
    pool_max: int = 10
    timeout: float = 10.0
    call_timeout: float = 30.0  # 0: no limit; parse_url defaults it to 3 × timeout
    check: bool = False
    max_idle: float = 600.0
    max_lifetime: float = 3600.0
    statement_timeout: float = 0.0  # 0: no limit
    application_name: str = ""


def check_schema_name(name: object) -> str:
    """Return ``name`` if it is a usable schema name: lowercase ``[a-z_][a-z0-9_]*``, at most 63
    bytes, not ``pg_…`` (reserved). Raise :class:`InvalidInput` otherwise."""
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name) or name.startswith("pg_"):
        raise InvalidInput(
            f"schema must match [a-z_][a-z0-9_]* (at most 63 characters, not pg_…), got {name!r}"
        )
    return name


def parse_url(url: str, options: dict[str, Any]) -> PgOptions:
    """Split a ``postgresql://`` URL into libpq's connection string and relaystore's options.

    relaystore's options (``schema``, ``pool_min``, ``pool_max``, ``timeout``, ``call_timeout``,
    ``check``, ``max_idle``, ``max_lifetime``, ``statement_timeout``, ``application_name``) may
    be URL query parameters or keywords (keywords win); other query parameters (``sslmode`` …)
    are passed to libpq. Raises :class:`InvalidInput` for a malformed URL or option.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _OPTIONS}
    unknown = set(options) - _OPTIONS
    if unknown:
        raise InvalidInput(f"unknown postgres option(s): {', '.join(sorted(unknown))}")
    ours.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()})
    conninfo = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in _OPTIONS])))
    try:
        conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise InvalidInput(f"not a usable PostgreSQL URL: {exc}") from None
    pool_min = number(ours, "pool_min", int, 1, low=0)
    pool_max = number(ours, "pool_max", int, max(10, pool_min), low=1)
    if pool_max < pool_min:
        raise InvalidInput(f"pool_max ({pool_max}) must be at least pool_min ({pool_min})")
    timeout = number(ours, "timeout", float, 10.0, low=0.001)
    return PgOptions(
        conninfo=conninfo,
        schema=check_schema_name(ours.get("schema", DEFAULT_SCHEMA)),
        pool_min=pool_min,
        pool_max=pool_max,
        timeout=timeout,
        # Three times `timeout` (30 s by default): a call's work may legitimately outlast a
        # connect, and whoever lowers `timeout` to fail fast wants calls to fail fast too.
        call_timeout=number(ours, "call_timeout", float, 3 * timeout, low=0),
        check=flag(ours, "check", False),
        max_idle=number(ours, "max_idle", float, 600.0, low=1),
        max_lifetime=number(ours, "max_lifetime", float, 3600.0, low=1),
        statement_timeout=number(ours, "statement_timeout", float, 0.0, low=0),
        application_name=ours.get("application_name") or f"relaystore-{uuid.uuid4().hex[:12]}",
    )


# ------------------------------------------------------------------------- errors


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


# ------------------------------------------------------------------------- migrations


async def migrate(conn: Conn, schema: str = DEFAULT_SCHEMA) -> int:
    """Create or upgrade relaystore's tables in ``schema`` on ``conn``; return the schema version.

    Works on an autocommit connection (it commits its own transaction) and inside a transaction
    the caller has open (it uses a savepoint, and the caller's COMMIT or ROLLBACK decides).
    Concurrent callers are serialized by an advisory lock held until their transaction ends.
    Raises :class:`InvalidInput` for a bad schema name and :class:`BackendUnavailable` if the
    schema is newer than this relaystore or the server fails.
    """
    ident = sql.Identifier(check_schema_name(schema))
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"relaystore:migrate:{schema}",)
            )
            current = await _current_version(conn, schema, ident)
            if current > SCHEMA_VERSION:
                raise BackendUnavailable(
                    f"schema {schema!r} has version {current}; this relaystore knows up to "
                    f"{SCHEMA_VERSION}. Upgrade relaystore."
                )
            # Only DDL when something is missing: a role without CREATE rights can open a
            # schema that a deployment step migrated.
            if current < SCHEMA_VERSION:
                await _create_version_table(conn, ident)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                await _apply(conn, ident, version)
            return max(current, SCHEMA_VERSION)
    except psycopg.Error as exc:
        raise translate(exc) from exc


async def _current_version(conn: Conn, schema: str, ident: sql.Identifier) -> int:
    """The schema's version, 0 if it has no version table (or does not exist)."""
    cur = await conn.execute(
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = 'relaystore_schema'",
        (schema,),
    )
    if await cur.fetchone() is None:
        return 0
    cur = await conn.execute(
        sql.SQL("SELECT COALESCE(MAX(version), 0) FROM {}.relaystore_schema").format(ident)
    )
    return int(cast(tuple[int], await cur.fetchone())[0])


async def _create_version_table(conn: Conn, ident: sql.Identifier) -> None:
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
    await conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.relaystore_schema "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ).format(ident)
    )


async def _apply(conn: Conn, ident: sql.Identifier, version: int) -> None:
    for statement in MIGRATIONS[version - 1]:
        await conn.execute(sql.SQL(cast(LiteralString, statement)).format(s=ident))
    await conn.execute(
        sql.SQL("INSERT INTO {}.relaystore_schema (version) VALUES (%s)").format(ident), (version,)
    )


# ------------------------------------------------------------------------- database


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
        await self._probe()
        try:
            await self.pool.open(wait=True, timeout=self.options.timeout)
        except psycopg.Error as exc:
            raise BackendUnavailable(
                f"cannot connect to PostgreSQL within {self.options.timeout}s: {exc}"
            ) from exc
        async with self.connection(bounded=False) as conn:
            await migrate(conn, self.schema)

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

    def sql(self, template: str) -> sql.Composed:
        """``template`` with ``{s}`` replaced by the quoted schema (built once per template)."""
        query = self._queries.get(template)
        if query is None:
            query = sql.SQL(cast(LiteralString, template)).format(s=self._ident)
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


# Distinct values of an indexed column read as a skip scan: one index probe per value, so
# listing 10 threads costs 10 probes however many checkpoints each thread has.
_SKIP_SCAN = """
    WITH RECURSIVE walk(k) AS (
        (SELECT {col} FROM {s}.{table} WHERE {col} > %(after)s AND {col} >= %(low)s
            AND (%(high)s::text IS NULL OR {col} < %(high)s) ORDER BY {col} LIMIT 1)
        UNION ALL
        SELECT (SELECT t.{col} FROM {s}.{table} t WHERE t.{col} > walk.k
            AND (%(high)s::text IS NULL OR t.{col} < %(high)s) ORDER BY t.{col} LIMIT 1)
        FROM walk WHERE walk.k IS NOT NULL
    )
    SELECT k FROM walk WHERE k IS NOT NULL LIMIT %(limit)s"""


def _skip_scan(table: str, column: str) -> str:
    return _SKIP_SCAN.replace("{table}", table).replace("{col}", column)


def _after_key(after: str | None) -> str:
    return "" if after is None else after  # ids are never empty, so "" precedes every id


def _range(after: str | None, prefix: str | None, limit: int | None) -> dict[str, Any]:
    """Parameters of :data:`_SKIP_SCAN`: keys > after, in [prefix, its upper bound)."""
    high = None if prefix is None else prefix_upper_bound(prefix)
    return {"after": _after_key(after), "low": prefix or "", "high": high, "limit": limit}


# ------------------------------------------------------------------------- checkpoints

HEAD_CHECKPOINT = "SELECT checkpoint_id FROM {s}.checkpoints WHERE thread_id = %s ORDER BY seq DESC LIMIT 1"
LATEST_CHECKPOINT = (
    "SELECT seq, metadata::text, state FROM {s}.checkpoints WHERE thread_id = %s ORDER BY seq DESC LIMIT 1"
)

# A save is one statement. Plain, it takes the thread's advisory lock itself (the insert's row
# comes FROM the lock, so the lock is held before the identity assigns seq, until the implicit
# COMMIT). With a compare-and-set it runs after a separate lock statement in the same
# transaction: under READ COMMITTED a statement's snapshot is taken when it starts, so a head
# read in the statement that waited for the lock could miss the save that held it.
# The attachments go in the same statement, and only if the checkpoint row was inserted.
_SAVE_FROM_LOCK = "WITH lock AS (SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))), "
_SAVE_IF_HEAD = (
    "WITH head AS (SELECT checkpoint_id FROM {s}.checkpoints WHERE thread_id = %(thread)s "
    "ORDER BY seq DESC LIMIT 1), "
)
_SAVE_INSERT = (
    "saved AS (INSERT INTO {s}.checkpoints (thread_id, checkpoint_id, metadata, state) "
    "SELECT %(thread)s, %(id)s, %(metadata)s::jsonb, %(state)s "
)
_SAVE_ATTACHMENTS = (
    ", attached AS (INSERT INTO {s}.thread_attachments (thread_id, key, value) "
    "SELECT %(thread)s, a.key, a.value FROM unnest(%(keys)s::text[], %(values)b::bytea[]) AS a(key, value) "
    "WHERE EXISTS (SELECT 1 FROM saved) ON CONFLICT (thread_id, key) DO UPDATE SET value = EXCLUDED.value)"
)


def save_checkpoint_query(cas: bool, attachments: bool) -> str:
    """Template of a save: ``(inserted, head before)`` of the thread, the head only if ``cas``.

    Params (named): lock, thread, id, metadata, state, expected (if cas), keys and values (if
    attachments). Without ``cas``, the statement takes the thread lock itself.
    """
    source = (
        "WHERE (SELECT checkpoint_id FROM head) IS NOT DISTINCT FROM %(expected)s" if cas else "FROM lock"
    )
    query = (_SAVE_IF_HEAD if cas else _SAVE_FROM_LOCK) + _SAVE_INSERT + source + " RETURNING 1)"
    query += _SAVE_ATTACHMENTS if attachments else ""
    head = "(SELECT checkpoint_id FROM head)" if cas else "NULL"
    return query + f" SELECT EXISTS (SELECT 1 FROM saved), {head}"


DELETE_WRITES = "DELETE FROM {s}.checkpoint_writes WHERE thread_id = %s"
# Everything at or below the (keep+1)-th newest seq goes (an index probe finds it), and the
# pending writes of exactly those checkpoints with it. Params: thread_id, thread_id, keep,
# thread_id. The CTE runs once, whether or not the outer query reads it.
PRUNE_CHECKPOINTS = """
    WITH gone AS (
        DELETE FROM {s}.checkpoints WHERE thread_id = %s AND seq <=
            (SELECT seq FROM {s}.checkpoints WHERE thread_id = %s ORDER BY seq DESC OFFSET %s LIMIT 1)
        RETURNING checkpoint_id
    ), writes AS (
        DELETE FROM {s}.checkpoint_writes w
        WHERE w.thread_id = %s AND (w.checkpoint_id IN (SELECT checkpoint_id FROM gone) OR NOT EXISTS
            (SELECT 1 FROM {s}.checkpoints c
             WHERE c.thread_id = w.thread_id AND c.checkpoint_id = w.checkpoint_id))
    )
    SELECT COUNT(*) FROM gone"""
INSERT_WRITE = (
    "INSERT INTO {s}.checkpoint_writes "
    "(thread_id, checkpoint_id, task_id, idx, channel, type, task_path, value) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (thread_id, checkpoint_id, task_id, idx) "
)
PUT_WRITES = (
    "INSERT INTO {s}.checkpoint_writes "
    "(thread_id, checkpoint_id, task_id, idx, channel, type, task_path, value) "
    "SELECT %s, %s, * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], "
    "%b::bytea[]) ON CONFLICT (thread_id, checkpoint_id, task_id, idx) "
)
DELETE_ORPHAN_WRITES = (
    "WITH gone AS (DELETE FROM {s}.checkpoint_writes w WHERE w.thread_id = %s AND NOT EXISTS (SELECT 1 "
    "FROM {s}.checkpoints c WHERE c.thread_id = w.thread_id AND c.checkpoint_id = w.checkpoint_id) "
    "RETURNING checkpoint_id) SELECT COUNT(DISTINCT checkpoint_id) FROM gone"
)


def full_read_query(where: str, direction: str) -> str:
    """One page of checkpoints with their refs' attachments and writes (see ``_full_reads``).

    MATERIALIZED: the page is chosen once, not once per branch that reads it.
    """
    return (
        "WITH c AS MATERIALIZED (SELECT seq, checkpoint_id, metadata, "
        "CASE WHEN %(values)s THEN state ELSE ''::bytea END AS state FROM {s}.checkpoints "
        f"WHERE thread_id = %(thread)s{where} ORDER BY seq {direction} LIMIT %(limit)s) "
        "SELECT 0, seq, checkpoint_id, metadata::text, state, NULL::text, NULL::text, NULL::text FROM c "
        "UNION ALL SELECT 1, NULL, NULL, a.key, a.value, NULL, NULL, NULL FROM {s}.thread_attachments a "
        "WHERE %(values)s AND a.thread_id = %(thread)s AND a.key IN (SELECT jsonb_array_elements_text("
        "c.metadata -> 'refs') FROM c WHERE jsonb_typeof(c.metadata -> 'refs') = 'array') "
        "UNION ALL SELECT 2, w.idx, w.checkpoint_id, w.task_id, w.value, w.channel, w.type, w.task_path "
        "FROM {s}.checkpoint_writes w WHERE w.thread_id = %(thread)s "
        "AND w.checkpoint_id IN (SELECT checkpoint_id FROM c)"
    )


UPSERT_WRITE = (
    "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, "
    "task_path = EXCLUDED.task_path, value = EXCLUDED.value"
)


def _text(value: str) -> str:
    """``value`` if PostgreSQL text can hold it; a lone surrogate is :class:`InvalidInput`.

    The contract checks ids (``task_id``, ``channel``) for this but not ``task_path`` or
    ``type``, and psycopg would raise a bare UnicodeEncodeError while sending them.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"not valid Unicode text: {value!r}") from None
    return value


def _write_row(thread_id: str, checkpoint_id: str, write: PendingWrite) -> tuple[Any, ...]:
    """Parameters of :data:`INSERT_WRITE` for one write."""
    kind = None if write.type is None else _text(write.type)
    path = _text(write.task_path)
    return (thread_id, checkpoint_id, write.task_id, write.idx, write.channel, kind, path, write.value)


def list_checkpoints_query(paged: bool, newest_first: bool) -> str:
    """Template of one page of a thread: params thread_id, [cursor seq if paged], limit."""
    direction, compare = ("DESC", "<") if newest_first else ("ASC", ">")
    where = f" AND seq {compare} %s" if paged else ""
    return (
        f"SELECT seq, metadata::text FROM {{s}}.checkpoints WHERE thread_id = %s{where} "
        f"ORDER BY seq {direction} LIMIT %s"
    )


def _checkpoint(schema: str, row: tuple[int, str, bytes]) -> Checkpoint:
    seq, metadata, state = row
    return Checkpoint(parse_json(_METADATA, metadata, f"{schema}.checkpoints row seq={seq}"), bytes(state))


class PgCheckpointStore(CheckpointStore):
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> None:
        """The checkpoint and its attachments in one transaction, under the thread's lock.

        One writer per thread at a time, CAS or not: the head read stays the head until COMMIT,
        and seq order within a thread is commit order, so a reader paging with a cursor never
        has an earlier checkpoint appear behind it. A Conflict writes nothing, attachments included.
        """
        cas = expected_head is not ANY
        query = self._db.sql(save_checkpoint_query(cas, bool(attachments)))
        params = {
            "lock": self._db.lock_key("thread", thread_id),
            "thread": thread_id,
            "id": metadata.id,
            "metadata": metadata.json_text(),
            "state": state,
            "expected": expected_head if cas else None,
            "keys": list(attachments),
            "values": list(attachments.values()),
        }
        async with self._db.connection() as conn:
            try:
                row = await (
                    self._save_cas(conn, query, params) if cas else self._save_plain(conn, query, params)
                )
            except pg_errors.UniqueViolation:
                raise duplicate_conflict(thread_id, metadata.id) from None
        if not row[0]:
            check_head(thread_id, expected_head, row[1])

    async def _save_plain(self, conn: Conn, query: sql.Composed, params: dict[str, Any]) -> tuple[Any, ...]:
        """One autocommit statement: one round trip."""
        cur = await conn.execute(query, params)
        return cast(tuple[Any, ...], await cur.fetchone())

    async def _save_cas(self, conn: Conn, query: sql.Composed, params: dict[str, Any]) -> tuple[Any, ...]:
        """BEGIN, lock, conditional insert, COMMIT, pipelined: one round trip, four statements."""
        async with conn.pipeline(), conn.transaction():
            await conn.execute(LOCK, (params["lock"],))
            cur = await conn.execute(query, params)
        return cast(tuple[Any, ...], await cur.fetchone())

    async def _head(self, thread_id: str) -> str | None:
        # The id has its own column, so a head whose metadata is corrupt still names itself.
        return cast(str | None, await self._db.scalar(HEAD_CHECKPOINT, (thread_id,)))

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        row = await self._db.one(
            "SELECT seq, metadata::text, state FROM {s}.checkpoints "
            "WHERE thread_id = %s AND checkpoint_id = %s",
            (thread_id, checkpoint_id),
        )
        return None if row is None else _checkpoint(self._db.schema, row)

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        row = await self._db.one(LATEST_CHECKPOINT, (thread_id,))
        return None if row is None else _checkpoint(self._db.schema, row)

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        params: list[Any] = [thread_id] + ([] if after is None else [after]) + [limit]
        rows = await self._db.all(list_checkpoints_query(after is not None, newest_first), params)
        table = f"{self._db.schema}.checkpoints"
        return parse_rows(_METADATA, ((seq, f"{table} row seq={seq}", md) for seq, md in rows))

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        async with self._thread_transaction(thread_id) as conn:
            key = (thread_id, checkpoint_id)
            await conn.execute(self._db.sql(DELETE_WRITES + " AND checkpoint_id = %s"), key)
            cur = await conn.execute(
                self._db.sql("DELETE FROM {s}.checkpoints WHERE thread_id = %s AND checkpoint_id = %s"), key
            )
            return cur.rowcount > 0

    async def _delete_thread(self, thread_id: str) -> int:
        async with self._thread_transaction(thread_id) as conn:
            await conn.execute(self._db.sql(DELETE_WRITES), (thread_id,))
            await conn.execute(
                self._db.sql("DELETE FROM {s}.thread_attachments WHERE thread_id = %s"), (thread_id,)
            )
            cur = await conn.execute(
                self._db.sql("DELETE FROM {s}.checkpoints WHERE thread_id = %s"), (thread_id,)
            )
            return cur.rowcount

    async def _count(self, thread_id: str) -> int:
        return int(
            await self._db.scalar("SELECT COUNT(*) FROM {s}.checkpoints WHERE thread_id = %s", (thread_id,))
        )

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        rows = await self._db.all(_skip_scan("checkpoints", "thread_id"), _range(after, prefix, limit))
        return [r[0] for r in rows]

    async def _prune(self, thread_id: str, keep: int) -> int:
        async with self._thread_transaction(thread_id) as conn:
            cur = await conn.execute(self._db.sql(PRUNE_CHECKPOINTS), (thread_id, thread_id, keep, thread_id))
            return int(cast(tuple[int], await cur.fetchone())[0])

    # Pending writes and attachments

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        # One autocommit statement, no lock and no existence check: the checkpoint may still be
        # on its way (see CheckpointStore.put_writes). Keys are unique (the contract dedupes),
        # which DO UPDATE needs: it cannot touch one row twice in a statement.
        columns = list(zip(*(_write_row(thread_id, checkpoint_id, w)[2:] for w in writes), strict=True))
        conflict = UPSERT_WRITE if replace else "DO NOTHING"
        await self._db.rowcount(PUT_WRITES + conflict, (thread_id, checkpoint_id, *map(list, columns)))

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        return int(await self._db.scalar(DELETE_ORPHAN_WRITES, (thread_id,)))

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        rows = await self._db.all(
            "SELECT task_id, idx, channel, type, task_path, value FROM {s}.checkpoint_writes "
            "WHERE thread_id = %s AND checkpoint_id = %s ORDER BY task_id, idx",
            (thread_id, checkpoint_id),
        )
        return [
            PendingWrite.model_construct(task_id=t, idx=i, channel=c, type=ty, task_path=p, value=bytes(v))
            for t, i, c, ty, p, v in rows
        ]

    async def _load_full(self, thread_id: str, checkpoint_id: str | None) -> CheckpointBundle | None:
        where = "" if checkpoint_id is None else " AND checkpoint_id = %(id)s"
        params = {"thread": thread_id, "id": checkpoint_id, "limit": 1, "values": True}
        rows = await self._full_rows(full_read_query(where, "DESC"), params)
        found = full_reads.bundles(rows, full_reads.SINGLE, f"{self._db.schema}.checkpoints", strict=True)
        return found[0][1] if found else None

    async def _list_full(self, thread_id: str, query: FullQuery) -> list[tuple[int, Any]]:
        clauses, params = [], {"thread": thread_id, "limit": query.limit, "values": query.values}
        if query.after is not None:
            clauses.append(f" AND seq {'<' if query.newest_first else '>'} %(after)s")
            params["after"] = query.after
        if query.before is not None:
            clauses.append(" AND checkpoint_id < %(before)s")
            params["before"] = query.before
        pushed = full_reads.pushed_filter(query)
        if pushed:
            clauses.append(" AND metadata -> 'attributes' @> %(filter)s::jsonb")
            params["filter"] = json.dumps(dict(pushed))
        rows = await self._full_rows(
            full_read_query("".join(clauses), "DESC" if query.newest_first else "ASC"), params
        )
        return full_reads.bundles(rows, query, f"{self._db.schema}.checkpoints")

    async def _full_rows(self, template: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        # Binary results: a 200 KB value arrives as its bytes, not as hex text to decode.
        async with self._db.connection() as conn:
            cur = await conn.execute(self._db.sql(template), params, binary=True)
            return await cur.fetchall()

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        # One statement: the whole mapping lands or none of it. Keys are a dict's, so unique,
        # which DO UPDATE needs (it cannot touch one row twice in a statement).
        await self._db.rowcount(
            "INSERT INTO {s}.thread_attachments (thread_id, key, value) "
            "SELECT %s, unnest(%s::text[]), unnest(%b::bytea[]) "
            "ON CONFLICT (thread_id, key) DO UPDATE SET value = EXCLUDED.value",
            (thread_id, list(items), list(items.values())),
        )

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        rows = await self._db.all(
            "SELECT key, value FROM {s}.thread_attachments WHERE thread_id = %s AND key = ANY(%s::text[])",
            (thread_id, keys),
        )
        return {key: bytes(value) for key, value in rows}

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        return await self._db.rowcount(
            "DELETE FROM {s}.thread_attachments WHERE thread_id = %s AND key = ANY(%s::text[])",
            (thread_id, keys),
        )

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        rows = await self._db.all(
            "SELECT key FROM {s}.thread_attachments WHERE thread_id = %s AND key > %s ORDER BY key LIMIT %s",
            (thread_id, _after_key(after), limit),
        )
        return [r[0] for r in rows]

    @asynccontextmanager
    async def _thread_transaction(self, thread_id: str) -> AsyncIterator[Conn]:
        """A transaction holding the thread's advisory lock, the one ``_save`` takes.

        Every change to a thread's checkpoints or their writes holds it, so ``_put_writes`` cannot
        see its checkpoint, lose a race with ``_delete``, and leave writes that nothing owns.
        """
        async with self._db.transaction() as conn:
            await self._db.lock(conn, "thread", thread_id)
            yield conn


# ------------------------------------------------------------------------- outputs


def _where(flt: OutputFilter) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for column, value in (
        ("task_id", flt.task_id),
        ("attempt", flt.attempt),
        ("producer_agent", flt.producer_agent),
    ):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    return " AND ".join(clauses) or "TRUE", params


# The record and its parent links in one statement; the links see the new seq through the CTE.
_INSERT_OUTPUT = (
    "WITH new AS (INSERT INTO {s}.outputs (id, task_id, attempt, producer_agent, record) "
    "VALUES (%s, %s, %s, %s, %s::json) RETURNING seq), "
    "links AS (INSERT INTO {s}.output_parents (parent, child_seq) SELECT unnest(%s::text[]), seq FROM new) "
    "SELECT seq FROM new"
)


class PgOutputStore(OutputStore):
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def _records(self, rows: list[tuple[Any, ...]], skip_corrupt: bool) -> list[OutputRecord]:
        table = f"{self._db.schema}.outputs"
        if not skip_corrupt:
            decoded = [(seq, parse_json(_RECORD, text, f"{table} row seq={seq}")) for seq, text in rows]
        else:
            decoded = parse_rows(_RECORD, ((seq, f"{table} row seq={seq}", text) for seq, text in rows))
        for seq, record in decoded:
            record.seq = seq
        return [record for _, record in decoded]

    async def _insert(self, record: OutputRecord) -> int:
        doc = record.model_dump_json(exclude={"seq"})
        parents = list(dict.fromkeys(record.parent_refs))
        params = (record.id, record.task_id, record.attempt, record.producer_agent, doc, parents)
        async with self._db.connection() as conn:  # one autocommit statement: atomic, one round trip
            try:
                cur = await conn.execute(self._db.sql(_INSERT_OUTPUT), params)
            except pg_errors.UniqueViolation:
                raise Conflict(f"output {record.id} already exists") from None
            return int(cast(tuple[int], await cur.fetchone())[0])

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        rows = await self._db.all(
            "SELECT seq, record::text FROM {s}.outputs WHERE id = ANY(%s::text[])", ([str(r) for r in refs],)
        )
        return self._records(rows, skip_corrupt=False)

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        where, params = _where(flt)
        rows = await self._db.all(
            f"SELECT seq, record::text FROM {{s}}.outputs WHERE {where} ORDER BY seq DESC LIMIT 1", params
        )
        return self._records(rows, skip_corrupt=False)[0] if rows else None

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        where, params = _where(flt)
        rows = await self._db.all(
            f"SELECT seq, record::text FROM {{s}}.outputs WHERE {where} AND seq > %s ORDER BY seq LIMIT %s",
            [*params, -1 if after is None else after, limit],
        )
        return self._records(rows, skip_corrupt=True)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        rows = await self._db.all(
            "SELECT seq, record::text FROM {s}.outputs WHERE seq IN "
            "(SELECT child_seq FROM {s}.output_parents WHERE parent = ANY(%s::text[]))",
            ([str(r) for r in refs],),
        )
        return self._records(rows, skip_corrupt=True)


# ------------------------------------------------------------------------- adaptive


class PgAdaptiveStore(AdaptiveStore):
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        async with self._db.transaction() as conn:
            try:
                await conn.execute(
                    self._db.sql("INSERT INTO {s}.runs (agent_id, run_id, doc) VALUES (%s, %s, %s::json)"),
                    (agent_id, run_id, text),
                )
            except pg_errors.UniqueViolation:
                raise Conflict(f"agent {agent_id!r} already has run {run_id}") from None

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        rows = await self._db.all(
            "SELECT seq, run_id, doc::text FROM {s}.runs WHERE agent_id = %s AND seq > %s "
            "ORDER BY seq LIMIT %s",
            (agent_id, -1 if after is None else after, limit),
        )
        table = f"{self._db.schema}.runs"
        return [(seq, f"{table} row seq={seq} ({agent_id}:{run_id})", doc) for seq, run_id, doc in rows]

    async def _count_runs(self, agent_id: str) -> int:
        return int(await self._db.scalar("SELECT COUNT(*) FROM {s}.runs WHERE agent_id = %s", (agent_id,)))

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        return await self._db.rowcount(
            "DELETE FROM {s}.runs WHERE agent_id = %s AND seq <= "
            "(SELECT seq FROM {s}.runs WHERE agent_id = %s ORDER BY seq DESC OFFSET %s LIMIT 1)",
            (agent_id, agent_id, keep),
        )

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        # The first `limit` distinct agents of runs and of documents, merged: the first `limit`
        # of the union are among them. DISTINCT matters: one agent has up to three documents.
        # Named parameters throughout: the skip scan's are named, and psycopg cannot mix styles.
        rows = await self._db.all(
            f"SELECT k FROM (({_skip_scan('runs', 'agent_id')}) UNION "
            "(SELECT DISTINCT key FROM {s}.documents WHERE kind = ANY(%(kinds)s::text[]) "
            "AND key > %(after)s ORDER BY key LIMIT %(limit)s)) AS agents ORDER BY k LIMIT %(limit)s",
            {**_range(after, None, limit), "kinds": list(AGENT_DOC_KINDS)},
        )
        return [r[0] for r in rows]

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        return cast(
            str | None,
            await self._db.scalar(
                "SELECT doc::text FROM {s}.documents WHERE kind = %s AND key = %s", (kind, key)
            ),
        )

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        async with self._db.connection() as conn:
            await self._upsert(conn, kind, key, text)

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        return (
            await self._db.rowcount("DELETE FROM {s}.documents WHERE kind = %s AND key = %s", (kind, key)) > 0
        )

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        rows = await self._db.all(
            "SELECT key FROM {s}.documents WHERE kind = %s AND key > %s ORDER BY key LIMIT %s",
            (kind, _after_key(after), limit),
        )
        return [r[0] for r in rows]

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        async with self._db.transaction() as conn:
            # An advisory lock rather than SELECT … FOR UPDATE: it also covers a document that
            # does not exist yet, so two first writers cannot both start from None.
            await self._db.lock(conn, "doc", kind, key)
            cur = await conn.execute(
                self._db.sql("SELECT doc::text FROM {s}.documents WHERE kind = %s AND key = %s"), (kind, key)
            )
            row = await cur.fetchone()
            current = None if row is None else cast(str, row[0])
            new = apply(current)
            if new is None:
                return current
            await self._upsert(conn, kind, key, new)
            return new

    async def _upsert(self, conn: Conn, kind: str, key: str, text: str) -> None:
        await conn.execute(
            self._db.sql(
                "INSERT INTO {s}.documents (kind, key, doc) VALUES (%s, %s, %s::json) "
                "ON CONFLICT (kind, key) DO UPDATE SET doc = EXCLUDED.doc"
            ),
            (kind, key, text),
        )


# ------------------------------------------------------------------------- opening


async def _info(db: PgDatabase) -> dict[str, Any]:
    async with db.connection() as conn:

        async def one(template: str) -> Any:
            cur = await conn.execute(db.sql(template))
            return cast(tuple[Any], await cur.fetchone())[0]

        documents = await conn.execute(db.sql("SELECT kind, COUNT(*) FROM {s}.documents GROUP BY kind"))
        return {
            "schema": db.schema,
            "schema_version": await one("SELECT MAX(version) FROM {s}.relaystore_schema"),
            "server_version": conn.info.server_version,
            "application_name": db.options.application_name,
            "pool": {"min": db.options.pool_min, "max": db.options.pool_max, **db.pool.get_stats()},
            "checkpoints": await one("SELECT COUNT(*) FROM {s}.checkpoints"),
            "outputs": await one("SELECT COUNT(*) FROM {s}.outputs"),
            "runs": await one("SELECT COUNT(*) FROM {s}.runs"),
            "blobs": await one("SELECT COUNT(*) FROM {s}.blobs"),
            "documents": dict(await documents.fetchall()),
        }


# ------------------------------------------------------------------------- blobs


class PgBlobStore(BlobStore):
    """Blobs in ``blobs`` (digest, size, mime) and ``blob_chunks`` (owner, idx, data)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        async with self._db.transaction() as conn:
            if index == 0:
                await conn.execute(
                    self._db.sql("INSERT INTO {s}.blob_uploads (upload_id) VALUES (%s)"), (upload_id,)
                )
            await conn.execute(
                self._db.sql("INSERT INTO {s}.blob_chunks VALUES (%s, %s, %s)"),
                (f"upload:{upload_id}", index, data),
            )

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        staged = f"upload:{upload_id}"
        async with self._db.transaction() as conn:
            await self._db.lock(conn, "blob", blob.sha256)  # two uploads of one digest: one wins
            await conn.execute(
                self._db.sql("DELETE FROM {s}.blob_uploads WHERE upload_id = %s"), (upload_id,)
            )
            inserted = await conn.execute(
                self._db.sql(
                    "INSERT INTO {s}.blobs (sha256, size, mime) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
                ),
                (blob.sha256, blob.size, blob.mime),
            )
            if inserted.rowcount:
                sql_text = "UPDATE {s}.blob_chunks SET owner = %s WHERE owner = %s"
                await conn.execute(self._db.sql(sql_text), (blob.sha256, staged))
            else:
                await conn.execute(self._db.sql("DELETE FROM {s}.blob_chunks WHERE owner = %s"), (staged,))

    async def _abort(self, upload_id: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                self._db.sql("DELETE FROM {s}.blob_uploads WHERE upload_id = %s"), (upload_id,)
            )
            await conn.execute(
                self._db.sql("DELETE FROM {s}.blob_chunks WHERE owner = %s"), (f"upload:{upload_id}",)
            )

    async def _stat(self, sha256: str) -> BlobContent | None:
        row = await self._db.one("SELECT size, mime FROM {s}.blobs WHERE sha256 = %s", (sha256,))
        return None if row is None else BlobContent(sha256=sha256, size=row[0], mime=row[1])

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        row = await self._db.one(
            "SELECT data FROM {s}.blob_chunks WHERE owner = %s AND idx = %s", (sha256, index)
        )
        return None if row is None else bytes(row[0])

    async def _delete(self, sha256: str) -> bool:
        async with self._db.transaction() as conn:
            await conn.execute(self._db.sql("DELETE FROM {s}.blob_chunks WHERE owner = %s"), (sha256,))
            deleted = await conn.execute(self._db.sql("DELETE FROM {s}.blobs WHERE sha256 = %s"), (sha256,))
            return deleted.rowcount > 0

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        rows = await self._db.all(
            "SELECT sha256, size, mime FROM {s}.blobs WHERE sha256 > %s ORDER BY sha256 LIMIT %s",
            ("" if after is None else after, limit),
        )
        return [BlobContent(sha256=sha, size=size, mime=mime) for sha, size, mime in rows]

    async def drop_stale_uploads(self) -> int:
        """Remove chunks of uploads started more than a day ago (left by a crashed writer)."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                self._db.sql(
                    "DELETE FROM {s}.blob_uploads WHERE started_at < now() - interval '1 day' "
                    "RETURNING upload_id"
                )
            )
            stale = [f"upload:{row[0]}" for row in await cur.fetchall()]
            if stale:
                await conn.execute(
                    self._db.sql("DELETE FROM {s}.blob_chunks WHERE owner = ANY(%s)"), (stale,)
                )
            return len(stale)


async def open_store(url: str, **options: Any) -> Store:
    """Open the PostgreSQL store at ``url``, creating or upgrading its schema.

    Options (URL query or keywords): ``schema`` (default ``relaystore``), ``pool_min`` (1),
    ``pool_max`` (10), ``timeout`` (seconds to connect or wait for a pooled connection, 10),
    ``call_timeout`` (seconds a call may work on its connection before it is cut and raises
    :class:`BackendUnavailable`; default 3 × ``timeout``, 0 = none), ``check`` (test each
    connection as it leaves the pool, one round trip more per call; default false: a dead
    connection then fails one call and the next reconnects), ``max_idle`` (600 s),
    ``max_lifetime`` (3600 s), ``statement_timeout`` (seconds, server-side, 0 = none, the
    default) and ``application_name`` (default ``relaystore-<random>``).
    Raises :class:`InvalidInput` for a bad URL or option and :class:`BackendUnavailable` if the
    server cannot be reached within ``timeout``.
    """
    db = PgDatabase(parse_url(url, options))
    blobs = PgBlobStore(db)
    try:
        await db.open()
        await blobs.drop_stale_uploads()
    except BaseException:
        await db.close()
        raise

    async def info() -> dict[str, Any]:
        return await _info(db)

    return Store(
        url,
        "postgres",
        PgCheckpointStore(db),
        PgOutputStore(db),
        PgAdaptiveStore(db),
        blobs=blobs,
        items=PgItemStore(db),
        close=db.close,
        info=info,
        concurrent_calls=True,
    )
