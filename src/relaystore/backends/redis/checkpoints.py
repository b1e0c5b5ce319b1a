"""The checkpoint face of the Redis backend, under ``{prefix}rs:{cp}:`` (one cluster slot per prefix).

All checkpoints of a prefix share one slot because listing threads must stay atomic with writes.
The key layout is in docs/backends/redis.md; every multi-key write is one script of
:mod:`~relaystore.backends.redis.scripts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from relaystore.backends.redis.connection import RedisConnection, utf8
from relaystore.backends.redis.layout import encode
from relaystore.errors import CorruptRecord
from relaystore.models.checkpoints import Checkpoint, CheckpointMetadata, PendingWrite
from relaystore.stores import CheckpointStore
from relaystore.stores._common import ANY, parse_json, parse_rows, prefix_upper_bound
from relaystore.stores.checkpoints import SeqRow, duplicate_conflict, head_conflict

_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_WRITE: TypeAdapter[PendingWrite] = TypeAdapter(PendingWrite)


def _write_field(write: PendingWrite) -> str:
    """Hash field of a pending write: its ``(task_id, idx)``; the encoded task id has no ``|``."""
    return f"{encode(write.task_id)}|{write.idx}"


@dataclass(frozen=True)
class _ThreadKeys:
    order: str  # ZSET checkpoint id -> seq
    meta: str  # HASH checkpoint id -> metadata JSON
    state: str  # HASH checkpoint id -> state bytes
    writes_stem: str  # + enc(checkpoint id): HASH enc(task_id)|idx -> PendingWrite JSON
    attachments: str  # HASH attachment key -> bytes
    attachment_keys: str  # ZSET attachment keys, all scored 0: sorted pages by ZRANGEBYLEX
    write_ids: str  # SET of checkpoint ids that have pending writes (saved or not)

    def writes(self, checkpoint_id: str) -> str:
        """The key of one checkpoint's pending writes."""
        return self.writes_stem + encode(checkpoint_id)


