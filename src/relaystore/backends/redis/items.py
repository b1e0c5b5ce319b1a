"""The item face (:mod:`relaystore.stores.items`) of the Redis backend (no modules needed).

Layout under ``{prefix}rs:{it}:`` (one hash tag, so one cluster slot and atomic scripts):

- ``ns``: ZSET of encoded namespaces, all scored 0, so a namespace prefix is a ``ZRANGEBYLEX``;
- ``n:<base64url(namespace)>``: HASH key -> ``created|updated|expires|ttl`` + newline + value JSON;
  ``…:v`` beside it: HASH key -> packed vectors;
- ``exp``: ZSET ``namespace NUL key`` scored by ``expires_at``, for the sweep.

Every write is one Lua script (``ITEM_WRITE`` in :mod:`~relaystore.backends.redis.scripts`;
touches, puts and deletes of a batch together). Expiry is kept in the record, not as Redis key
expiry: items of one namespace share a hash, and the store's clock (:attr:`ItemStore.clock`)
decides. Filters run in Python over the namespaces in range (O(items under the prefix)).
"""

from __future__ import annotations

import base64
import logging

from relaystore.backends.redis.connection import RedisConnection
from relaystore.errors import CorruptRecord
from relaystore.stores.items import (
    Condition,
    ItemStore,
    ItemWrite,
    StoredItem,
    decode_namespace,
    decode_value,
    encode_namespace,
    is_live,
    matches,
    pack_vectors,
    unpack_vectors,
    write_json,
)

log = logging.getLogger("relaystore")


def _number(text: str) -> float | None:
    return float(text) if text else None


class RedisItemStore(ItemStore):
    def __init__(self, conn: RedisConnection, prefix: str) -> None:
        self._conn = conn
        self._base = f"{prefix}rs:{{it}}:"
        self._ns = self._base + "ns"
        self._exp = self._base + "exp"

    def _hash(self, space: str) -> str:
        return self._base + "n:" + base64.urlsafe_b64encode(space.encode()).decode()

    def _parse(self, space: str, key: str, record: bytes, vectors: bytes | None) -> StoredItem:
        where = f"{self._hash(space)}[{key}]"
        try:
            head, _, body = record.partition(b"\n")
            created, updated, expires, ttl = head.decode().split("|")
            return StoredItem(
                decode_namespace(space),
                key,
                decode_value(body, where),
                float(created),
                float(updated),
                _number(expires),
                _number(ttl),
                unpack_vectors(vectors) if vectors is not None else None,
            )
        except ValueError as exc:
            raise CorruptRecord(where, f"not an item record: {exc}") from exc

    async def _get(self, keys: list[tuple[str, str]], now: float) -> list[StoredItem | None]:
        hashes = [self._hash(space) for space, _ in keys]
        records = await self._conn.script("ITEM_GET", hashes, [key for _, key in keys])
        found: list[StoredItem | None] = []
        for (space, key), record in zip(keys, records, strict=True):
            item = self._parse(space, key, record, None) if record else None
            found.append(item if item is not None and is_live(item.expires_at, now) else None)
        return found

    async def _spaces(self, low: str | None, high: str | None) -> list[str]:
        start = "-" if low is None else "[" + low
        stop = "+" if high is None else "(" + high
        names = await self._conn.do(self._ns, "ZRANGEBYLEX", self._ns, start, stop)
        return [name.decode() for name in names]

    async def _live_items(
        self, low: str | None, high: str | None, now: float | None, vectors: bool = False
    ) -> tuple[list[StoredItem], int]:
        """The live items in the range, and how many corrupt ones were skipped (each logged)."""
        items, corrupt = [], 0
        for space in await self._spaces(low, high):
            h = self._hash(space)
            rows = await self._conn.do(h, "HGETALL", h)
            packed = await self._conn.do(h, "HGETALL", h + ":v") if vectors else {}
            for key, record in rows.items():
                try:
                    item = self._parse(space, key.decode(), record, packed.get(key, b"") if vectors else None)
                except CorruptRecord as exc:
                    log.warning("skipping %s", exc)
                    corrupt += 1
                    continue
                if now is None or is_live(item.expires_at, now):
                    items.append(item)
        return items, corrupt

    async def _search(
        self,
        low: str | None,
        high: str | None,
        conditions: list[Condition],
        limit: int | None,
        offset: int,
        now: float,
        vectors: bool,
        newest_first: bool,
        values: bool = True,
    ) -> list[StoredItem]:
        items = [
            i for i in (await self._live_items(low, high, now, vectors))[0] if matches(i.value, conditions)
        ]
        items.sort(key=lambda i: (encode_namespace(i.namespace), i.key))
        if newest_first:
            items.sort(key=lambda i: i.updated_at, reverse=True)
        return items[offset : None if limit is None else offset + limit]

    async def _namespaces(self, low: str | None, high: str | None, now: float) -> list[str]:
        return sorted({encode_namespace(i.namespace) for i in (await self._live_items(low, high, now))[0]})

    async def _write(self, puts: list[ItemWrite], touch: list[tuple[str, str]], now: float) -> None:
        keys = [self._ns, self._exp]
        args: list[str | bytes] = [repr(now)]
        for space, key in touch:
            keys.append(self._hash(space))
            args += ["t", space, key]
        for put in puts:
            space = encode_namespace(put.namespace)
            keys.append(self._hash(space))
            if put.value is None:
                args += ["d", space, put.key]
            else:
                ttl = "" if put.ttl is None else repr(put.ttl)
                args += ["p", space, put.key, write_json(put), ttl, pack_vectors(put.vectors) or ""]
        await self._run(keys, args)

    async def _run(self, keys: list[str], args: list[str | bytes]) -> int:
        """Run the write script; return how many items it removed."""
        return int(await self._conn.script("ITEM_WRITE", keys, args))

    async def _sweep(self, now: float) -> int:
        members = await self._conn.do(self._exp, "ZRANGEBYSCORE", self._exp, "-inf", repr(now))
        keys = [self._ns, self._exp]
        args: list[str | bytes] = [repr(now)]
        for member in members:
            space, _, key = member.decode().partition("\x00")
            keys.append(self._hash(space))
            args += ["x", space, key]
        return await self._run(keys, args) if members else 0

    async def _count(self, low: str | None, high: str | None, now: float | None) -> int:
        items, corrupt = await self._live_items(low, high, now)
        return len(items) + corrupt  # a stored record counts, readable or not
