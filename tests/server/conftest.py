"""One ``relaystore serve`` subprocess (SQLite behind it) shared by the server tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def admin(server: RelayServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}
