"""Damage one record of a relaystore SQLite file behind the store's back (the sqlite and http
factories share it): the record's text column is read, passed through
:func:`relaystore.testing.damage.damage` and written back as raw bytes, so a ``utf8`` damage
leaves bytes that are not UTF-8 in a TEXT column, as a failing disk would."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from relaystore.stores.items import encode_namespace
from relaystore.testing.damage import damage

# (table, text column, key columns) of each record kind held as JSON text
TARGETS = {
    "run": ("runs", "doc", ("agent_id", "run_id")),
    "output": ("outputs", "record", ("id",)),
    "checkpoint": ("checkpoints", "metadata", ("thread_id", "checkpoint_id")),
    "document": ("documents", "doc", ("kind", "key")),
    "item": ("items", "value", ("ns", "key")),
    "blob": ("blobs", "mime", ("sha256",)),  # a blob's metadata is columns: only its mime is text
}


def corrupt_file(path: str | Path, what: str, key: tuple[str, ...], how: str) -> None:
    """Damage the ``what`` record at ``key`` in the SQLite file at ``path``."""
    if what == "blob" and how != "utf8":
        raise NotImplementedError("SQLite keeps blob metadata in typed columns: only a mime can be damaged")
    if what == "item":
        *namespace, item_key = key
        key = (encode_namespace(tuple(namespace)), item_key)
    table, column, key_columns = TARGETS[what]
    where = " AND ".join(f"{c} = ?" for c in key_columns)
    with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as conn:
        conn.text_factory = bytes
        row = conn.execute(f"SELECT CAST({column} AS BLOB) FROM {table} WHERE {where}", key).fetchone()
        assert row is not None and row[0] is not None, f"no {what} {key} to corrupt"
        damaged = damage(row[0], how)
        # CAST keeps the column's TEXT type: a reader decodes the damaged bytes as text
        conn.execute(f"UPDATE {table} SET {column} = CAST(? AS TEXT) WHERE {where}", (damaged, *key))
