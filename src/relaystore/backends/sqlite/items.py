"""The item face (:mod:`relaystore.stores.items`) of the SQLite backend.

One ``items`` table keyed ``(ns, key)``; the value is JSON text and filters run in SQL with
``json_type``/``json_extract``: a condition checks the JSON type first, so ``$gt 50`` compares
numbers as numbers and never matches a string (langgraph #7684). A filter key SQLite's JSON path
syntax cannot quote (one holding ``"`` or ``\\``) makes that search filter in Python instead.

The table has its own versioned migrations, recorded in ``relaystore_items_schema`` and applied
on first use, so this face evolves independently of the backend's ``relaystore_schema``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from relaystore.errors import BackendUnavailable
from relaystore.stores.items import (
    Condition,
    ItemStore,
    ItemWrite,
    StoredItem,
    decode_namespace,
    encode_namespace,
    json_kind,
    matches,
    pack_vectors,
    unpack_vectors,
    value_json,
)

if TYPE_CHECKING:
    from relaystore.backends.sqlite.database import SqliteDatabase

MIGRATIONS: list[str] = [
    # 1: items, with expiry; vectors are packed float32 (stores.items.pack_vectors)
    """
    CREATE TABLE items (
        ns TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        ttl REAL,
        vectors BLOB,
        PRIMARY KEY (ns, key)
    );
    CREATE INDEX items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX items_recent ON items (updated_at)
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_COLUMNS = "ns, key, value, created_at, updated_at, expires_at, ttl"
_UPSERT = """
    INSERT INTO items (ns, key, value, created_at, updated_at, expires_at, ttl, vectors)
    VALUES (:ns, :key, :value, :now, :now, :expires_at, :ttl, :vectors)
    ON CONFLICT (ns, key) DO UPDATE SET
        value = excluded.value,
        created_at = CASE WHEN items.expires_at IS NOT NULL AND items.expires_at <= :now
            THEN excluded.created_at ELSE items.created_at END,
        updated_at = MAX(excluded.updated_at, items.updated_at + 0.000001),
        expires_at = excluded.expires_at,
        ttl = excluded.ttl,
        vectors = excluded.vectors"""
_TOUCH = f"UPDATE items SET expires_at = ? + ttl WHERE ns = ? AND key = ? AND ttl IS NOT NULL AND {_LIVE}"
_KIND_TEST = {"number": "IN ('integer', 'real')", "string": "= 'text'", "null": "= 'null'"}


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the missing item migrations inside the caller's write transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS relaystore_items_schema "
        "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM relaystore_items_schema").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise BackendUnavailable(
            f"the items table has schema version {current}; this relaystore knows up to {SCHEMA_VERSION}"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version - 1].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT INTO relaystore_items_schema VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (version,),
        )


# --------------------------------------------------------------------------- filters in SQL


