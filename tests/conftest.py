"""Fixtures shared by every test: the machine's Redis and PostgreSQL, started if down."""

from __future__ import annotations

import pytest

from tests.support.services import ensure_postgres, ensure_redis

pytest_plugins = ["relaystore.testing.plugin"]


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``redis://127.0.0.1:6379/0``, started if it was down; the test is skipped if it cannot be."""
    reason = ensure_redis()
    if reason:
        pytest.skip(reason)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """``postgresql://postgres@127.0.0.1:5432/test``, started if it was down."""
    reason = ensure_postgres()
    if reason:
        pytest.skip(reason)
    return "postgresql://postgres@127.0.0.1:5432/test"
