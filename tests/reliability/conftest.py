"""Fixtures of the reliability suite: fresh stores per backend, private servers it may crash,
and the tally that ``make soak`` prints as a table at the end of the run."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.redis_stores import purge
from tests.support.services import (
    PostgresCluster,
    RedisProcess,
    ensure_postgres,
    ensure_redis,
    kill_redis,
    restart_redis,
    start_postgres,
    start_redis,
)

SHARED_REDIS = "redis://127.0.0.1:6379/0"
SHARED_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
AOF_ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")


# --------------------------------------------------------------------------- the soak tally


@dataclass
class BackendTally:
    kills: int = 0
    operations: int = 0
    lost: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class Tally:
    """What the reliability tests did, per backend, for the end-of-run table."""

    def __init__(self) -> None:
        self.rows: dict[str, BackendTally] = {}

    def add(
        self,
        backend: str,
        *,
        kills: int = 0,
        operations: int = 0,
        lost: int = 0,
        errors: Counter[str] | None = None,
    ) -> None:
        row = self.rows.setdefault(backend, BackendTally())
        row.kills += kills
        row.operations += operations
        row.lost += lost
        row.errors.update(errors or {})

    def lines(self) -> list[str]:
        header = f"{'backend':<10} {'kills':>6} {'operations':>11} {'lost':>5}  errors by type"
        lines = [header, "-" * len(header)]
        for name, row in sorted(self.rows.items()):
            errors = ", ".join(f"{k}={v}" for k, v in sorted(row.errors.items())) or "-"
            lines.append(f"{name:<10} {row.kills:>6} {row.operations:>11} {row.lost:>5}  {errors}")
        return lines


TALLY_KEY = pytest.StashKey[Tally]()


@pytest.fixture(scope="session")
def tally(pytestconfig: pytest.Config) -> Tally:
    return pytestconfig.stash.setdefault(TALLY_KEY, Tally())


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    tally = config.stash.get(TALLY_KEY, None)
    if tally is None or not tally.rows:
        return
    terminalreporter.section("reliability summary (writes lost must be 0)")
    for line in tally.lines():
        terminalreporter.write_line(line)


# --------------------------------------------------------------------------- fresh stores


@pytest.fixture(scope="session")
def shared_redis() -> str:
    if reason := ensure_redis():
        pytest.skip(reason)
    return SHARED_REDIS


@pytest.fixture(scope="session")
def shared_postgres() -> str:
    if reason := ensure_postgres():
        pytest.skip(reason)
    return SHARED_POSTGRES


async def drop_schema(server: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


BACKENDS = ("sqlite", "file", "redis", "postgres")


@asynccontextmanager
async def fresh_url(
    backend: str, tmp_path: Path, redis: str = SHARED_REDIS, postgres: str = SHARED_POSTGRES
) -> AsyncIterator[str]:
    """A URL of a new, empty store of ``backend``; its data is removed on exit (our data only:
    a unique Redis prefix or PostgreSQL schema on a shared server)."""
    tag = uuid.uuid4().hex[:12]
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'rel-{tag}.db'}"
    elif backend == "file":
        yield f"file://{tmp_path / f'rel-{tag}'}"
    elif backend == "memory":
        yield f"memory://rel-{tag}"
    elif backend == "redis":
        prefix = f"rstest:rel:{tag}:"
        try:
            yield f"{redis}?prefix={prefix}"
        finally:
            await purge(redis, prefix)
    elif backend == "postgres":
        schema = f"rs_rel_{tag}"
        sep = "&" if "?" in postgres else "?"
        try:
            yield f"{postgres}{sep}schema={schema}"
        finally:
            await drop_schema(postgres, schema)
    else:
        raise ValueError(backend)


StoreUrl = Callable[[str], AbstractAsyncContextManager[str]]


@pytest.fixture
def store_url(tmp_path: Path, request: pytest.FixtureRequest) -> StoreUrl:
    """``async with store_url(backend) as url``: skips when the backend's server is missing."""

    def opener(backend: str) -> AbstractAsyncContextManager[str]:
        if backend == "redis":
            request.getfixturevalue("shared_redis")
        if backend == "postgres":
            request.getfixturevalue("shared_postgres")
        return fresh_url(backend, tmp_path)

    return opener


# --------------------------------------------------------------------------- private servers


class CrashableRedis:
    """A private redis-server with ``appendfsync always`` that tests may SIGKILL and restart
    from its AOF (same port, same directory). Never the machine's shared Redis."""

    def __init__(self) -> None:
        self.server: RedisProcess = start_redis(*AOF_ALWAYS)

    @property
    def url(self) -> str:
        return self.server.url

    def kill(self) -> None:
        kill_redis(self.server)

    def restart(self) -> None:
        """Start a new server on the data the (killed) old one left on disk."""
        self.server = restart_redis(self.server, *AOF_ALWAYS)


@pytest.fixture(scope="session")
def crashable_redis() -> Iterator[CrashableRedis]:
    if reason := ensure_redis():  # only to learn whether redis-server is installed
        pytest.skip(reason)
    redis = CrashableRedis()
    try:
        yield redis
    finally:
        redis.server.stop()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster (initdb in a temp dir), stopped and removed at the end."""
    try:
        cluster = start_postgres()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot start a private PostgreSQL: {exc}")
    try:
        yield cluster
    finally:
        cluster.remove()
