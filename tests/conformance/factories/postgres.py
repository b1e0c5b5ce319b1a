"""PostgreSQL: each fresh store gets its own schema, dropped on exit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from psycopg import sql

import relaystore
from relaystore.stores import Store
from relaystore.stores.items import encode_namespace
from relaystore.testing.damage import WRONG_TYPE
from tests.support.services import ensure_postgres

NAME = "postgres"
SERVER = "postgresql://postgres@127.0.0.1:5432/test"

# PostgreSQL only accepts valid UTF-8 JSON in json/jsonb columns, so the only damage it can hold
# is valid JSON of the wrong shape: what a foreign writer or a bad migration would leave behind.
GARBAGE = WRONG_TYPE.decode()

# (table, JSON column, its type, key columns) of each corruptible record kind
_TARGETS = {
    "run": ("runs", "doc", "json", ("agent_id", "run_id")),
    "output": ("outputs", "record", "jsonb", ("id",)),
    "checkpoint": ("checkpoints", "metadata", "jsonb", ("thread_id", "checkpoint_id")),
    "document": ("documents", "doc", "json", ("kind", "key")),
    "item": ("items", "value", "jsonb", ("ns", "key")),
}


def unavailable() -> str | None:
    return ensure_postgres()


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    schema = f"rs_test_{uuid.uuid4().hex}"
    try:
        async with relaystore.connect(SERVER, schema=schema, pool_max=4) as store:
            yield store
    finally:
        await drop_schema(schema)


async def drop_schema(schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def corrupt(store: Store, what: str, key: tuple[str, ...], how: str = "type") -> None:
    """Overwrite the record's JSON column with JSON of the wrong shape, through another connection."""
    if how != "type":
        raise NotImplementedError(f"PostgreSQL json columns cannot hold {how} damage (not UTF-8 JSON)")
    if what not in _TARGETS:
        raise NotImplementedError(f"PostgreSQL keeps {what} records in typed columns, not JSON")
    if what == "item":
        *namespace, item_key = key
        key = (encode_namespace(tuple(namespace)), item_key)
    table, column, kind, key_columns = _TARGETS[what]
    schema = (await store.info())["schema"]
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in key_columns)
    query = sql.SQL("UPDATE {}.{} SET {} = %s::{} WHERE {}").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column), sql.SQL(kind), where
    )
    async with await psycopg.AsyncConnection.connect(SERVER, autocommit=True) as conn:
        changed = (await conn.execute(query, (GARBAGE, *key))).rowcount
    assert changed == 1, f"no {what} {key} to corrupt"
