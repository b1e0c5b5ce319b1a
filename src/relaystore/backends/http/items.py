"""The item face (:mod:`relaystore.stores.items`) of the ``http://`` backend.

Each primitive is one request to the server's ``/v1/store/...`` routes
(:mod:`relaystore.server.routes.items`), which run the public item API on the server's store. The
server's clock decides expiry: the ``now`` the contract passes is not sent, so clients with a
skewed clock cannot shorten or stretch anyone's TTL. A memory token limits the namespaces a
client may use (403 :class:`~relaystore.errors.Forbidden` outside them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relaystore import wire
from relaystore.errors import CorruptRecord
from relaystore.stores.items import (
    Condition,
    ItemStore,
    ItemWrite,
    StoredItem,
    decode_namespace,
    encode_namespace,
)

if TYPE_CHECKING:
    from relaystore.backends.http.client import Client

_ALL = 2**62


def _labels(low: str | None) -> list[str]:
    """The namespace prefix whose text range starts at ``low``."""
    return [] if low is None else list(decode_namespace(low))


def _item(body: dict[str, Any] | None) -> StoredItem | None:
    if body is None:
        return None
    try:
        return StoredItem(
            tuple(body["namespace"]),
            body["key"],
            body["value"],
            float(body["created_at"]),
            float(body["updated_at"]),
            body["expires_at"],
            body["ttl"],
            body.get("vectors"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecord("item", f"the server sent a malformed item: {exc}") from exc


class HttpItemStore(ItemStore):
    def __init__(self, client: Client) -> None:
        self._c = client

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._c.json("POST", path, json=body)

    async def _get(self, keys: list[tuple[str, str]], now: float) -> list[StoredItem | None]:
        pairs = [[list(decode_namespace(space)), key] for space, key in keys]
        answer = await self._post(wire.ITEMS_GET, {"keys": pairs})
        return [_item(body) for body in answer["items"]]

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
        body = {
            "prefix": _labels(low),
            "conditions": [{"path": list(c.path), "op": c.op, "operand": c.operand} for c in conditions],
            "limit": limit,
            "offset": offset,
            "vectors": vectors,
            "newest_first": newest_first,
        }
        answer = await self._post(wire.ITEMS_SEARCH, body)
        self._c.relay_warnings(answer)
        return [item for item in map(_item, answer["items"]) if item is not None]

    async def _namespaces(self, low: str | None, high: str | None, now: float) -> list[str]:
        answer = await self._post(wire.ITEMS_NAMESPACES, {"prefix": _labels(low), "limit": _ALL})
        return [encode_namespace(tuple(ns)) for ns in answer["namespaces"]]

    async def _write(self, puts: list[ItemWrite], touch: list[tuple[str, str]], now: float) -> None:
        writes = [
            {
                "namespace": list(p.namespace),
                "key": p.key,
                "value": None if p.value is None else dict(p.value),
                "ttl": p.ttl,
                "vectors": None if not p.vectors else {k: list(v) for k, v in p.vectors.items()},
            }
            for p in puts
        ]
        pairs = [[list(decode_namespace(space)), key] for space, key in touch]
        await self._post(wire.ITEMS_WRITE, {"writes": writes, "touch": pairs})

    async def _sweep(self, now: float) -> int:
        return int((await self._post(wire.ITEMS_SWEEP, {}))["removed"])

    async def _count(self, low: str | None, high: str | None, now: float | None) -> int:
        body = {"prefix": _labels(low), "include_expired": now is None}
        return int((await self._post(wire.ITEMS_COUNT, body))["count"])
