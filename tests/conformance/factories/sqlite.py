from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.stores import Store

NAME = "sqlite"


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / f"conformance-{uuid.uuid4().hex}.db"
    async with relaystore.connect(f"sqlite:///{path}") as store:
        yield store
