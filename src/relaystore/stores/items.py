"""The item contract (``store.items``): JSON objects under a namespace and a key, with expiry.

An item is a JSON object stored at ``(namespace, key)``. A namespace is a tuple of labels
(``("users", "u1", "memories")``); searches and listings address a namespace *prefix* on whole
labels, so ``("foo",)`` covers ``("foo", "x")`` but never ``("foobar",)``. This is the storage
behind the LangGraph ``BaseStore`` (:mod:`relaystore.integrations.langgraph_store`), and it is
meant to serve any other keyed area with expiry (a key-value space for a RESP listener is one
namespace per database, one item per key).

Semantics, the same on every backend:

- ``created_at`` is kept when an item is overwritten, ``updated_at`` advances (seconds since the
  epoch, from :attr:`ItemStore.clock`).
- Expiry: a write with ``ttl`` (seconds) sets ``expires_at = now + ttl`` and remembers ``ttl``;
  a *touch* (a read with refresh) moves ``expires_at`` to ``now + ttl`` again. An item whose
  ``expires_at`` has passed is invisible to every read and is never touched back to life; a
  :meth:`ItemStore.sweep` deletes such rows for good.
- A namespace exists while it holds a live item: deleting its last item removes it from
  :meth:`ItemStore.list_namespaces`.
- Filters are conditions on paths inside the value (:class:`Condition`); numbers compare as
  numbers, strings as strings (code point order), and a value of another type, or a missing path,
  never matches. :func:`compile_filter` turns a LangGraph-style filter dict into conditions.

Backends store the namespace as text, each label followed by :data:`SEPARATOR` (``"\\x1f"``), so
a namespace prefix is a text range and text order is namespace order.
"""

from __future__ import annotations

import functools
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from relaystore.errors import CorruptRecord, InvalidInput
from relaystore.stores._common import MAX_ID_BYTES, check_text, prefix_upper_bound
from relaystore.stores.item_records import Condition as Condition
from relaystore.stores.item_records import ItemWrite as ItemWrite
from relaystore.stores.item_records import Namespace as Namespace
from relaystore.stores.item_records import Op as Op
from relaystore.stores.item_records import Scalar as Scalar
from relaystore.stores.item_records import StoredItem as StoredItem
from relaystore.stores.vectors import NearestSearch
from relaystore.stores.vectors import pack_vectors as pack_vectors  # re-exported for the backends
from relaystore.stores.vectors import unpack_vectors as unpack_vectors

SEPARATOR = "\x1f"
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_OPERATORS: dict[str, Op] = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
MAX_NAMESPACE_BYTES = 4096


# --------------------------------------------------------------------------- encoding


@functools.lru_cache(maxsize=4096)  # agents reuse a handful of namespaces
def encode_namespace(namespace: Namespace) -> str:
    """The stored text of a namespace: every label followed by :data:`SEPARATOR`."""
    return SEPARATOR.join(namespace) + SEPARATOR if namespace else ""


def decode_namespace(text: str) -> Namespace:
    return tuple(text.split(SEPARATOR)[:-1])


def prefix_range(prefix: Namespace) -> tuple[str | None, str | None]:
    """Stored namespaces under ``prefix`` (whole labels) are the text range ``[low, high)``."""
    if not prefix:
        return None, None
    low = encode_namespace(prefix)
    return low, prefix_upper_bound(low)


def within(text: str, low: str | None, high: str | None) -> bool:
    return (low is None or text >= low) and (high is None or text < high)


# --------------------------------------------------------------------------- checks


