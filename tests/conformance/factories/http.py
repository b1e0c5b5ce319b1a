"""The ``http://`` backend against ONE real ``relaystore serve`` subprocess per test session.

The server runs on a free loopback port with ``--tenant-url sqlite:///<tmp>/{tenant}.db``: every
``fresh()`` store is a new tenant (``http://127.0.0.1:PORT/t/<random>``), so each test gets an
empty SQLite database behind the same server. The process is stopped when the session ends.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.stores import Store
from tests.support.relay_server import RelayServer, start_server
from tests.support.sqlite_corrupt import corrupt_file

NAME = "http"
_server: RelayServer | None = None
_directory: Path | None = None


def unavailable() -> str | None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        return f"{exc.name} is not installed"
    return None


def _running() -> tuple[RelayServer, Path]:
    global _server, _directory
    if _server is None:
        _directory = Path(tempfile.mkdtemp(prefix="relaystore-http-"))
        tenants = f"sqlite:///{_directory}/tenants/{{tenant}}.db?synchronous=normal"
        # /out: the conformance suite's file_ref events point there
        _server = start_server(
            f"sqlite:///{_directory}/main.db", _directory, "--tenant-url", tenants, "--file-root", "/out"
        )
        atexit.register(_stop)
    assert _directory is not None
    return _server, _directory


def _stop() -> None:
    if _server is not None:
        _server.stop()
    if _directory is not None:
        shutil.rmtree(_directory, ignore_errors=True)


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    server, _ = _running()
    tenant = uuid.uuid4().hex
    async with relaystore.connect(f"{server.url}/t/{tenant}", token=server.admin_token) as store:
        store.tenant_db = _directory / "tenants" / f"{tenant}.db"  # type: ignore[attr-defined,operator]
        yield store


async def corrupt(store: Store, what: str, key: tuple[str, ...], how: str = "json") -> None:
    """Damage the record in the tenant's SQLite file behind the server, as the sqlite factory does."""
    corrupt_file(store.tenant_db, what, key, how)  # type: ignore[attr-defined]
