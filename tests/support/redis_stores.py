"""Shared by the two Redis factories: a unique prefix per store, purged on exit, and corruption."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

import relaystore
from relaystore.backends.redis.checkpoints import RedisCheckpointStore
from relaystore.backends.redis.items import RedisItemStore
from relaystore.backends.redis.layout import AdaptiveKeys, glob_escape
from relaystore.backends.redis.outputs import RedisOutputStore
from relaystore.stores import Store
from relaystore.stores.items import encode_namespace
from relaystore.testing.damage import damage


def raw_client(url: str) -> Redis | RedisCluster:
    """A plain redis-py client on the server or cluster that ``url`` names."""
    if url.startswith("redis+cluster://"):
        host, _, port = url.removeprefix("redis+cluster://").split(",")[0].partition(":")
        return RedisCluster(host=host, port=int(port))
    return Redis.from_url(url)


async def purge(url: str, prefix: str) -> int:
    """UNLINK every key under ``prefix`` (SCAN of that prefix only); return how many."""
    client = raw_client(url)
    try:
        keys = [k async for k in client.scan_iter(match=glob_escape(prefix) + "*", count=1000)]
        for key in keys:  # one by one: in a cluster the keys span slots
            await client.unlink(key)
        return len(keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def fresh_prefixed(url: str) -> AsyncIterator[Store]:
    prefix = f"rstest:{uuid.uuid4().hex}:"
    separator = "&" if "?" in url else "?"
    try:
        async with relaystore.connect(f"{url}{separator}prefix={quote(prefix)}") as store:
            yield store
    finally:
        await purge(url, prefix)


def _location(store: Store, what: str, key: tuple[str, ...]) -> tuple[str, str | None]:
    """The Redis key (and hash field, if any) that holds the record."""
    prefix = store.adaptive._k.prefix  # type: ignore[attr-defined]
    adaptive: AdaptiveKeys = store.adaptive._k  # type: ignore[attr-defined]
    if what == "run":
        return adaptive.run(*key), None
    if what == "document":
        return adaptive.key(*key), None
    if what == "checkpoint":
        thread_id, checkpoint_id = key
        return RedisCheckpointStore(None, prefix)._keys(thread_id).meta, checkpoint_id  # type: ignore[arg-type]
    if what == "output":
        return RedisOutputStore(None, prefix)._records, key[0]  # type: ignore[arg-type]
    if what == "item":
        *namespace, item_key = key
        return RedisItemStore(None, prefix)._hash(encode_namespace(tuple(namespace))), item_key  # type: ignore[arg-type]
    if what == "blob":
        return f"{prefix}rs:{{blob}}:meta", key[0]
    raise NotImplementedError(what)


def _damaged(what: str, raw: bytes, how: str) -> bytes:
    """An item keeps a ``created|updated|expires|ttl`` line before its JSON: only the JSON is hit."""
    if what == "item":
        head, _, body = raw.partition(b"\n")
        return head + b"\n" + damage(body, how)
    return damage(raw, how)


async def corrupt(store: Store, what: str, key: tuple[str, ...], how: str = "json") -> None:
    """Damage the record's stored JSON (see :mod:`relaystore.testing.damage`) through a second client."""
    name, field = _location(store, what, key)
    client = raw_client(store.url.partition("?")[0])
    try:
        raw = await (client.get(name) if field is None else client.hget(name, field))
        assert raw is not None, f"no {what} {key} to corrupt"
        if field is None:
            await client.set(name, _damaged(what, raw, how), xx=True)
        else:
            await client.hset(name, field, _damaged(what, raw, how))
    finally:
        await client.aclose()