def check_namespace(namespace: object, *, allow_empty: bool = False) -> Namespace:
    """Return ``namespace`` as a tuple if usable, else raise :class:`InvalidInput`.

    Labels are non-empty strings without NUL or :data:`SEPARATOR`, at most 4096 UTF-8 bytes in all.
    """
    if not isinstance(namespace, tuple | list):
        raise InvalidInput(f"a namespace is a tuple of strings, got {type(namespace).__name__}")
    labels = tuple(namespace)
    if not labels and not allow_empty:
        raise InvalidInput("a namespace must have at least one label")
    if _known(labels):
        return labels
    for label in labels:
        if not isinstance(label, str) or not label:
            raise InvalidInput(f"namespace labels are non-empty strings, got {label!r} in {labels!r}")
        if SEPARATOR in label:
            raise InvalidInput(f"namespace label {label!r} must not contain \\x1f")
        check_text(label, "a namespace label")
    if len(encode_namespace(labels).encode()) > MAX_NAMESPACE_BYTES:
        raise InvalidInput(f"namespace is longer than {MAX_NAMESPACE_BYTES} bytes")
    if len(_CHECKED) < 4096:
        _CHECKED.add(labels)
    return labels


_CHECKED: set[Namespace] = set()  # namespaces that passed check_namespace (labels are immutable)


def _known(labels: tuple[Any, ...]) -> bool:
    try:
        return labels in _CHECKED
    except TypeError:  # an unhashable label: not a namespace, let the checks say why
        return False


def check_key(key: object) -> str:
    """Item keys are strings (may be empty) of at most 1024 UTF-8 bytes with no NUL."""
    if not isinstance(key, str):
        raise InvalidInput(f"an item key is a string, got {type(key).__name__}")
    check_text(key, "an item key")
    if len(key.encode()) > MAX_ID_BYTES:
        raise InvalidInput(f"an item key is at most {MAX_ID_BYTES} bytes")
    return key


def check_ttl(ttl: object) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise InvalidInput(f"ttl is a positive number of seconds or None, got {ttl!r}")
    return float(ttl)


