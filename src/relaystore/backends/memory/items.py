"""The item face (:mod:`relaystore.stores.items`) of the memory backend.

Items live in a dict per encoded namespace, next to the memory store's other state (one item
space per ``memory://NAME``). Primitives never await, so each is atomic on the event loop; a
lock guards use from several threads. Filters are evaluated in Python (:func:`matches`).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from relaystore.stores.items import (
    Condition,
    ItemStore,
    ItemWrite,
    StoredItem,
    decode_namespace,
    encode_namespace,
    is_live,
    matches,
    next_updated_at,
    within,
)


class _Row:
    __slots__ = ("created_at", "expires_at", "ttl", "updated_at", "value", "vectors")

    def __init__(self, value: dict[str, Any], created_at: float, updated_at: float) -> None:
        self.value = value
        self.created_at = created_at
        self.updated_at = updated_at
        self.expires_at: float | None = None
        self.ttl: float | None = None
        self.vectors: dict[str, list[float]] | None = None


class _Items:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.spaces: dict[str, dict[str, _Row]] = {}  # encoded namespace -> key -> row


_BY_STATE: weakref.WeakKeyDictionary[Any, _Items] = weakref.WeakKeyDictionary()
_BY_STATE_LOCK = threading.Lock()


def _item(space: str, key: str, row: _Row, vectors: bool = False) -> StoredItem:
    return StoredItem(
        decode_namespace(space),
        key,
        _copy(row.value),
        row.created_at,
        row.updated_at,
        row.expires_at,
        row.ttl,
        dict(row.vectors or {}) if vectors else None,
    )


def _copy(value: Any) -> Any:
    """A deep copy of JSON data, so a caller mutating a returned value cannot change the store."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class MemoryItemStore(ItemStore):
    runs_inline = True  # every primitive returns without awaiting

    def __init__(self, items: _Items) -> None:
        self._i = items

    @classmethod
    def for_state(cls, state: object) -> MemoryItemStore:
        """The item face sharing the lifetime (and the name) of a memory store's state."""
        with _BY_STATE_LOCK:
            items = _BY_STATE.get(state)
            if items is None:
                items = _BY_STATE[state] = _Items()
        return cls(items)

    def _live(self, space: str, key: str, now: float) -> _Row | None:
        row = self._i.spaces.get(space, {}).get(key)
        return row if row is not None and is_live(row.expires_at, now) else None

    async def _get(self, keys: list[tuple[str, str]], now: float) -> list[StoredItem | None]:
        with self._i.lock:
            rows = [(space, key, self._live(space, key, now)) for space, key in keys]
            return [None if row is None else _item(space, key, row) for space, key, row in rows]

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
        with self._i.lock:
            found = [
                (space, key, row)
                for space, rows in self._i.spaces.items()
                if within(space, low, high)
                for key, row in rows.items()
                if is_live(row.expires_at, now) and matches(row.value, conditions)
            ]
            found.sort(key=lambda f: (f[0], f[1]))
            if newest_first:
                found.sort(key=lambda f: f[2].updated_at, reverse=True)  # stable: ties by ns, key
            end = None if limit is None else offset + limit
            return [_item(space, key, row, vectors) for space, key, row in found[offset:end]]

    async def _namespaces(self, low: str | None, high: str | None, now: float) -> list[str]:
        with self._i.lock:
            return sorted(
                space
                for space, rows in self._i.spaces.items()
                if within(space, low, high) and any(is_live(r.expires_at, now) for r in rows.values())
            )

    async def _write(self, puts: list[ItemWrite], touch: list[tuple[str, str]], now: float) -> None:
        with self._i.lock:
            for space, key in touch:
                row = self._live(space, key, now)
                if row is not None and row.ttl is not None:
                    row.expires_at = now + row.ttl
            for put in puts:
                self._apply(put, now)

    def _apply(self, put: ItemWrite, now: float) -> None:
        space = encode_namespace(put.namespace)
        rows = self._i.spaces.get(space)
        if put.value is None:
            if rows is not None and rows.pop(put.key, None) is not None and not rows:
                del self._i.spaces[space]
            return
        old = self._live(space, put.key, now)
        row = _Row(
            _copy(dict(put.value)),
            now if old is None else old.created_at,
            next_updated_at(now, None if old is None else old.updated_at),
        )
        row.ttl = put.ttl
        row.expires_at = None if put.ttl is None else now + put.ttl
        row.vectors = {name: list(v) for name, v in put.vectors.items()} if put.vectors else None
        self._i.spaces.setdefault(space, {})[put.key] = row

    async def _sweep(self, now: float) -> int:
        removed = 0
        with self._i.lock:
            for space in list(self._i.spaces):
                rows = self._i.spaces[space]
                for key in [k for k, r in rows.items() if not is_live(r.expires_at, now)]:
                    del rows[key]
                    removed += 1
                if not rows:
                    del self._i.spaces[space]
        return removed

    async def _count(self, low: str | None, high: str | None, now: float | None) -> int:
        with self._i.lock:
            return sum(
                1
                for space, rows in self._i.spaces.items()
                if within(space, low, high)
                for row in rows.values()
                if now is None or is_live(row.expires_at, now)
            )
