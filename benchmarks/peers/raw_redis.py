"""The Redis floor: one ``redis.asyncio`` client (redis-py, as relaystore's backend uses), one
plain command per call.

A save is one ``SET`` of the msgpack-encoded state under the thread's key, overwriting the
previous one: that is all a later ``load_latest`` needs, and it keeps the shared server's memory
flat. No metadata, no checkpoint history, no ordering index, no Lua script: whatever relaystore's
Redis backend does on top of this is its overhead (and its guarantees).

:class:`PipelinedSets` is the same floor with the round trips amortized: SETs are buffered and sent
16 at a time in one non-transactional pipeline, as a bulk loader that can afford to lose its
last buffered writes on a crash would do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from redis.asyncio import Redis

from benchmarks.harness import REDIS_URL


class RawRedis:
    """``set_state`` / ``get_state`` of one thread's latest state under ``{prefix}{thread_id}``."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    @classmethod
    @asynccontextmanager
    async def open(cls, prefix: str) -> AsyncIterator[RawRedis]:
        """A client of the shared server; the caller deletes ``prefix``'s keys afterwards."""
        client = Redis.from_url(REDIS_URL)
        try:
            yield cls(client, prefix)
        finally:
            await client.aclose()

    def key(self, thread_id: str) -> str:
        return self.prefix + thread_id

    async def set_state(self, thread_id: str, state: bytes) -> None:
        await self.client.set(self.key(thread_id), state)

    async def get_state(self, thread_id: str) -> bytes | None:
        return cast(bytes | None, await self.client.get(self.key(thread_id)))  # decode_responses is off


class PipelinedSets:
    """SETs buffered in a non-transactional pipeline and sent ``batch`` at a time.

    ``add(i, …)`` sends the buffer when ``i % batch == batch - 1``. Op indices run on without gaps
    across the harness's slices and repeats, so every timed stretch of N ops pays for about
    N / batch round trips; whatever is still buffered at the end goes out in :meth:`flush`.
    """

    def __init__(self, raw: RawRedis, batch: int = 16) -> None:
        self.raw = raw
        self.batch = batch
        self._pipe = raw.client.pipeline(transaction=False)

    async def add(self, i: int, thread_id: str, state: bytes) -> None:
        self._pipe.set(self.raw.key(thread_id), state)
        if i % self.batch == self.batch - 1:
            await self._pipe.execute()

    async def flush(self) -> None:
        if len(self._pipe):
            await self._pipe.execute()
