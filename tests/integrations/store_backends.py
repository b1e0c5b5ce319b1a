"""Empty stores on each backend for the long-term-memory tests (fixtures in ``conftest.py``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from relaystore.integrations.langgraph_store import RelayStore
from tests.conformance.factories import http as http_factory
from tests.support.redis_stores import purge
from tests.support.services import ensure_postgres, ensure_redis

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_SERVER = "redis://127.0.0.1:6379/0"
BACKENDS = ["memory", "sqlite", "postgres", "redis", "file", "http"]
MakeStore = Callable[..., RelayStore]


def backend_url(backend: str, tmp_path: Path) -> tuple[str, Callable[[], None]]:
    """A URL naming an empty store, and a function removing it afterwards."""
    if backend == "memory":
        return "memory://", lambda: None
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'items-{uuid.uuid4().hex}.db'}", lambda: None
    if backend == "file":
        return f"file://{tmp_path / f'items-{uuid.uuid4().hex}'}?fsync=false", lambda: None
    if backend == "http":
        server, _ = http_factory._running()  # one server per session, a new tenant per store
        return f"{server.url}/t/{uuid.uuid4().hex}?token={server.admin_token}", lambda: None
    if backend == "redis":
        return _redis_url()
    reason = ensure_postgres()
    if reason:
        pytest.skip(f"postgres: {reason}")
    schema = f"rs_items_{uuid.uuid4().hex}"

    def drop() -> None:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    return f"{PG_SERVER}?schema={schema}&pool_min=0&pool_max=3", drop


def _redis_url() -> tuple[str, Callable[[], None]]:
    reason = ensure_redis()
    if reason:
        pytest.skip(f"redis: {reason}")
    prefix = f"rstest:{uuid.uuid4().hex}:"
    return f"{REDIS_SERVER}?prefix={quote(prefix)}", lambda: _blocking_purge(prefix)


def _blocking_purge(prefix: str) -> None:
    """Purge on a thread of its own: the caller may be inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(purge(REDIS_SERVER, prefix))).result()
