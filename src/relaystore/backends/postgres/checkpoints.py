"""Checkpoints of the PostgreSQL backend, with their pending writes and thread attachments.

Checkpoint metadata, relaystore's own model with no floats, is ``jsonb``; checkpoint state,
pending-write values and attachments are ``bytea``. ``seq`` is an identity column: assigned by
the server, increasing, never reused. Every change to a thread holds the thread's advisory lock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from psycopg import errors as pg_errors
from psycopg import sql
from pydantic import TypeAdapter

from relaystore.backends import _full_reads as full_reads
from relaystore.backends.postgres.database import LOCK, Conn, PgDatabase
from relaystore.backends.postgres.paging import after_key, key_range, skip_scan
from relaystore.errors import InvalidInput
from relaystore.models.checkpoints import Checkpoint, CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.stores import CheckpointStore
from relaystore.stores._common import ANY, parse_json, parse_rows
from relaystore.stores.checkpoints import FullQuery, SeqRow, check_head, duplicate_conflict

_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)

# The stored metadata leaves out what the row's columns hold (id, thread_id, and state_size, the
# state's length): about 80 bytes a checkpoint. Reads put them back (rows written before kept
# them: the same values, overwritten).
METADATA = (
    "(metadata || jsonb_build_object('id', checkpoint_id, 'thread_id', thread_id, "
    "'state_size', octet_length(state)))"
)
_STORED_METADATA = "%(metadata)s::jsonb - 'id' - 'thread_id' - 'state_size'"
HEAD_CHECKPOINT = "SELECT checkpoint_id FROM {s}.checkpoints WHERE thread_id = %s ORDER BY seq DESC LIMIT 1"
LATEST_CHECKPOINT = (
    f"SELECT seq, {METADATA}::text, state FROM {{s}}.checkpoints "
    "WHERE thread_id = %s ORDER BY seq DESC LIMIT 1"
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
    f"SELECT %(thread)s, %(id)s, {_STORED_METADATA}, %(state)s "
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
        f"WITH c AS MATERIALIZED (SELECT seq, checkpoint_id, {METADATA} AS metadata, "
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
        f"SELECT seq, {METADATA}::text FROM {{s}}.checkpoints WHERE thread_id = %s{where} "
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
            f"SELECT seq, {METADATA}::text, state FROM {{s}}.checkpoints "
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
        rows = await self._db.all(skip_scan("checkpoints", "thread_id"), key_range(after, prefix, limit))
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
            (thread_id, after_key(after), limit),
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
