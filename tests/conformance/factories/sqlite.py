from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.backends.sqlite import parse_url
from relaystore.stores import Store
from tests.support.sqlite_corrupt import corrupt_file

NAME = "sqlite"


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / f"conformance-{uuid.uuid4().hex}.db"
    async with relaystore.connect(f"sqlite:///{path}") as store:
        yield store


async def corrupt(store: Store, what: str, key: tuple[str, ...], how: str = "json") -> None:
    """Damage the record's text column through a second connection to the file
    (:mod:`tests.support.sqlite_corrupt`)."""
    corrupt_file(parse_url(store.url, {})[0], what, key, how)