def check_count(value: object, what: str, *, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 2**62:
        raise InvalidInput(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def value_json(value: Mapping[str, Any]) -> str:
    """The stored JSON text of an item value (compact, UTF-8 kept); :class:`InvalidInput` if it
    is not a JSON object every backend can hold back (no NaN, no lone surrogate, no foreign type)."""
    if not isinstance(value, Mapping):
        raise InvalidInput(f"an item value is a JSON object (a dict), got {type(value).__name__}")
    try:
        text = _ENCODER.encode(value)
        if not text.isascii():  # ASCII holds no lone surrogate: skip the UTF-8 pass
            text.encode()
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidInput(f"an item value cannot be stored as JSON: {str(exc).splitlines()[0]}") from exc
    return text


def _check_vectors(vectors: Mapping[str, Sequence[float]] | None) -> dict[str, list[float]] | None:
    if not vectors:
        return None
    checked = {}
    for name, vector in vectors.items():
        floats = [float(x) for x in vector]
        if not all(math.isfinite(x) for x in floats):
            raise InvalidInput(f"vector {name!r} holds a NaN or an infinity")
        checked[check_key(name)] = floats
    return checked


def decode_value(raw: str | bytes, where: str) -> dict[str, Any]:
    """A stored item value: JSON text (or its bytes) of an object. Raises
    :class:`~relaystore.errors.CorruptRecord` naming ``where`` for bytes that are not UTF-8, text
    that is not JSON, or JSON that is not an object."""
    try:
        value = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both
        raise CorruptRecord(where, f"the value is not UTF-8 JSON: {str(exc).splitlines()[0]}") from exc
    if not isinstance(value, dict):
        raise CorruptRecord(where, f"the value is JSON {json_kind(value)}, not an object")
    return value


def check_write(write: ItemWrite) -> ItemWrite:
    """A checked copy of ``write`` (value copied to a plain dict, vectors to float lists)."""
    if not isinstance(write, ItemWrite):
        raise InvalidInput(f"expected an ItemWrite, got {type(write).__name__}")
    value = text = None
    if write.value is not None:
        if not isinstance(write.value, Mapping):
            raise InvalidInput(f"an item value is a JSON object (a dict), got {type(write.value).__name__}")
        value = dict(write.value)
        text = value_json(value)
    return ItemWrite(
        check_namespace(write.namespace),
        check_key(write.key),
        value,
        check_ttl(write.ttl),
        _check_vectors(write.vectors) if value is not None else None,
        text,
    )


def write_json(put: ItemWrite) -> str:
    """The JSON text of a put's value (kept by :func:`check_write`, else encoded now)."""
    assert put.value is not None
    return put.text if put.text is not None else value_json(put.value)


# --------------------------------------------------------------------------- filters


def compile_filter(filter: Mapping[str, Any] | None) -> list[Condition]:
    """Conditions equivalent to a LangGraph filter dict (all must hold).

    ``{"k": v}`` is equality; ``{"k": {"$gt": 5, "$lt": 9}}`` applies operators (ANDed); a nested
    dict without ``$`` keys matches sub-keys recursively; a list matches an array of the same
    length element by element. Keys are literal top-level keys (``"a.b"`` is one key).
    Raises :class:`InvalidInput` (a ``ValueError``) for an unknown operator or a bad operand.
    """
    if filter is None:
        return []
    if not isinstance(filter, Mapping):
        raise InvalidInput(f"a filter is a dict, got {type(filter).__name__}")
    conditions: list[Condition] = []
    for key, wanted in filter.items():
        if not isinstance(key, str):
            raise InvalidInput(f"filter keys are strings, got {key!r}")
        _compile(conditions, (key,), wanted)
    return conditions


def _compile(into: list[Condition], path: tuple[str | int, ...], wanted: Any) -> None:
    if isinstance(wanted, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in wanted):
        for operator, operand in wanted.items():
            op = _OPERATORS.get(operator)
            if op is None:
                raise InvalidInput(f"Unsupported operator: {operator}")
            if op == "eq":
                _compile(into, path, operand)
            else:
                into.append(Condition(path, op, _check_operand(op, operand)))
    elif isinstance(wanted, Mapping):
        for key, sub in wanted.items():
            _compile(into, (*path, str(key)), sub)
        if not wanted:
            into.append(Condition(path, "len", -1))  # an empty object filter: "is an object"
    elif isinstance(wanted, list | tuple):
        into.append(Condition(path, "len", len(wanted)))
        for index, sub in enumerate(wanted):
            _compile(into, (*path, index), sub)
    else:
        into.append(Condition(path, "eq", _check_operand("eq", wanted)))


def _check_operand(op: Op, operand: Any) -> Scalar:
    if op in ("eq", "ne"):
        if operand is None or isinstance(operand, str | bool | int | float):
            return _finite(operand)
        raise InvalidInput(f"${op} compares with a string, number, bool or null, got {operand!r}")
    if isinstance(operand, bool) or not isinstance(operand, str | int | float):
        raise InvalidInput(f"${op} compares with a number or a string, got {operand!r}")
    return _finite(operand)


def _finite(operand: Scalar) -> Scalar:
    if isinstance(operand, float) and not math.isfinite(operand):
        raise InvalidInput(f"a filter cannot compare with {operand!r}")
    return operand


def json_kind(value: Any) -> str:
    """``"number"``, ``"string"``, ``"bool"``, ``"null"``, ``"array"`` or ``"object"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list | tuple) else "object"


_MISSING: Any = object()


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list | tuple) or not -len(value) <= part < len(value):
                return _MISSING
        elif not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def holds(value: Mapping[str, Any], condition: Condition) -> bool:
    """Whether ``value`` satisfies one condition (the reference the SQL backends follow)."""
    found = _at(value, condition.path)
    if found is _MISSING:
        return False
    op, operand = condition.op, condition.operand
    if op == "len":
        if operand == -1:
            return isinstance(found, Mapping)
        return isinstance(found, list | tuple) and len(found) == operand
    same_kind = json_kind(found) == json_kind(operand)
    if op == "eq":
        return same_kind and found == operand
    if op == "ne":
        return not (same_kind and found == operand)
    if not same_kind:
        return False
    return bool(
        {"gt": found > operand, "gte": found >= operand, "lt": found < operand, "lte": found <= operand}[op]
    )


def matches(value: Mapping[str, Any], conditions: Sequence[Condition]) -> bool:
    return all(holds(value, condition) for condition in conditions)


def namespace_matches(namespace: Namespace, path: Sequence[str], *, suffix: bool = False) -> bool:
    """Whether ``namespace`` starts (or ends, with ``suffix``) with ``path``; ``"*"`` is any label."""
    if len(namespace) < len(path):
        return False
    labels = namespace[len(namespace) - len(path) :] if suffix else namespace[: len(path)]
    return all(p == "*" or p == label for label, p in zip(labels, path, strict=True))


# --------------------------------------------------------------------------- the contract


class ItemStore(NearestSearch, ABC):
    """Namespaced JSON items with expiry. All methods are coroutines.

    :attr:`clock` (seconds since the epoch, default :func:`time.time`) is read once per call;
    tests replace it to move time. Raises :class:`InvalidInput` for bad arguments and
    :class:`~relaystore.errors.BackendUnavailable` when the backend cannot be reached.
    """

    clock: Callable[[], float] = staticmethod(time.time)
    runs_inline: bool = False
    """True when no primitive ever suspends (the memory backend): a caller may then drive these
    coroutines to completion on its own thread, with no event loop."""

    def _check_scope(self, prefix: Namespace, limit: int, offset: int) -> None:
        check_namespace(prefix, allow_empty=True)
        check_count(limit, "limit")
        check_count(offset, "offset")

    async def get(self, namespace: Namespace, key: str, *, refresh: bool = False) -> StoredItem | None:
        """The live item at ``(namespace, key)`` or None; ``refresh`` also touches its expiry."""
        if refresh:
            return (await self.get_many([(namespace, key)], refresh=True))[0]
        return (
            await self._get([(encode_namespace(check_namespace(namespace)), check_key(key))], self.clock())
        )[0]

    async def get_many(
        self, keys: Sequence[tuple[Namespace, str]], *, refresh: bool = False
    ) -> list[StoredItem | None]:
        """One result per ``(namespace, key)``, in order. ``refresh`` touches the found ones."""
        checked = [(encode_namespace(check_namespace(ns, allow_empty=True)), check_key(k)) for ns, k in keys]
        now = self.clock()
        found = await self._get(checked, now) if checked else []
        if refresh:
            await self._touch_found([item for item in found if item is not None], now)
        return found

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
    ) -> list[StoredItem]:
        """Live items under ``prefix`` satisfying every condition.

        Ordered by ``updated_at`` newest first (``newest_first=False``: by namespace, then key),
        ties by namespace and key; then ``offset`` and ``limit`` (None: all). ``vectors`` also
        returns each item's vectors; ``refresh`` touches the returned items; ``values=False`` lets
        a backend skip reading values (they may come back as ``{}``).
        """
        low, high = prefix_range(check_namespace(prefix, allow_empty=True))
        if limit is not None:
            check_count(limit, "limit")
        check_count(offset, "offset")
        conditions = [c if isinstance(c, Condition) else _bad_condition(c) for c in conditions]
        now = self.clock()
        if limit == 0:
            return []
        found = await self._search(
            low, high, list(conditions), limit, offset, now, vectors, newest_first, values
        )
        if refresh:
            await self._touch_found(found, now)
        return found

    async def write(
        self, writes: Sequence[ItemWrite], *, touch: Sequence[tuple[Namespace, str]] = ()
    ) -> None:
        """Apply puts and deletes atomically, after touching the live items in ``touch``.

        For the same ``(namespace, key)`` the last write wins.
        """
        last: dict[tuple[str, str], ItemWrite] = {}
        for write in writes:
            checked = check_write(write)
            last[(encode_namespace(checked.namespace), checked.key)] = checked
        touched = [(encode_namespace(check_namespace(ns)), check_key(k)) for ns, k in touch]
        if last or touched:
            await self._write(list(last.values()), touched, self.clock())

    async def put(
        self,
        namespace: Namespace,
        key: str,
        value: Mapping[str, Any],
        *,
        ttl: float | None = None,
        vectors: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        if value is None:
            raise InvalidInput("put needs a value; use delete to remove an item")
        await self.write([ItemWrite(namespace, key, value, ttl, vectors)])

    async def delete(self, namespace: Namespace, key: str) -> None:
        """Remove an item; deleting a missing one does nothing."""
        await self.write([ItemWrite(namespace, key, None)])

    async def list_namespaces(
        self,
        *,
        prefix: Sequence[str] | None = None,
        suffix: Sequence[str] | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Namespace]:
        """Namespaces holding a live item, sorted; ``"*"`` in ``prefix``/``suffix`` is any label.

        ``max_depth`` cuts each namespace to its first labels (duplicates dropped).
        """
        prefix, suffix = tuple(prefix or ()), tuple(suffix or ())
        for path in (prefix, suffix):
            check_namespace(path, allow_empty=True)
        if max_depth is not None:
            check_count(max_depth, "max_depth")
        check_count(limit, "limit")
        check_count(offset, "offset")
        literal = []
        for label in prefix:
            if label == "*":
                break
            literal.append(label)
        low, high = prefix_range(tuple(literal))
        names = [decode_namespace(text) for text in await self._namespaces(low, high, self.clock())]
        wanted = [
            ns[:max_depth] if max_depth is not None else ns
            for ns in names
            if namespace_matches(ns, prefix) and namespace_matches(ns, suffix, suffix=True)
        ]
        return sorted(set(wanted))[offset : offset + limit]

    async def sweep(self) -> int:
        """Delete every expired item for good; return how many."""
        return await self._sweep(self.clock())

    async def count(self, prefix: Namespace = (), *, include_expired: bool = False) -> int:
        """Items stored under ``prefix``; ``include_expired`` counts expired rows not yet swept."""
        low, high = prefix_range(check_namespace(prefix, allow_empty=True))
        return await self._count(low, high, None if include_expired else self.clock())

    async def _touch_found(self, items: Sequence[StoredItem], now: float) -> None:
        touched = [(encode_namespace(item.namespace), item.key) for item in items if item.ttl is not None]
        if touched:
            await self._write([], touched, now)

    # ------------------------------------------------------------------ backend primitives
    # Namespaces arrive encoded (encode_namespace); ranges are [low, high), None meaning open.
    # "Live" means expires_at is None or > now.

    @abstractmethod
    async def _get(self, keys: list[tuple[str, str]], now: float) -> list[StoredItem | None]:
        """The live item (without vectors) at each key, in order."""

    @abstractmethod
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
        """Live items in the range satisfying :func:`matches`, ordered as :meth:`search` says.

        With ``values`` false a backend may return ``{}`` as each value (the caller only wants
        keys and vectors, and reads the values of the few it keeps)."""

    @abstractmethod
    async def _namespaces(self, low: str | None, high: str | None, now: float) -> list[str]:
        """Distinct encoded namespaces in the range that hold a live item."""

    @abstractmethod
    async def _write(self, puts: list[ItemWrite], touch: list[tuple[str, str]], now: float) -> None:
        """In one transaction: set ``expires_at = now + ttl`` on the live items in ``touch`` that
        have a ttl, then apply ``puts`` (value None deletes). A put keeps ``created_at`` of the
        live item it replaces (an expired one counts as absent) and sets ``updated_at`` to
        ``max(now, previous updated_at + 1e-6)``, so it always advances."""

    @abstractmethod
    async def _sweep(self, now: float) -> int:
        """Delete the items whose ``expires_at <= now``; return how many."""

    @abstractmethod
    async def _count(self, low: str | None, high: str | None, now: float | None) -> int:
        """Items in the range (live ones only unless ``now`` is None)."""


def _bad_condition(condition: object) -> Condition:
    raise InvalidInput(f"search conditions are Condition objects, got {type(condition).__name__}")


def next_updated_at(now: float, previous: float | None) -> float:
    return now if previous is None else max(now, previous + 1e-6)


def is_live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now
