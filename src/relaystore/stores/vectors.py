"""Nearest-item search over the vectors stored with items: the exact reference and its paging.

:meth:`relaystore.stores.items.ItemStore.nearest` ranks the live items under a namespace prefix
that satisfy a filter by their *best* vector's cosine similarity to a query (max over the item's
vectors, as LangGraph's InMemoryStore does), highest first, ties in search order (``updated_at``
newest first, then namespace, key); items with no vector of the query's length follow, unscored,
in search order. :func:`exact_nearest` does this with numpy over every candidate (O(items under
the prefix)); a backend with a native vector search (sqlite-vec, pgvector) overrides ``nearest``
and must return the same page.
"""

from __future__ import annotations

import array
import functools
import json
import math
import struct
import sys
from collections.abc import Mapping, Sequence
from typing import Protocol

from relaystore.errors import InvalidInput
from relaystore.stores.item_records import Condition, Namespace, StoredItem


class Searchable(Protocol):
    """What the exact search reads through: the item contract's ``search`` and ``get_many``
    (:class:`~relaystore.stores.items.ItemStore`, which builds on this module)."""

    async def search(
        self,
        prefix: Namespace = (),
        *,
        conditions: Sequence[Condition] = (),
        limit: int | None = 10,
        offset: int = 0,
        refresh: bool = False,
        vectors: bool = False,
        newest_first: bool = True,
        values: bool = True,
    ) -> list[StoredItem]: ...

    async def get_many(
        self, keys: Sequence[tuple[Namespace, str]], *, refresh: bool = False
    ) -> list[StoredItem | None]: ...


Scored = tuple[float | None, "StoredItem"]


def check_query(query: Sequence[float]) -> list[float]:
    """The query vector as finite floats; :class:`InvalidInput` if empty or not finite."""
    try:
        floats = [float(x) for x in query]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"a query vector is a sequence of numbers: {exc}") from exc
    if not floats or not all(math.isfinite(x) for x in floats):
        raise InvalidInput("a query vector is a non-empty sequence of finite numbers")
    return floats


def pack_vectors(vectors: Mapping[str, Sequence[float]] | None) -> bytes | None:
    """Vectors as bytes for a binary column: a JSON header ``[[name, dims], …]``, a newline, then
    every vector as little-endian float32 (None when there are none)."""
    if not vectors:
        return None
    header = json.dumps([[name, len(v)] for name, v in vectors.items()]).encode()
    floats = [x for v in vectors.values() for x in v]
    return header + b"\n" + struct.pack(f"<{len(floats)}f", *floats)


def unpack_vectors(data: bytes | None) -> dict[str, Sequence[float]]:
    """The inverse of :func:`pack_vectors` (float32 precision); each vector is an ``array('f')``,
    which numpy reads without a copy per element."""
    if not data:
        return {}
    cut = data.index(b"\n")
    floats = array.array("f", data[cut + 1 :])
    if sys.byteorder == "big":
        floats.byteswap()
    vectors: dict[str, Sequence[float]] = {}
    start = 0
    for name, dims in _header(data[:cut]):
        vectors[name] = floats[start : start + dims]
        start += dims
    return vectors


@functools.lru_cache(maxsize=256)  # items of one index share a handful of headers
def _header(raw: bytes) -> tuple[tuple[str, int], ...]:
    return tuple((str(name), int(dims)) for name, dims in json.loads(raw))


def float32_bytes(vector: Sequence[float]) -> bytes:
    """``vector`` as little-endian float32, the layout sqlite-vec reads."""
    return struct.pack(f"<{len(vector)}f", *vector)


