"""Redis on 127.0.0.1:6379: each fresh store gets its own key prefix, purged on exit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from relaystore.stores import Store
from tests.support.redis_stores import corrupt, fresh_prefixed
from tests.support.services import ensure_redis

NAME = "redis"
SERVER = "redis://127.0.0.1:6379/0"

__all__ = ["NAME", "corrupt", "fresh", "unavailable"]


def unavailable() -> str | None:
    return ensure_redis()


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    async with fresh_prefixed(SERVER) as store:
        yield store
