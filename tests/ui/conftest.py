"""Fixtures of the inspector tests: seeded stores, an in-process app, a real server and chromium.

Chromium is Debian's ``chromium`` package: installed with ``apt-get install -y chromium`` when it
is missing and the tests run as root; the browser tests are skipped, saying why, only when it
cannot be installed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from benchmarks.browser import LAUNCH_ARGS, chromium_path
from starlette.testclient import TestClient

from relaystore.server.app import create_app
from relaystore.server.tokens import issue_memory_token, issue_token, store_id
from tests.integrations.store_backends import backend_url
from tests.support.relay_server import RelayServer, start_server
from tests.ui.seed import Seeded, seed

ADMIN = "ui-admin-token-" + "a" * 32
SIGNING_KEY = "ui-signing-key-" + "k" * 32
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "ui-screenshots"


class Inspector:
    """An app on one seeded store, its TestClient and tokens of each kind."""

    def __init__(self, client: TestClient, url: str, seeded: Seeded) -> None:
        self.client = client
        self.url = url
        self.seeded = seeded

    def get(self, route: str, /, token: str | None = ADMIN, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(route, params=params, headers=headers)

    def agent_token(self, task: str | None = None, reads: tuple[str, ...] = ()) -> str:
        audience = store_id(self.url)
        task = task or self.seeded.task
        return issue_token(
            SIGNING_KEY, task=task, attempt=0, producer="writer", reads=reads, audience=audience
        )

    def memory_token(self, *prefixes: tuple[str, ...]) -> str:
        return issue_memory_token(SIGNING_KEY, namespaces=prefixes, audience=store_id(self.url))


def seed_in_thread(url: str) -> Seeded:
    """:func:`seed` on a thread of its own: Playwright's sync API keeps a loop on this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(seed(url))).result()


def open_inspector(url: str) -> Iterator[Inspector]:
    seeded = seed_in_thread(url)
    app = create_app(url, admin_token=ADMIN, signing_key=SIGNING_KEY)
    with TestClient(app) as client:
        yield Inspector(client, url, seeded)


@pytest.fixture(scope="module")
def sqlite_inspector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspector]:
    yield from open_inspector(f"sqlite:///{tmp_path_factory.mktemp('ui') / 'ui.db'}")


@pytest.fixture(params=["memory", "sqlite", "file", "redis", "postgres"])
def any_inspector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inspector]:
    if request.param == "memory":
        url, drop = f"memory://ui-{uuid.uuid4().hex}", lambda: None
    else:
        url, drop = backend_url(request.param, tmp_path)
    try:
        yield from open_inspector(url)
    finally:
        drop()


# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")  # Playwright's loop must be gone before later async tests
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium browser: `apt-get install -y chromium` failed or needs root")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module", params=["sqlite", "memory"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``relaystore serve`` (access log on) on a store seeded through its own HTTP API."""
    directory = tmp_path_factory.mktemp(f"ui-{request.param}")
    url = f"sqlite:///{directory / 'ui.db'}" if request.param == "sqlite" else "memory://"
    server: RelayServer = start_server(url, directory, "--log-level", "info", admin_token=ADMIN)
    try:
        seeded = seed_in_thread(f"{server.url}?token={ADMIN}")
        yield request.param, server, seeded
    finally:
        server.stop()