def rank(
    query: Sequence[float], candidates: Sequence[StoredItem]
) -> tuple[list[tuple[float, StoredItem]], list[StoredItem]]:
    """The candidates (in search order, with vectors) with a vector of ``len(query)`` dims by best
    cosine similarity, highest first (stable), and the others in their given order. A zero vector
    scores 0."""
    import numpy as np

    owners: list[int] = []
    rows: list[Sequence[float]] = []
    scoreless: list[StoredItem] = []
    for n, stored in enumerate(candidates):
        usable = [v for v in (stored.vectors or {}).values() if len(v) == len(query)]
        if not usable:
            scoreless.append(stored)
        owners.extend([n] * len(usable))
        rows.extend(usable)
    if not rows:
        return [], scoreless
    matrix = np.array(rows, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(q) or 1.0)
    scores = np.divide(matrix @ q, norms, out=np.zeros(len(rows)), where=norms > 0)
    best: dict[int, float] = {}
    for owner, score in zip(owners, scores.tolist(), strict=True):
        if owner not in best or score > best[owner]:
            best[owner] = score
    ranked = sorted(best.items(), key=lambda kv: -kv[1])
    return [(score if math.isfinite(score) else 0.0, candidates[n]) for n, score in ranked], scoreless


def page(
    scored: Sequence[tuple[float, StoredItem]], scoreless: Sequence[StoredItem], limit: int, offset: int
) -> list[Scored]:
    """``limit`` results from ``offset`` of the scored items followed by the unscored ones."""
    out: list[Scored] = list(scored[offset : offset + limit])
    if len(out) < limit:
        skip = max(0, offset - len(scored))
        out += [(None, s) for s in scoreless[skip : skip + limit - len(out)]]
    return out


async def exact_nearest(
    items: Searchable,
    prefix: Namespace,
    query: list[float],
    conditions: list[Condition],
    limit: int,
    offset: int,
) -> list[Scored]:
    """The reference :meth:`ItemStore.nearest`: every candidate's vectors ranked with numpy
    (values are read back only for the page)."""
    candidates = await items.search(prefix, conditions=conditions, limit=None, vectors=True, values=False)
    scored, scoreless = rank(query, candidates)
    chosen = page(scored, scoreless, limit, offset)
    full = await items.get_many([(s.namespace, s.key) for _, s in chosen])
    return [(score, f) for (score, _), f in zip(chosen, full, strict=True) if f is not None]


class NearestSearch:
    """:meth:`nearest`, the vector search of :class:`~relaystore.stores.items.ItemStore` (a base
    of it, kept here with the ranking it follows)."""

    native_vectors: str | None = None
    """The engine search behind :meth:`nearest` (``"sqlite-vec"``, ``"pgvector"``), None: numpy."""

    async def nearest(
        self,
        prefix: Namespace,
        query: Sequence[float],
        *,
        conditions: Sequence[Condition] = (),
        limit: int = 10,
        offset: int = 0,
    ) -> list[Scored]:
        """``(cosine similarity, item)`` for the live items under ``prefix`` satisfying every
        condition, ranked as this module says (items without a vector of ``len(query)`` dims last,
        score None), then ``offset`` and ``limit``. Exact on every backend: numpy over the
        candidates (O(items under the prefix)) unless :attr:`native_vectors` names the engine's.
        Raises :class:`InvalidInput` for a bad prefix, query, condition, limit or offset."""
        floats = check_query(query)
        self._check_scope(prefix, limit, offset)
        for c in conditions:
            if not isinstance(c, Condition):
                raise InvalidInput(f"search conditions are Condition objects, got {type(c).__name__}")
        if limit == 0:
            return []
        return await self._nearest(tuple(prefix), floats, list(conditions), limit, offset)

    def _check_scope(self, prefix: Namespace, limit: int, offset: int) -> None:
        """Raise :class:`InvalidInput` for a bad prefix, limit or offset (the contract's rules)."""
        raise NotImplementedError

    async def _nearest(
        self, prefix: Namespace, query: list[float], conditions: list[Condition], limit: int, offset: int
    ) -> list[Scored]:
        return await exact_nearest(self, prefix, query, conditions, limit, offset)  # type: ignore[arg-type]
