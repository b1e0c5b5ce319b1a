"""``relaystore serve --resp`` as a subprocess, PostgreSQL schemas of its own, and in-process listeners."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

import relaystore
from relaystore.server.resp import RespListener, serving
from relaystore.stores import Store
from tests.support.relay_server import RelayServer, start_server
from tests.support.services import free_port

ADMIN = "resp-test-admin-token-0123456789abcdef"
SIGNING_KEY = "resp-test-signing-key-0123456789abcdef"


@dataclass
class RespServer:
    """A running ``serve --resp``: the HTTP server record plus the RESP port."""

    http: RelayServer
    port: int

    def url(self, password: str = ADMIN, db: int = 0) -> str:
        return f"redis://:{password}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> int:
        return self.http.stop()


def start_resp(store_url: str, directory: Path, *extra: str, port: int | None = None) -> RespServer:
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    http = start_server(store_url, directory, "--resp", f"127.0.0.1:{port}", *extra, admin_token=ADMIN)
    return RespServer(http, port)


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """A store URL on a schema of this test's own, dropped afterwards."""
    schema = f"rs_resp_{uuid.uuid4().hex[:12]}"
    yield f"{postgres_url}?schema={schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect(f"sqlite:///{tmp_path}/resp.db") as opened:
        yield opened


@pytest.fixture
async def listener(store: Store, tmp_path: Path) -> AsyncIterator[RespListener]:
    """A listener in this event loop on a fresh SQLite store (admin token :data:`ADMIN`)."""
    async with serving(
        store, f"sqlite:///{tmp_path}/resp.db", ADMIN, SIGNING_KEY, "127.0.0.1", 0, frame_limit=64 * 1024
    ) as running:
        yield running
