"""The item face (:mod:`relaystore.stores.items`) of the PostgreSQL backend.

One ``{schema}.items`` table keyed ``(ns, key)`` with the value as ``jsonb``. Filters run in SQL
on ``value #> path``: equality is jsonb equality (type-exact, numbers by value), ordering
operators check ``jsonb_typeof`` first and then compare jsonb numbers numerically or strings in
code point order (``COLLATE "C"``), so ``$gt 50`` over 9/10/100 returns 100 (langgraph #7684,
where PostgresStore compares text). Times are ``double precision`` seconds since the epoch.

The table has its own versioned migrations in ``{schema}.relaystore_items_schema``, applied on
first use under an advisory lock, independent of the backend's ``relaystore_schema``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from relaystore.backends.postgres.database import PgDatabase
from relaystore.backends.postgres.migrations import upgrade
from relaystore.stores.items import (
    Condition,
    ItemStore,
    ItemWrite,
    StoredItem,
    decode_namespace,
    encode_namespace,
    json_kind,
    pack_vectors,
    unpack_vectors,
    value_json,
)

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE {s}.items (
            ns TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            value JSONB NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            ttl DOUBLE PRECISION,
            vectors BYTEA,
            PRIMARY KEY (ns, key))""",
        "CREATE INDEX items_expiry ON {s}.items (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE INDEX items_recent ON {s}.items (updated_at)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
VERSION_TABLE = "relaystore_items_schema"
_LIVE = "(expires_at IS NULL OR expires_at > %s)"
_COLUMNS = "ns, key, value::text, created_at, updated_at, expires_at, ttl"
_UPSERT = """
    INSERT INTO {s}.items AS i (ns, key, value, created_at, updated_at, expires_at, ttl, vectors)
    VALUES (%(ns)s, %(key)s, %(value)s::jsonb, %(now)s, %(now)s, %(expires_at)s, %(ttl)s, %(vectors)s)
    ON CONFLICT (ns, key) DO UPDATE SET
        value = excluded.value,
        created_at = CASE WHEN i.expires_at IS NOT NULL AND i.expires_at <= %(now)s
            THEN excluded.created_at ELSE i.created_at END,
        updated_at = GREATEST(excluded.updated_at, i.updated_at + 0.000001),
        expires_at = excluded.expires_at,
        ttl = excluded.ttl,
        vectors = excluded.vectors"""
_TOUCH = (
    "UPDATE {s}.items SET expires_at = %s + ttl WHERE ns = %s AND key = %s AND ttl IS NOT NULL AND " + _LIVE
)
_SYMBOLS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


async def migrate(db: PgDatabase) -> None:
    """Apply the missing item migrations in one transaction, under an advisory lock."""
    async with db.transaction() as conn:
        await db.lock(conn, "items-migrate")
        await upgrade(conn, db.schema, MIGRATIONS, VERSION_TABLE, "the items table")