def json_path(path: tuple[str | int, ...]) -> str | None:
    """SQLite's JSON path for ``path``, or None if a key cannot be written in that syntax."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]" if part >= 0 else f"[#{part}]")
        elif '"' in part or "\\" in part:
            return None
        else:
            parts.append(f'."{part}"')
    return "".join(parts)


def condition_sql(condition: Condition) -> tuple[str, list[Any]] | None:
    """A WHERE clause (and its parameters) equivalent to :func:`holds`, or None."""
    path = json_path(condition.path)
    if path is None:
        return None
    op, operand = condition.op, condition.operand
    if op == "len":
        if operand == -1:
            return "json_type(value, ?) = 'object'", [path]
        return "(json_type(value, ?) = 'array' AND json_array_length(value, ?) = ?)", [path, path, operand]
    kind = json_kind(operand)
    same: tuple[str, list[Any]]
    if kind == "bool":
        same = ("json_type(value, ?) = ?", [path, "true" if operand else "false"])
    elif kind == "null":
        same = ("json_type(value, ?) = 'null'", [path])
    else:
        same = (
            f"(json_type(value, ?) {_KIND_TEST[kind]} AND json_extract(value, ?) {{}} ?)",
            [path, path, operand],
        )
    if op in ("eq", "ne"):
        text = same[0].replace("{}", "=")
        if op == "ne":
            return f"(json_type(value, ?) IS NOT NULL AND NOT {text})", [path, *same[1]]
        return text, same[1]
    symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    return same[0].replace("{}", symbol), same[1]


def _where(low: str | None, high: str | None, now: float | None) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if low is not None:
        clauses.append("ns >= ?")
        params.append(low)
    if high is not None:
        clauses.append("ns < ?")
        params.append(high)
    if now is not None:
        clauses.append(_LIVE)
        params.append(now)
    return clauses, params


def _row_item(row: Sequence[Any], vectors: bool) -> StoredItem:
    return StoredItem(
        decode_namespace(row[0]),
        row[1],
        json.loads(row[2]) if row[2] is not None else {},
        row[3],
        row[4],
        row[5],
        row[6],
        unpack_vectors(row[7]) if vectors else None,
    )


class SqliteItemStore(ItemStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._ready = False

    async def _setup(self) -> None:
        if not self._ready:
            await self._db.write(migrate)
            self._ready = True

    async def _get(self, keys: list[tuple[str, str]], now: float) -> list[StoredItem | None]:
        await self._setup()

        def read(conn: sqlite3.Connection) -> list[StoredItem | None]:
            sql = f"SELECT {_COLUMNS}, NULL FROM items WHERE ns = ? AND key = ? AND {_LIVE}"
            rows = [conn.execute(sql, (ns, key, now)).fetchone() for ns, key in keys]
            return [None if row is None else _row_item(row, False) for row in rows]

        return await self._db.read(read)

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
        compiled = [condition_sql(c) for c in conditions]
        in_python = any(c is None for c in compiled)
        for piece in compiled if not in_python else ():
            assert piece is not None
            clauses.append(piece[0])
            params.extend(piece[1])
        order = "updated_at DESC, ns, key" if newest_first else "ns, key"
        columns = _COLUMNS if values or in_python else _COLUMNS.replace("value", "NULL")
        sql = f"SELECT {columns}, {'vectors' if vectors else 'NULL'} FROM items"
        sql += f" WHERE {' AND '.join(clauses) or '1'} ORDER BY {order}"
        if not in_python:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else limit, offset]

        def read(conn: sqlite3.Connection) -> list[StoredItem]:
            items = [_row_item(row, vectors) for row in conn.execute(sql, params)]
            if in_python:
                items = [i for i in items if matches(i.value, conditions)]
                items = items[offset : None if limit is None else offset + limit]
            return items

        return await self._db.read(read)

    async def _namespaces(self, low: str | None, high: str | None, now: float) -> list[str]:
        await self._setup()
        clauses, params = _where(low, high, now)
        sql = f"SELECT DISTINCT ns FROM items WHERE {' AND '.join(clauses)} ORDER BY ns"
        return await self._db.read(lambda conn: [row[0] for row in conn.execute(sql, params)])

    async def _write(self, puts: list[ItemWrite], touch: list[tuple[str, str]], now: float) -> None:
        await self._setup()
        deletes = [(encode_namespace(p.namespace), p.key) for p in puts if p.value is None]
        upserts = [_upsert_params(p, now) for p in puts if p.value is not None]

        def apply(conn: sqlite3.Connection) -> None:
            conn.executemany(_TOUCH, [(now, ns, key, now) for ns, key in touch])
            conn.executemany("DELETE FROM items WHERE ns = ? AND key = ?", deletes)
            conn.executemany(_UPSERT, upserts)

        size = sum(len(u["value"]) + len(u["vectors"] or b"") for u in upserts)
        await self._db.write(apply, inline_bytes=size)

    async def _sweep(self, now: float) -> int:
        await self._setup()
        sql = "DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?"
        return await self._db.write(lambda conn: conn.execute(sql, (now,)).rowcount)

    async def _count(self, low: str | None, high: str | None, now: float | None) -> int:
        await self._setup()
        clauses, params = _where(low, high, now)
        sql = f"SELECT COUNT(*) FROM items WHERE {' AND '.join(clauses) or '1'}"
        return int(await self._db.read(lambda conn: conn.execute(sql, params).fetchone()[0]))


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
