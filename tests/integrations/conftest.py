"""Fixtures of the long-term-memory tests.

``make(**kwargs)`` returns a new ``RelayStore`` on an empty store of the test's backend (its own
file, or its own PostgreSQL schema); everything is closed and dropped at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relaystore.integrations.langgraph_store import RelayStore
from tests.integrations.store_backends import BACKENDS, MakeStore, backend_url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(backend: str, tmp_path: Path) -> Iterator[MakeStore]:
    opened: list[RelayStore] = []
    cleanups: list[Callable[[], None]] = []

    def open_store(**kwargs: Any) -> RelayStore:
        if backend == "http" and "clock" in kwargs:
            pytest.skip("over http the server's clock decides expiry")
        url, cleanup = backend_url(backend, tmp_path)
        cleanups.append(cleanup)
        store = RelayStore(url, **kwargs)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()
    for cleanup in cleanups:
        cleanup()
