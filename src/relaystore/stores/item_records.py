"""The records of the long-term item face (:mod:`relaystore.stores.items`): what is stored, what
a put or delete carries, and a search condition.

Apart from the contract so that the vector search (:mod:`.vectors`), which the contract builds
on, can name them without importing the contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Namespace = tuple[str, ...]
Scalar = str | int | float | bool | None
Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "len"]


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One live item. Times are seconds since the epoch; ``ttl`` is seconds (None: no expiry).

    ``vectors`` (name -> embedding) is filled only when a search asked for it.
    """

    namespace: Namespace
    key: str
    value: dict[str, Any]
    created_at: float
    updated_at: float
    expires_at: float | None = None
    ttl: float | None = None
    vectors: dict[str, Sequence[float]] | None = None


@dataclass(frozen=True, slots=True)
class ItemWrite:
    """A put (``value`` a dict) or a delete (``value`` None) of ``(namespace, key)``.

    ``ttl`` is seconds (None: never expires); ``vectors`` are stored beside the value and
    replaced by every put (None or ``{}``: none).
    """

    namespace: Namespace
    key: str
    value: Mapping[str, Any] | None
    ttl: float | None = None
    vectors: Mapping[str, Sequence[float]] | None = None
    text: str | None = field(default=None, compare=False)
    """The value's JSON text (:func:`value_json`), set by :func:`check_write` so that backends
    do not encode it a second time."""


@dataclass(frozen=True, slots=True)
class Condition:
    """``value at path <op> operand``. ``path`` holds object keys (str) and array indexes (int).

    ``len`` means "is an array of exactly ``operand`` elements" (``-1``: "is an object"). Ordering
    operators take a number or a string; ``eq``/``ne`` also take a bool or None (JSON null).
    """

    path: tuple[str | int, ...]
    op: Op
    operand: Scalar
