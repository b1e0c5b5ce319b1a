from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import relaystore
from relaystore.backends.sqlite import parse_url
from relaystore.stores import Store

NAME = "sqlite"
GARBAGE = '{"not valid json'

# (table, JSON column, key columns) of each corruptible record kind
_TARGETS = {
    "run": ("runs", "doc", ("agent_id", "run_id")),
    "output": ("outputs", "record", ("id",)),
    "checkpoint": ("checkpoints", "metadata", ("thread_id", "checkpoint_id")),
    "document": ("documents", "doc", ("kind", "key")),
}


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / f"conformance-{uuid.uuid4().hex}.db"
    async with relaystore.connect(f"sqlite:///{path}") as store:
        yield store


async def corrupt(store: Store, what: str, key: tuple[str, ...]) -> None:
    """Overwrite the record's JSON column with garbage through a second connection to the file."""
    table, column, key_columns = _TARGETS[what]
    path = parse_url(store.url, {}).local_path
    assert path is not None, "a :memory: store has no file to corrupt"
    where = " AND ".join(f"{c} = ?" for c in key_columns)
    with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as conn:
        changed = conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (GARBAGE, *key)).rowcount
    assert changed == 1, f"no {what} {key} to corrupt"
