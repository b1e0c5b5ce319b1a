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

Modules: :mod:`.url` (options), :mod:`.database` (pool, errors, deadline), :mod:`.migrations`,
:mod:`.checkpoints`, :mod:`.outputs`, :mod:`.adaptive`, :mod:`.blobs`, :mod:`.items`, and
:mod:`.paging` (skip scans and cursors the stores share).
"""

from __future__ import annotations

from typing import Any, cast

from relaystore.backends.postgres.adaptive import PgAdaptiveStore
from relaystore.backends.postgres.blobs import PgBlobStore
from relaystore.backends.postgres.checkpoints import PgCheckpointStore
from relaystore.backends.postgres.database import PgDatabase, translate
from relaystore.backends.postgres.faces import face_counts
from relaystore.backends.postgres.items import PgItemStore
from relaystore.backends.postgres.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from relaystore.backends.postgres.outputs import PgOutputStore
from relaystore.backends.postgres.url import DEFAULT_SCHEMA, PgOptions, check_schema_name, parse_url
from relaystore.stores import Store

__all__ = [
    "DEFAULT_SCHEMA",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PgOptions",
    "check_schema_name",
    "migrate",
    "open_store",
    "parse_url",
    "translate",
]


TOAST_FROM = 2000  # bytes: a row over ~2 KB is TOASTed, its large values compressed (pglz)


async def _info(db: PgDatabase) -> dict[str, Any]:
    """``store.info()``: the schema and its version, the server, the pool, and row counts."""
    async with db.connection() as conn:

        async def one(template: str) -> Any:
            cur = await conn.execute(db.sql(template))
            return cast(tuple[Any], await cur.fetchone())[0]

        return {
            "schema": db.schema,
            "schema_version": await one("SELECT MAX(version) FROM {s}.relaystore_schema"),
            "server_version": conn.info.server_version,
            "application_name": db.options.application_name,
            "pool": {"min": db.options.pool_min, "max": db.options.pool_max, **db.pool.get_stats()},
            "checkpoints": await one("SELECT COUNT(*) FROM {s}.checkpoints"),
            **await face_counts(db, conn),
        }


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
        async with db.connection(bounded=False) as conn:  # a migration may rightly run long
            await migrate(conn, db.schema)
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
        compress_below=TOAST_FROM,
    )
