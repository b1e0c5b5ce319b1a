"""The output face of the Redis backend, under ``{prefix}rs:{out}:`` (one cluster slot per prefix).

All outputs of a prefix share one slot because listing outputs must stay atomic with writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from relaystore.backends.redis.connection import RedisConnection, chunks
from relaystore.backends.redis.layout import encode
from relaystore.errors import Conflict, InvalidInput
from relaystore.models.outputs import OutputRecord, OutputRef
from relaystore.stores import OutputFilter, OutputStore
from relaystore.stores._common import parse_json, parse_rows

_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)


class RedisOutputStore(OutputStore):
    """Outputs under ``{prefix}rs:{out}:`` (one cluster slot per prefix).

    ``records`` is a HASH ref -> JSON; every filter a listing can use has its own ZSET of refs
    scored by seq, so "latest" is one ZRANGE -1 -1 and a page is one ZRANGEBYSCORE … LIMIT.
    """

    def __init__(self, conn: RedisConnection, prefix: str) -> None:
        self._c = conn
        self._base = f"{prefix}rs:{{out}}:"
        self._seq = self._base + "seq"
        self._records = self._base + "records"

    def _index(self, flt: OutputFilter) -> str:
        parts = []
        if flt.task_id is not None:
            parts.append("t:" + encode(flt.task_id))
        if flt.attempt is not None:
            if flt.task_id is None:
                raise InvalidInput("an attempt filter needs a task_id")
            parts.append(f"a:{flt.attempt}")
        if flt.producer_agent is not None:
            parts.append("p:" + encode(flt.producer_agent))
        return self._base + "idx:" + (":".join(parts) or "all")

    def _indexes_of(self, record: OutputRecord) -> list[str]:
        task, attempt, producer = record.task_id, record.attempt, record.producer_agent
        filters = [
            OutputFilter(),
            OutputFilter(task),
            OutputFilter(task, attempt),
            OutputFilter(producer_agent=producer),
            OutputFilter(task, producer_agent=producer),
            OutputFilter(task, attempt, producer),
        ]
        return [self._index(f) for f in filters]

    def _children(self, ref: str) -> str:
        return f"{self._base}children:{ref}"

    def _decode(self, ref: bytes | str, text: bytes | None) -> OutputRecord:
        ref = ref.decode() if isinstance(ref, bytes) else ref
        return parse_json(_RECORD, text or b"", f"{self._records}[{ref}]")

    async def _insert(self, record: OutputRecord) -> int:
        parents = [self._children(p) for p in dict.fromkeys(record.parent_refs)]
        keys = [self._seq, self._records, *self._indexes_of(record), *parents]
        doc = record.model_dump_json(exclude={"seq"})
        seq = int(await self._c.script("INSERT_OUTPUT", keys, [record.id, doc]))
        if seq < 0:
            raise Conflict(f"output {record.id} already exists")
        return seq

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        texts = await self._c.hmget(self._records, refs)
        return [self._decode(r, t) for r, t in zip(refs, texts, strict=True) if t is not None]

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        reply = await self._c.script("LATEST_OUTPUT", [self._index(flt), self._records])
        if reply is None or reply[1] is None:
            return None
        return self._decode(reply[0], reply[1])

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        low = "-inf" if after is None else f"({after}"
        flat = await self._c.script("LIST_OUTPUTS", [self._index(flt), self._records], [low, limit or 0])
        return self._decode_listed(flat)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        found: list[OutputRecord] = []
        for chunk in chunks(refs):
            keys = [self._records, *(self._children(r) for r in chunk)]
            found += self._decode_listed(await self._c.script("CHILDREN_OUTPUTS", keys))
        return found

    def _decode_listed(self, flat: list[Any]) -> list[OutputRecord]:
        """Records from a flat ``seq, ref, record`` reply; a corrupt one stays as a placeholder
        with its seq (see :func:`parse_rows`), a vanished one is left out."""
        rows = [
            (flat[i], f"{self._records}[{flat[i + 1].decode()}]", flat[i + 2])
            for i in range(0, len(flat), 3)
            if flat[i + 2] is not None
        ]
        return [record for _, record in parse_rows(_RECORD, rows)]