def condition_sql(condition: Condition) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) equivalent to :func:`~relaystore.stores.items.holds`."""
    path = [str(part) for part in condition.path]
    op, operand = condition.op, condition.operand
    if op == "len":
        if operand == -1:
            return "jsonb_typeof(value #> %s) = 'object'", [path]
        return (
            "(CASE WHEN jsonb_typeof(value #> %s) = 'array' "
            "THEN jsonb_array_length(value #> %s) = %s ELSE false END)",
            [path, path, operand],
        )
    if op == "eq":
        return "(value #> %s) = %s::jsonb", [path, json.dumps(operand)]
    if op == "ne":
        return "((value #> %s) IS NOT NULL AND (value #> %s) <> %s::jsonb)", [path, path, json.dumps(operand)]
    symbol = _SYMBOLS[op]
    if json_kind(operand) == "number":
        return (
            f"(jsonb_typeof(value #> %s) = 'number' AND (value #> %s) {symbol} %s::jsonb)",
            [path, path, json.dumps(operand)],
        )
    return (
        f"(jsonb_typeof(value #> %s) = 'string' AND (value #>> %s) COLLATE \"C\" {symbol} %s)",
        [path, path, operand],
    )


# _where and _row_item mirror sqlite.items' line for line (the placeholder aside), so that one
# shared helper can replace both: keep their shapes in step.
def _where(low: str | None, high: str | None, now: float | None) -> tuple[list[str], list[Any]]:
    """Clauses (to join with AND, see :func:`_all_of`) and parameters: namespaces in
    ``[low, high)``, and only items live at ``now`` unless it is ``None``."""
    clauses: list[str] = []
    params: list[Any] = []
    if low is not None:
        clauses.append("ns >= %s")
        params.append(low)
    if high is not None:
        clauses.append("ns < %s")
        params.append(high)
    if now is not None:
        clauses.append(_LIVE)
        params.append(now)
    return clauses, params


def _all_of(clauses: list[str]) -> str:
    return " AND ".join(clauses) or "true"


def _row_item(row: Sequence[Any], vectors: bool) -> StoredItem:
    """The item of a row of :data:`_COLUMNS` and then vectors (read only when ``vectors``)."""
    return StoredItem(
        decode_namespace(row[0]),
        row[1],
        json.loads(row[2]) if row[2] is not None else {},
        row[3],
        row[4],
        row[5],
        row[6],
        unpack_vectors(bytes(row[7]) if row[7] is not None else None) if vectors else None,
    )


class PgItemStore(ItemStore):
    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._ready = False

    async def _setup(self) -> None:
        if not self._ready:
            await migrate(self._db)
            self._ready = True

    async def _get(self, keys: list[tuple[str, str]], now: float) -> list[StoredItem | None]:
        await self._setup()
        rows = await self._db.all(
            f"SELECT {_COLUMNS}, NULL, t.ord FROM {{s}}.items i JOIN unnest(%s::text[], %s::text[]) "
            f"WITH ORDINALITY AS t(ns, key, ord) USING (ns, key) WHERE {_LIVE}",
            ([ns for ns, _ in keys], [key for _, key in keys], now),
        )
        found: list[StoredItem | None] = [None] * len(keys)
        for row in rows:
            found[row[8] - 1] = _row_item(row, False)
        return found

    async def _search(
        self,
        low: str | None,
        high: str | None,
        conditions: list[Condition],
        limit: int | None,
        offset: int,
        now: float,
        vectors: bool,
        newest_first: bool,
        values: bool = True,
    ) -> list[StoredItem]:
        await self._setup()
        clauses, params = _where(low, high, now)
        for text, bound in map(condition_sql, conditions):
            clauses.append(text)
            params.extend(bound)
        order = "updated_at DESC, ns, key" if newest_first else "ns, key"
        columns = _COLUMNS if values else _COLUMNS.replace("value::text", "NULL")
        query = (
            f"SELECT {columns}, {'vectors' if vectors else 'NULL'} FROM {{s}}.items "
            f"WHERE {_all_of(clauses)} ORDER BY {order} LIMIT %s OFFSET %s"
        )
        rows = await self._all(query, [*params, limit, offset])
        return [_row_item(row, vectors) for row in rows]

    async def _all(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        # Filter clauses vary with each filter's shape: compose them rather than cache every one.
        async with self._db.connection() as conn:
            cur = await conn.execute(self._db.compose(query), params)
            return await cur.fetchall()

    async def _namespaces(self, low: str | None, high: str | None, now: float) -> list[str]:
        await self._setup()
        clauses, params = _where(low, high, now)
        query = f"SELECT DISTINCT ns FROM {{s}}.items WHERE {_all_of(clauses)} ORDER BY ns"
        return [row[0] for row in await self._all(query, params)]

    async def _write(self, puts: list[ItemWrite], touch: list[tuple[str, str]], now: float) -> None:
        await self._setup()
        deletes = [(encode_namespace(p.namespace), p.key) for p in puts if p.value is None]
        upserts = [_upsert_params(p, now) for p in puts if p.value is not None]
        statements: list[tuple[str, Any]] = [
            *((_TOUCH, (now, ns, key, now)) for ns, key in touch),
            *(("DELETE FROM {s}.items WHERE ns = %s AND key = %s", d) for d in deletes),
            *((_UPSERT, u) for u in upserts),
        ]
        if len(statements) == 1:  # one statement is atomic by itself: skip BEGIN and COMMIT
            template, params = statements[0]
            async with self._db.connection() as conn:
                await conn.execute(self._db.sql(template), params)
            return
        async with self._db.transaction() as conn, conn.cursor() as cur:
            if touch:
                await cur.executemany(self._db.sql(_TOUCH), [(now, ns, key, now) for ns, key in touch])
            if deletes:
                await cur.executemany(
                    self._db.sql("DELETE FROM {s}.items WHERE ns = %s AND key = %s"), deletes
                )
            if upserts:
                await cur.executemany(self._db.sql(_UPSERT), upserts)

    async def _sweep(self, now: float) -> int:
        await self._setup()
        return await self._db.rowcount(
            "DELETE FROM {s}.items WHERE expires_at IS NOT NULL AND expires_at <= %s", (now,)
        )

    async def _count(self, low: str | None, high: str | None, now: float | None) -> int:
        await self._setup()
        clauses, params = _where(low, high, now)
        rows = await self._all(f"SELECT COUNT(*) FROM {{s}}.items WHERE {_all_of(clauses)}", params)
        return int(rows[0][0])


def _upsert_params(put: ItemWrite, now: float) -> dict[str, Any]:
    assert put.value is not None
    return {
        "ns": encode_namespace(put.namespace),
        "key": put.key,
        "value": value_json(put.value),
        "now": now,
        "expires_at": None if put.ttl is None else now + put.ttl,
        "ttl": put.ttl,
        "vectors": pack_vectors(put.vectors),
    }
