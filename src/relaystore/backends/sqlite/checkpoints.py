"""Checkpoints of the SQLite backend, with their pending writes and thread attachments.

``seq`` is ``INTEGER PRIMARY KEY AUTOINCREMENT``: assigned by SQLite, strictly increasing, never
reused after a delete. A save reads the head inside its write transaction, so compare-and-set is
exact; pending writes are one autocommit INSERT per batch (no lock on the checkpoint).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from pydantic import TypeAdapter

from relaystore.backends import _full_reads as full_reads
from relaystore.backends.sqlite.database import SqliteDatabase, chunks, placeholders
from relaystore.models.checkpoints import Checkpoint, CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.stores import CheckpointStore
from relaystore.stores._common import ANY, parse_json, parse_rows, prefix_upper_bound
from relaystore.stores.checkpoints import FullQuery, SeqRow, check_head, duplicate_conflict

_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_PUT_ATTACHMENT = "INSERT OR REPLACE INTO thread_attachments VALUES (?,?,?)"
_INSERT_WRITES = (
    "INSERT INTO checkpoint_writes "
    "(thread_id, checkpoint_id, task_id, idx, channel, type, task_path, value) VALUES "
)
_WRITE_ROW = "(?,?,?,?,?,?,?,?)"
_WRITES_PER_STATEMENT = 4000  # 8 variables each, under SQLite's 32,766
_ON_WRITE_CONFLICT = {
    False: " ON CONFLICT DO NOTHING",
    True: " ON CONFLICT DO UPDATE SET channel = excluded.channel, type = excluded.type, "
    "task_path = excluded.task_path, value = excluded.value",
}
_DELETE_ORPHAN_WRITES = (
    "DELETE FROM checkpoint_writes WHERE thread_id = ? AND checkpoint_id NOT IN "
    "(SELECT checkpoint_id FROM checkpoints WHERE thread_id = ?) RETURNING checkpoint_id"
)


def _write_values(write: PendingWrite) -> tuple[Any, ...]:
    return (write.task_id, write.idx, write.channel, write.type, write.task_path, write.value)


def _full_read_sql(where: str, direction: str) -> str:
    """One page of checkpoints with their refs' attachments and writes (see ``_full_reads``).

    MATERIALIZED: the page is chosen once, not once per branch that reads it. json_each gets
    '{}' for an unreadable metadata text, so the statement still runs and that row is skipped.
    """
    return (
        "WITH c AS MATERIALIZED (SELECT seq, checkpoint_id, metadata, "
        "CASE WHEN :values THEN state ELSE X'' END AS state FROM checkpoints "
        f"WHERE thread_id = :thread{where} ORDER BY seq {direction} LIMIT :limit) "
        "SELECT 0, seq, checkpoint_id, metadata, state, NULL, NULL, NULL FROM c "
        "UNION ALL SELECT 1, NULL, NULL, a.key, a.value, NULL, NULL, NULL FROM thread_attachments a "
        "WHERE :values AND a.thread_id = :thread AND a.key IN (SELECT j.value FROM c, "
        "json_each(CASE WHEN json_valid(c.metadata) THEN c.metadata ELSE '{}' END, '$.refs') j) "
        "UNION ALL SELECT 2, w.idx, w.checkpoint_id, w.task_id, w.value, w.channel, w.type, w.task_path "
        "FROM checkpoint_writes w WHERE w.thread_id = :thread "
        "AND w.checkpoint_id IN (SELECT checkpoint_id FROM c)"
    )


_HEAD = "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? ORDER BY seq DESC LIMIT 1"


def _checkpoint(row: tuple[int, str, bytes]) -> Checkpoint:
    seq, metadata, state = row
    return Checkpoint(parse_json(_METADATA, metadata, f"checkpoints row seq={seq}"), bytes(state))


class SqliteCheckpointStore(CheckpointStore):
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> None:
        doc = metadata.json_text()
        rows = [(thread_id, key, value) for key, value in attachments.items()]

        def save(conn: sqlite3.Connection) -> None:
            if expected_head is not ANY:  # the head is read inside the write lock: CAS is exact
                row = conn.execute(_HEAD, (thread_id,)).fetchone()
                check_head(thread_id, expected_head, row[0] if row else None)
            try:
                conn.execute(
                    "INSERT INTO checkpoints (thread_id, checkpoint_id, metadata, state) VALUES (?,?,?,?)",
                    (thread_id, metadata.id, doc, state),
                )
            except sqlite3.IntegrityError:
                raise duplicate_conflict(thread_id, metadata.id) from None
            conn.executemany(_PUT_ATTACHMENT, rows)

        size = len(doc) + len(state) + sum(len(value) for value in attachments.values())
        await self._db.write(save, inline_bytes=size)

    async def _head(self, thread_id: str) -> str | None:
        row = await self._db.read(lambda c: c.execute(_HEAD, (thread_id,)).fetchone())
        return None if row is None else row[0]

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT seq, metadata, state FROM checkpoints WHERE thread_id = ? AND checkpoint_id = ?",
                (thread_id, checkpoint_id),
            ).fetchone()
        )
        return None if row is None else _checkpoint(row)

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT seq, metadata, state FROM checkpoints WHERE thread_id = ? ORDER BY seq DESC LIMIT 1",
                (thread_id,),
            ).fetchone()
        )
        return None if row is None else _checkpoint(row)

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        direction, compare = ("DESC", "<") if newest_first else ("ASC", ">")
        sql = "SELECT seq, metadata FROM checkpoints WHERE thread_id = ?"
        params: list[Any] = [thread_id]
        if after is not None:
            sql += f" AND seq {compare} ?"
            params.append(after)
        sql += f" ORDER BY seq {direction} LIMIT ?"
        params.append(-1 if limit is None else limit)
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return parse_rows(_METADATA, ((seq, f"checkpoints row seq={seq}", md) for seq, md in rows))

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            key = (thread_id, checkpoint_id)
            conn.execute("DELETE FROM checkpoint_writes WHERE thread_id = ? AND checkpoint_id = ?", key)
            return (
                conn.execute(
                    "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_id = ?", key
                ).rowcount
                > 0
            )

        return await self._db.write(delete)

    async def _delete_thread(self, thread_id: str) -> int:
        def delete_thread(conn: sqlite3.Connection) -> int:
            for table in ("checkpoint_writes", "thread_attachments"):
                conn.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))
            return conn.execute("DELETE FROM checkpoints WHERE thread_id = ?", (thread_id,)).rowcount

        return await self._db.write(delete_thread)

    async def _count(self, thread_id: str) -> int:
        return await self._db.read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (thread_id,)
            ).fetchone()[0]
        )

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        clauses: list[str] = []
        params: list[str | int] = []
        if after is not None:
            clauses.append("thread_id > ?")
            params.append(after)
        if prefix is not None:
            clauses.append("thread_id >= ?")
            params.append(prefix)
            if (bound := prefix_upper_bound(prefix)) is not None:
                clauses.append("thread_id < ?")
                params.append(bound)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT DISTINCT thread_id FROM checkpoints{where} ORDER BY thread_id LIMIT ?"
        params.append(-1 if limit is None else limit)
        return await self._db.read(lambda c: [r[0] for r in c.execute(sql, params)])

    async def _prune(self, thread_id: str, keep: int) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            deleted = conn.execute(
                "DELETE FROM checkpoints WHERE thread_id = ? AND seq NOT IN "
                "(SELECT seq FROM checkpoints WHERE thread_id = ? ORDER BY seq DESC LIMIT ?)",
                (thread_id, thread_id, keep),
            ).rowcount
            conn.execute(
                "DELETE FROM checkpoint_writes WHERE thread_id = ? AND checkpoint_id NOT IN "
                "(SELECT checkpoint_id FROM checkpoints WHERE thread_id = ?)",
                (thread_id, thread_id),
            )
            return deleted

        return await self._db.write(prune)

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        # One autocommit INSERT per _WRITES_PER_STATEMENT writes (the variable limit): no lock on
        # the checkpoint, which may not be saved yet (see CheckpointStore.put_writes).
        for start in range(0, len(writes), _WRITES_PER_STATEMENT):
            chunk = writes[start : start + _WRITES_PER_STATEMENT]
            params = [v for w in chunk for v in (thread_id, checkpoint_id, *_write_values(w))]
            sql = _INSERT_WRITES + ",".join([_WRITE_ROW] * len(chunk)) + _ON_WRITE_CONFLICT[replace]
            await self._db.execute(sql, params, inline_bytes=sum(len(w.value) for w in chunk))

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return len({row[0] for row in conn.execute(_DELETE_ORPHAN_WRITES, (thread_id, thread_id))})

        return await self._db.write(delete)

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT task_id, idx, channel, type, task_path, value FROM checkpoint_writes "
                "WHERE thread_id = ? AND checkpoint_id = ?",
                (thread_id, checkpoint_id),
            ).fetchall()
        )
        return [
            PendingWrite.model_construct(task_id=t, idx=i, channel=c, type=ty, task_path=p, value=bytes(v))
            for t, i, c, ty, p, v in rows
        ]

    async def _load_full(self, thread_id: str, checkpoint_id: str | None) -> CheckpointBundle | None:
        where = "" if checkpoint_id is None else " AND checkpoint_id = :id"
        sql = _full_read_sql(where, "DESC")
        params = {"thread": thread_id, "id": checkpoint_id, "limit": 1, "values": 1}
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        found = full_reads.bundles(rows, full_reads.SINGLE, "checkpoints", strict=True)
        return found[0][1] if found else None

    async def _list_full(self, thread_id: str, query: FullQuery) -> list[tuple[int, Any]]:
        clauses, params = [], {"thread": thread_id, "limit": -1 if query.limit is None else query.limit}
        if query.after is not None:
            clauses.append(f" AND seq {'<' if query.newest_first else '>'} :after")
            params["after"] = query.after
        if query.before is not None:
            clauses.append(" AND checkpoint_id < :before")
            params["before"] = query.before
        for n, (key, value) in enumerate(full_reads.pushed_filter(query)):
            clauses.append(f" AND metadata ->> '$.attributes.{key}' = :f{n}")
            params[f"f{n}"] = value
        params["values"] = int(query.values)
        sql = _full_read_sql("".join(clauses), "DESC" if query.newest_first else "ASC")
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return full_reads.bundles(rows, query, "checkpoints")

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        rows = [(thread_id, key, value) for key, value in items.items()]
        await self._db.write(lambda c: c.executemany(_PUT_ATTACHMENT, rows))

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        def get(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk in chunks(keys):
                found.update(
                    (key, bytes(value))
                    for key, value in conn.execute(
                        "SELECT key, value FROM thread_attachments "
                        f"WHERE thread_id = ? AND key IN ({placeholders(chunk)})",
                        [thread_id, *chunk],
                    )
                )
            return found

        return await self._db.read(get)

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return sum(
                conn.execute(
                    f"DELETE FROM thread_attachments WHERE thread_id = ? AND key IN ({placeholders(chunk)})",
                    [thread_id, *chunk],
                ).rowcount
                for chunk in chunks(keys)
            )

        return await self._db.write(delete)

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT key FROM thread_attachments WHERE thread_id = ? AND key > ? ORDER BY key LIMIT ?",
                (thread_id, "" if after is None else after, -1 if limit is None else limit),
            ).fetchall()
        )
        return [r[0] for r in rows]
