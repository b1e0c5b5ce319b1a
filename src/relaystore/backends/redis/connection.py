"""One redis-py client (a server or a cluster) and the error policy every face shares.

Redis and connection errors surface as :class:`BackendUnavailable` (the pool reconnects on the next
call); a key holding the wrong Redis type as :class:`CorruptRecord` naming the key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from relaystore.backends.redis.scripts import SCRIPTS
from relaystore.backends.redis.url import RedisOptions
from relaystore.errors import BackendUnavailable, CorruptRecord

T = TypeVar("T")
SCAN_COUNT = 1000
CHUNK = 500  # keys per MGET/HMGET/prune step: bounds one reply and one script's run time


def utf8(raw: bytes | None, key: str) -> str | None:
    """``raw`` as UTF-8 text (None stays None). Raises :class:`CorruptRecord` naming ``key``."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise CorruptRecord(key, f"not UTF-8: {exc}") from exc


def sorted_page(items: set[str], after: str | None, limit: int | None) -> list[str]:
    """The ``items`` after ``after``, sorted, at most ``limit`` of them."""
    ordered = sorted(i for i in items if after is None or i > after)
    return ordered if limit is None else ordered[:limit]


def chunks(values: Sequence[T], size: int = CHUNK) -> list[Sequence[T]]:
    """``values`` in slices of at most ``size``."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def client(options: RedisOptions) -> Redis | RedisCluster:
    """A redis-py client (a :class:`RedisCluster` in cluster mode) for ``options``."""
    # No client-side retries: a retried script could apply twice (store_run would then report a
    # Conflict for its own write). A failed call raises; the pool reconnects on the next one.
    common: dict[str, Any] = {
        "username": options.username,
        "password": None if options.password is None else options.password.get_secret_value(),
        "ssl": options.tls,
        "socket_timeout": options.timeout,
        "socket_connect_timeout": options.timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if options.cluster:
        nodes = [ClusterNode(host, port) for host, port in options.hosts]
        return RedisCluster(startup_nodes=nodes, **common)
    host, port = options.hosts[0]
    return Redis(host=host, port=port, db=options.db, **common)


class RedisConnection:
    """One redis-py client plus the error policy: every round trip is bounded by ``timeout``."""

    def __init__(self, client: Redis | RedisCluster, timeout: float, cluster: bool) -> None:
        self.client = client
        self.timeout = timeout
        self.cluster = cluster
        self._scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}

    async def call(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()``; ``key`` names the record in a :class:`CorruptRecord`."""
        try:
            async with asyncio.timeout(self.timeout):
                return await fn()
        except TimeoutError as exc:
            raise BackendUnavailable(f"Redis did not answer within {self.timeout}s") from exc
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                raise CorruptRecord(key, str(exc)) from exc
            raise BackendUnavailable(f"Redis error on {key}: {exc}") from exc
        except (rx.RedisError, OSError) as exc:
            raise BackendUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run the script :data:`SCRIPTS` names ``name`` (EVALSHA, loading it once if needed)."""
        script = self._scripts[name]
        return await self.call(keys[0], lambda: script(keys=list(keys), args=list(args)))

    async def do(self, key: str, command: str, *args: Any) -> Any:
        """One command, e.g. ``do(key, "GET", key)``."""
        return await self.call(key, lambda: self.client.execute_command(command, *args))

    async def scan(self, pattern: str) -> list[str]:
        """Every key matching ``pattern``: O(keys in the database) per call, in pages of 1000.

        The timeout applies to each step, not to the whole walk, which may be long.
        """
        found = self.client.scan_iter(match=pattern, count=SCAN_COUNT)
        keys: list[str] = []
        while True:
            try:
                key = await self.call(pattern, found.__anext__)
            except StopAsyncIteration:
                return keys
            keys.append(key.decode())

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` (None where missing), one MGET per :data:`CHUNK` keys."""
        values: list[bytes | None] = []
        for chunk in chunks(keys):
            values += await self.do(chunk[0], "MGET", *chunk)
        return values

    async def hmget(self, key: str, fields: Sequence[str]) -> list[bytes | None]:
        """The values of hash ``key``'s ``fields`` (None where missing), one HMGET per :data:`CHUNK`."""
        values: list[bytes | None] = []
        for chunk in chunks(fields):
            values += await self.do(key, "HMGET", key, *chunk)
        return values

    async def close(self) -> None:
        await self.client.aclose()
