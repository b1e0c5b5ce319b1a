"""The blob face of the Redis backend, under ``{prefix}rs:{blob}:`` (one hash tag, one slot)."""

from __future__ import annotations

import json
import time

from relaystore.backends._policy import STALE_UPLOAD_SECONDS
from relaystore.backends.redis.connection import RedisConnection, sorted_page
from relaystore.errors import CorruptRecord
from relaystore.models.outputs import BlobContent
from relaystore.stores._common import Skipped, or_skipped
from relaystore.stores.blobs import BlobStore


class RedisBlobStore(BlobStore):
    """Blobs under ``{prefix}rs:{blob}:``: a ``meta`` hash (digest → size and mime), 1 MiB
    chunk strings ``c:<sha>:<i>``, staged chunks ``up:<upload>:<i>`` and an ``uploads`` sorted set
    (upload id → start time) so a crashed upload's chunks are dropped a day later."""

    def __init__(self, conn: RedisConnection, prefix: str) -> None:
        self._c = conn
        self._base = f"{prefix}rs:{{blob}}:"
        self._meta = self._base + "meta"
        self._uploads = self._base + "uploads"

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        if index == 0:
            await self._c.do(self._uploads, "ZADD", self._uploads, time.time(), upload_id)
        await self._c.do(self._base, "SET", f"{self._base}up:{upload_id}:{index}", data)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        meta = json.dumps({"size": blob.size, "mime": blob.mime})
        keys = [self._meta, self._uploads]
        await self._c.script("COMMIT_BLOB", keys, [blob.sha256, meta, upload_id, chunks, self._base])

    async def _abort(self, upload_id: str) -> None:
        await self._c.do(self._uploads, "ZREM", self._uploads, upload_id)
        await self._c.script("DROP_CHUNKS", [self._uploads], [self._base, f"up:{upload_id}"])

    async def _stat(self, sha256: str) -> BlobContent | None:
        raw = await self._c.do(self._meta, "HGET", self._meta, sha256)
        return None if raw is None else self._blob(sha256, raw)

    def _blob(self, sha256: str, raw: bytes) -> BlobContent:
        try:
            meta = json.loads(raw)
            return BlobContent(sha256=sha256, size=meta["size"], mime=meta["mime"])
        except (ValueError, KeyError, TypeError) as exc:  # ValueError: not UTF-8, JSON or a model
            raise CorruptRecord(f"{self._meta}[{sha256}]", str(exc)) from exc

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        return await self._c.do(self._base, "GET", f"{self._base}c:{sha256}:{index}")

    async def _delete(self, sha256: str) -> bool:
        return bool(await self._c.script("DELETE_BLOB", [self._meta], [self._base, sha256]))

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent | Skipped]:
        # HKEYS is O(blobs); a blob store holds far fewer entries than it holds bytes
        digests = {k.decode() for k in await self._c.do(self._meta, "HKEYS", self._meta)}
        page = sorted_page(digests, after, limit)
        raws = await self._c.hmget(self._meta, page)
        return [
            or_skipped(sha, self._blob, sha, raw)
            for sha, raw in zip(page, raws, strict=True)
            if raw is not None
        ]

    async def drop_stale_uploads(self) -> int:
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        stale = await self._c.do(self._uploads, "ZRANGEBYSCORE", self._uploads, "-inf", cutoff)
        for upload_id in stale:
            await self._abort(upload_id.decode())
        return len(stale)
