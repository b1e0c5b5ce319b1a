"""The item face (:mod:`relaystore.stores.items`) of the file backend.

Layout: ``items/<encoded namespace>/<encoded "k" + key>.json``, one JSON file per item holding
its namespace, key, value, times, ttl and packed vectors (base64). Directory names use the
backend's :func:`encode_name` (a long namespace gets a hashed name and a ``.key`` sidecar).

Each item file is replaced atomically (temp file, fsync, rename) under the store-wide write lock,
so readers never see a torn item; a batch of several items is applied file by file (a crash in
the middle of a batch may leave its first items written). A namespace directory is removed with
its last item. Filters are evaluated in Python over the namespaces in range (O(items under the
prefix)).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaystore.backends.filesystem.names import KEY_SUFFIX, encode_name
from relaystore.errors import CorruptRecord
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
    pack_vectors,
    unpack_vectors,
    value_json,
    within,
)

if TYPE_CHECKING:
    from relaystore.backends.filesystem.layout import FileRoot

ITEMS_DIR = "items"


def _file_name(key: str) -> str:
    return encode_name("k" + key) + ".json"  # "k": an empty key still gets a visible name


class FileItemStore(ItemStore):
    def __init__(self, root: FileRoot) -> None:
        self._root = root
        self._dir = root.path / ITEMS_DIR

    # ------------------------------------------------------------------ blocking helpers

    def _space_dir(self, space: str) -> Path:
        return self._dir / encode_name(space)

    def _spaces(self, low: str | None, high: str | None) -> list[tuple[str, Path]]:
        found = []
        for name in self._root.names(self._dir):
            if name.endswith(KEY_SUFFIX):
                continue
            space = self._root.key_of(self._dir, name)
            if space is not None and within(space, low, high):
                found.append((space, self._dir / name))
        return sorted(found)

    def _read(self, path: Path, vectors: bool = False) -> StoredItem | None:
        raw = self._root.read_bytes(path)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            packed = record.get("vectors")
            return StoredItem(
                decode_namespace(record["ns"]),
                record["key"],
                record["value"],
                record["created_at"],
                record["updated_at"],
                record["expires_at"],
                record["ttl"],
                unpack_vectors(base64.b64decode(packed)) if vectors and packed else ({} if vectors else None),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptRecord(str(path), f"not an item record: {exc}") from exc

    def _items(self, low: str | None, high: str | None, now: float | None, vectors: bool) -> list[StoredItem]:
        items = []
        for _, directory in self._spaces(low, high):
            for name in sorted(self._root.names(directory)):
                if name.endswith(".json"):
                    item = self._read(directory / name, vectors)
                    if item is not None and (now is None or is_live(item.expires_at, now)):
                        items.append(item)
        return items

    def _save(self, item: StoredItem, packed: bytes | None) -> None:
        space = encode_namespace(item.namespace)
        directory = self._space_dir(space)
        self._root.remember_key(self._dir, directory.name, space)
        self._root.make_dirs(directory)
        record: dict[str, Any] = {
            "ns": space,
            "key": item.key,
            "created_at": item.created_at,
            "updated_at": item.updated_at,
            "expires_at": item.expires_at,
            "ttl": item.ttl,
            "vectors": base64.b64encode(packed).decode() if packed else None,
        }
        text = json.dumps(record, ensure_ascii=False)[:-1] + ', "value": ' + value_json(item.value) + "}"
        self._root.write_file(directory / _file_name(item.key), text.encode())

    def _remove(self, space: str, key: str) -> bool:
        directory = self._space_dir(space)
        removed = self._root.remove(directory / _file_name(key))
        if removed:
            self._root.sync_dir(directory)
            if not self._root.names(directory):
                self._root.remove_dir(directory)
                self._root.forget_key(self._dir, directory.name)
        return removed

    def _apply(self, put: ItemWrite, now: float) -> None:
        space = encode_namespace(put.namespace)
        if put.value is None:
            self._remove(space, put.key)
            return
        old = self._read(self._space_dir(space) / _file_name(put.key))
        live = old is not None and is_live(old.expires_at, now)
        item = StoredItem(
            put.namespace,
            put.key,
            dict(put.value),
            old.created_at if old is not None and live else now,
            next_updated_at(now, None if old is None else old.updated_at),
            None if put.ttl is None else now + put.ttl,
            put.ttl,
        )
        self._save(item, pack_vectors(put.vectors))

    def _touch(self, space: str, key: str, now: float) -> None:
        path = self._space_dir(space) / _file_name(key)
        item = self._read(path, vectors=True)
        if item is None or item.ttl is None or not is_live(item.expires_at, now):
            return
        refreshed = StoredItem(
            item.namespace, item.key, item.value, item.created_at, item.updated_at, now + item.ttl, item.ttl
        )
        self._save(refreshed, pack_vectors(item.vectors))

    # ------------------------------------------------------------------ primitives

    async def _get(self, keys: list[tuple[str, str]], now: float) -> list[StoredItem | None]:
        def read() -> list[StoredItem | None]:
            items = [self._read(self._space_dir(space) / _file_name(key)) for space, key in keys]
            return [i if i is not None and is_live(i.expires_at, now) else None for i in items]

        return await self._root.read(read)

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
        def read() -> list[StoredItem]:
            items = [i for i in self._items(low, high, now, vectors) if matches(i.value, conditions)]
            items.sort(key=lambda i: (encode_namespace(i.namespace), i.key))
            if newest_first:
                items.sort(key=lambda i: i.updated_at, reverse=True)
            return items[offset : None if limit is None else offset + limit]

        return await self._root.read(read)

    async def _namespaces(self, low: str | None, high: str | None, now: float) -> list[str]:
        def read() -> list[str]:
            return sorted({encode_namespace(i.namespace) for i in self._items(low, high, now, False)})

        return await self._root.read(read)

    async def _write(self, puts: list[ItemWrite], touch: list[tuple[str, str]], now: float) -> None:
        def write() -> None:
            for space, key in touch:
                self._touch(space, key, now)
            for put in puts:
                self._apply(put, now)

        await self._root.write(write)

    async def _sweep(self, now: float) -> int:
        def sweep() -> int:
            expired = [i for i in self._items(None, None, None, False) if not is_live(i.expires_at, now)]
            return sum(self._remove(encode_namespace(i.namespace), i.key) for i in expired)

        return await self._root.write(sweep)

    async def _count(self, low: str | None, high: str | None, now: float | None) -> int:
        return await self._root.read(lambda: len(self._items(low, high, now, False)))
