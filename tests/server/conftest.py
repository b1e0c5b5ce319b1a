"""One ``relaystore serve`` subprocess (SQLite behind it) shared by the server tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.relay_server import RelayServer, start_server

BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayServer]:
    directory = tmp_path_factory.mktemp("relay-server")
    (directory / "files").mkdir()
    running = start_server(
        f"sqlite:///{directory}/relay.db",
        directory,
        "--body-limit",
        f"{BODY_LIMIT}",
        "--file-root",
        str(directory / "files"),
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def signing_key(server: RelayServer) -> str:
    return (server.state_dir / "signing-key").read_text().strip()


@pytest.fixture(scope="session")
def files(server: RelayServer) -> Path:
    """The server's one --file-root."""
    return server.state_dir.parent / "files"


@pytest.fixture(scope="session")
def audience(server: RelayServer) -> str:
    """The store id the server's agent tokens must carry (``aud``)."""
    return server_audience(server)


def server_audience(server: RelayServer, tenant: str | None = None) -> str:
    prefix = f"/t/{tenant}" if tenant else ""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    return str(httpx.get(f"{server.url}{prefix}/v1/info", headers=headers, timeout=10).json()["store_id"])


@pytest.fixture
def admin(server: RelayServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}
