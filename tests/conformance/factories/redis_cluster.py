"""A private 3-master Redis Cluster on loopback ports, started once per test session.

Each fresh store gets its own key prefix, purged on exit; the cluster is stopped (by pid) when
the test process exits.
"""

from __future__ import annotations

import atexit
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from relaystore.stores import Store
from tests.support.redis_stores import corrupt, fresh_prefixed
from tests.support.services import RedisClusterProcess, start_redis_cluster

NAME = "redis-cluster"

__all__ = ["NAME", "corrupt", "fresh", "unavailable"]

_cluster: RedisClusterProcess | None = None
_failure: str | None = None


def cluster() -> RedisClusterProcess:
    """The session's cluster, started on first use."""
    global _cluster, _failure
    if _cluster is None and _failure is None:
        try:
            _cluster = start_redis_cluster()
            atexit.register(_cluster.stop)
        except Exception as exc:  # reported as a skip reason, once
            _failure = f"could not start a Redis Cluster: {exc}"
    if _cluster is None:
        raise RuntimeError(_failure)
    return _cluster


def unavailable() -> str | None:
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        return "redis-server / redis-cli are not installed"
    try:
        cluster()
    except RuntimeError as exc:
        return str(exc)
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    async with fresh_prefixed(cluster().url) as store:
        yield store
