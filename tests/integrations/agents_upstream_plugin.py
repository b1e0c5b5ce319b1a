"""A pytest plugin that runs the OpenAI Agents SDK's own session tests against RelaySession.

Used by ``test_openai_agents_upstream.py``, which runs pytest inside the unpacked
``openai-agents`` source distribution (its ``tests/`` tree) with ``-p`` naming this module and
``RELAYSTORE_UPSTREAM_BACKEND`` set to ``sqlite``, ``postgres``, ``redis`` or ``memory``.

Every test module that uses ``SQLiteSession`` gets :class:`UpstreamSession` in its place: the
same constructor, backed by a fresh relaystore store per test. Sessions built on the same
``db_path`` share their data (their thread prefix is derived from it); ``":memory:"`` sessions
never share, as with SQLiteSession.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaystore.integrations.openai_agents import RelaySession

SERVERS = {
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
    "redis": "redis://127.0.0.1:6379/0",
}


class _Backend:
    """Where one test's sessions live: a URL and how to clean up after it."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        tag = uuid.uuid4().hex
        if kind == "sqlite":
            self.url = f"sqlite:///{tmp_path}/relay-{tag}.db"
        elif kind == "memory":
            self.url = f"memory://upstream-{tag}"
        elif kind == "postgres":
            self.schema = f"rs_up_{tag}"
            self.url = f"{SERVERS['postgres']}?schema={self.schema}&pool_max=2"
        elif kind == "redis":
            self.prefix = f"rsup:{tag}:"
            self.url = f"{SERVERS['redis']}?prefix={self.prefix}"
        else:
            raise ValueError(f"unknown RELAYSTORE_UPSTREAM_BACKEND {kind!r}")
        self.sessions: list[UpstreamSession] = []

    def cleanup(self) -> None:
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(SERVERS["postgres"], autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        elif self.kind == "redis":
            import redis

            client = redis.Redis.from_url(SERVERS["redis"])
            for key in client.scan_iter(match=f"{self.prefix}*", count=1000):
                client.unlink(key)
            client.close()


_current: _Backend | None = None


class UpstreamSession(RelaySession):
    """``SQLiteSession``'s constructor over RelaySession (the memory backend keeps one store per
    URL in the process, so a per-session store still shares data)."""

    def __init__(
        self,
        session_id: str,
        db_path: str | Path = ":memory:",
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: Any = None,
    ) -> None:
        assert _current is not None, "UpstreamSession used outside a test"
        where = str(db_path)
        scope = uuid.uuid4().hex if where == ":memory:" else hashlib.sha1(where.encode()).hexdigest()[:16]
        super().__init__(
            session_id,
            _current.url,
            session_settings=session_settings,
            thread_prefix=f"{scope}/{sessions_table}/{messages_table}/",
        )
        _current.sessions.append(self)

    def close(self) -> None:  # type: ignore[override]  # SQLiteSession.close is synchronous
        self._closed = True
        closing = self._handle.release()
        if closing is not None:
            closing.result(timeout=30)


@pytest.fixture(autouse=True)
def _relaystore_session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    global _current
    kind = os.environ.get("RELAYSTORE_UPSTREAM_BACKEND", "sqlite")
    _current = _Backend(kind, tmp_path)
    patch = pytest.MonkeyPatch()
    if hasattr(request.module, "SQLiteSession"):
        patch.setattr(request.module, "SQLiteSession", UpstreamSession)
    try:
        yield
    finally:
        patch.undo()
        backend, _current = _current, None
        for session in backend.sessions:
            session.close()
        backend.cleanup()
