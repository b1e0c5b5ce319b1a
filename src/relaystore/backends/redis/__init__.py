"""Redis backend: ``redis://host:port/db``, ``rediss://…`` (TLS), ``redis+cluster://h:p,h:p``.

Options (URL query or keyword arguments; see :mod:`.url`): ``prefix`` (default ``nemo_relay:``,
NeMo Relay's default), ``ttl`` (seconds, run records), ``timeout`` (seconds, default 5, every round
trip) and ``cluster=1`` (treat ``redis://`` / ``rediss://`` as a Redis Cluster seed).

Adaptive state uses NeMo Relay's RedisBackend key layout and JSON, so both read each other's data
(:class:`AdaptiveKeys`, in :mod:`.layout`); checkpoints, outputs, blobs and items use our own
layout under ``{prefix}rs:``. See docs/backends/redis.md.

Every multi-key write is one Lua script (:mod:`.scripts`; atomic, one round trip). Updates of a
document are optimistic: read, compute, then a script writes only if the document's SHA-1 is
unchanged.

Cluster mode (``redis+cluster://`` or ``?cluster=1``): the adaptive keys gain a per-owner hash tag
(:class:`AdaptiveKeys` says why NeMo Relay compatibility therefore needs the plain layout). All
checkpoints of a prefix share one slot, and all outputs another, because listing threads and
outputs must stay atomic with writes.

Redis and connection errors surface as :class:`BackendUnavailable` (the pool reconnects on the next
call); a key holding the wrong Redis type as :class:`CorruptRecord` naming the key.

Modules: :mod:`.url` (options), :mod:`.layout` (key names), :mod:`.scripts` (Lua),
:mod:`.connection` (client, error policy), one per face: :mod:`.checkpoints`, :mod:`.outputs`,
:mod:`.adaptive`, :mod:`.blobs`, :mod:`.items`.
"""

from __future__ import annotations

from typing import Any

from relaystore.backends.redis.adaptive import RedisAdaptiveStore
from relaystore.backends.redis.blobs import RedisBlobStore
from relaystore.backends.redis.checkpoints import RedisCheckpointStore
from relaystore.backends.redis.connection import RedisConnection, client
from relaystore.backends.redis.counters import check_counters
from relaystore.backends.redis.items import RedisItemStore
from relaystore.backends.redis.layout import DEFAULT_PREFIX, AdaptiveKeys
from relaystore.backends.redis.outputs import RedisOutputStore
from relaystore.backends.redis.url import RedisOptions, parse_url
from relaystore.stores import CounterCheck, Store

__all__ = [
    "DEFAULT_PREFIX",
    "AdaptiveKeys",
    "RedisAdaptiveStore",
    "RedisBlobStore",
    "RedisCheckpointStore",
    "RedisConnection",
    "RedisItemStore",
    "RedisOptions",
    "RedisOutputStore",
    "open_store",
    "parse_url",
]


async def open_store(url: str, **options: Any) -> Store:
    """Connect to Redis (or a Redis Cluster) and return a :class:`Store` on it.

    Options: ``prefix`` (str), ``ttl`` (int seconds, run records only), ``timeout`` (float
    seconds, per round trip) and ``cluster`` (bool). Raises :class:`InvalidInput` for a bad URL
    or option and :class:`BackendUnavailable` when the server cannot be reached.
    """
    parsed = parse_url(url, options)
    conn = RedisConnection(client(parsed), parsed.timeout, parsed.cluster)
    blobs = RedisBlobStore(conn, parsed.prefix)
    try:
        if parsed.cluster:
            await conn.call("cluster", conn.client.initialize)
        await conn.do("PING", "PING")
        await blobs.drop_stale_uploads()
    except BaseException:
        await conn.close()
        raise

    async def info() -> dict[str, Any]:
        server = await conn.call("INFO", lambda: conn.client.info("server"))
        if "redis_version" not in server:  # a cluster may answer with one section per node
            server = next((v for v in server.values() if isinstance(v, dict)), {})
        return {
            "prefix": parsed.prefix,
            "cluster": parsed.cluster,
            "ttl": parsed.ttl,
            "timeout": parsed.timeout,
            "redis_version": server.get("redis_version"),
        }

    checkpoints = RedisCheckpointStore(conn, parsed.prefix)
    outputs = RedisOutputStore(conn, parsed.prefix)

    async def counters(repair: bool) -> list[CounterCheck]:
        return await check_counters(conn, checkpoints, outputs, repair)

    return Store(
        url,
        "redis",
        checkpoints,
        outputs,
        RedisAdaptiveStore(conn, AdaptiveKeys(parsed.prefix, parsed.cluster), parsed.ttl),
        blobs=blobs,
        items=RedisItemStore(conn, parsed.prefix),
        close=conn.close,
        info=info,
        counters=counters,
        concurrent_calls=True,
    )