class RedisCheckpointStore(CheckpointStore):
    """Checkpoints under ``{prefix}rs:{cp}:`` (one cluster slot per prefix)."""

    def __init__(self, conn: RedisConnection, prefix: str) -> None:
        self._c = conn
        self._base = f"{prefix}rs:{{cp}}:"
        self._seq = self._base + "seq"
        self._threads = self._base + "threads"  # ZSET, all scores 0: lexicographic thread listing

    def _keys(self, thread_id: str) -> _ThreadKeys:
        stem = f"{self._base}t:{encode(thread_id)}:"
        return _ThreadKeys(
            stem + "order",
            stem + "meta",
            stem + "state",
            stem + "w:",
            stem + "att",
            stem + "attkeys",
            stem + "wids",
        )

    def _checkpoint(
        self, keys: _ThreadKeys, checkpoint_id: str, meta: bytes, state: bytes | None
    ) -> Checkpoint:
        where = f"{keys.meta}[{checkpoint_id}]"
        if state is None:
            raise CorruptRecord(f"{keys.state}[{checkpoint_id}]", "state is missing")
        return Checkpoint(parse_json(_METADATA, meta, where), bytes(state))

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> None:
        """One script: the CAS and duplicate checks, the checkpoint, then its attachments."""
        k = self._keys(thread_id)
        cas = expected_head is not ANY
        args: list[Any] = [
            thread_id,
            metadata.id,
            "1" if cas else "0",
            (expected_head or "") if cas else "",
            metadata.json_text(),
            state,
        ]
        args += [part for key, value in attachments.items() for part in (key, value)]
        keys = [k.order, k.meta, k.state, self._threads, self._seq, k.attachments, k.attachment_keys]
        reply = await self._c.script("SAVE_CHECKPOINT", keys, args)
        if reply[0] == b"head":
            raise head_conflict(thread_id, expected_head, reply[1].decode() or None)
        if reply[0] == b"dup":
            raise duplicate_conflict(thread_id, metadata.id)

    async def _head(self, thread_id: str) -> str | None:
        order = self._keys(thread_id).order  # the id alone: a corrupt head is still the head
        found = await self._c.do(order, "ZRANGE", order, -1, -1)
        return found[0].decode() if found else None

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        k = self._keys(thread_id)
        meta, state = await self._c.script("LOAD_CHECKPOINT", [k.meta, k.state], [checkpoint_id])
        return None if meta is None else self._checkpoint(k, checkpoint_id, meta, state)

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        k = self._keys(thread_id)
        reply = await self._c.script("LOAD_LATEST_CHECKPOINT", [k.order, k.meta, k.state])
        if reply is None:
            return None
        checkpoint_id = reply[0].decode()
        if reply[1] is None:
            raise CorruptRecord(f"{k.meta}[{checkpoint_id}]", "metadata is missing")
        return self._checkpoint(k, checkpoint_id, reply[1], reply[2])

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        k = self._keys(thread_id)
        args = ["" if after is None else after, limit or 0, "1" if newest_first else "0"]
        flat = await self._c.script("LIST_CHECKPOINTS", [k.order, k.meta], args)
        rows = [
            (flat[i], f"{k.meta}[{flat[i + 1].decode()}]", flat[i + 2] or b"") for i in range(0, len(flat), 3)
        ]
        return parse_rows(_METADATA, rows)

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        k = self._keys(thread_id)
        keys = [k.order, k.meta, k.state, self._threads, k.writes(checkpoint_id), k.write_ids]
        return bool(await self._c.script("DELETE_CHECKPOINT", keys, [thread_id, checkpoint_id]))

    async def _delete_thread(self, thread_id: str) -> int:
        k = self._keys(thread_id)
        keys = [k.order, k.meta, k.state, self._threads, k.attachments, k.attachment_keys, k.write_ids]
        return int(await self._c.script("DELETE_THREAD", keys, [thread_id, k.writes_stem]))

    async def _count(self, thread_id: str) -> int:
        order = self._keys(thread_id).order
        return int(await self._c.do(order, "ZCARD", order))

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        low = "-" if after is None else "(" + after
        if prefix is not None and (after is None or after < prefix):
            low = "[" + prefix
        bound = None if prefix is None else prefix_upper_bound(prefix)
        high = "+" if bound is None else "(" + bound
        extra = [] if limit is None else ["LIMIT", 0, limit]
        found = await self._c.do(self._threads, "ZRANGEBYLEX", self._threads, low, high, *extra)
        return [t.decode() for t in found]

    async def _prune(self, thread_id: str, keep: int) -> int:
        k = self._keys(thread_id)
        keys = [k.order, k.meta, k.state, self._threads, k.write_ids]
        return int(await self._c.script("PRUNE_CHECKPOINTS", keys, [thread_id, keep, k.writes_stem]))

    # ------------------------------------------------------------------ pending writes

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        k = self._keys(thread_id)
        args: list[Any] = [checkpoint_id, "1" if replace else "0"]
        for write in writes:
            args += [_write_field(write), write.model_dump_json()]
        await self._c.script("PUT_WRITES", [k.write_ids, k.writes(checkpoint_id)], args)

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        k = self._keys(thread_id)
        return int(await self._c.script("DELETE_ORPHAN_WRITES", [k.order, k.write_ids], [k.writes_stem]))

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        key = self._keys(thread_id).writes(checkpoint_id)
        stored = await self._c.do(key, "HGETALL", key)
        return [
            parse_json(_WRITE, text, f"{key}[{name.decode(errors='replace')}]")
            for name, text in stored.items()
        ]

    # ------------------------------------------------------------------ attachments

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        k = self._keys(thread_id)
        args = [part for key, value in items.items() for part in (key, value)]
        await self._c.script("PUT_ATTACHMENTS", [k.attachments, k.attachment_keys], args)

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        name = self._keys(thread_id).attachments
        values = await self._c.hmget(name, keys)
        return {k: bytes(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        k = self._keys(thread_id)
        return int(await self._c.script("DELETE_ATTACHMENTS", [k.attachments, k.attachment_keys], keys))

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        # A sorted set of the keys makes a page O(log n + page), where HKEYS + sort would read
        # every key of the thread for each page of a listing walk.
        name = self._keys(thread_id).attachment_keys
        low = "-" if after is None else "(" + after
        extra = [] if limit is None else ["LIMIT", 0, limit]
        found = await self._c.do(name, "ZRANGEBYLEX", name, low, "+", *extra)
        return [utf8(key, name) or "" for key in found]
