from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.stores import Store

NAME = "memory"


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect("memory://") as store:
        yield store
