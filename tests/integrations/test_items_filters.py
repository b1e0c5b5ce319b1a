"""The item face's filters give the same answers on every backend as the Python reference (``holds``).

SQLite and PostgreSQL translate conditions to SQL (``json_type``/``json_extract``, ``jsonb``); the
others evaluate :func:`relaystore.stores.items.holds`. Every operator is tried against values of
every JSON type (numbers around the operand, big ints, strings, bools, null, arrays, objects, a
missing key), so a cross-type comparison or a text-vs-number slip shows up as a difference.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import relaystore
from relaystore.stores import items as items_module
from relaystore.stores.items import Condition, compile_filter, holds
from tests.integrations.store_backends import backend_url

VALUES: list[Any] = [
    9,
    10,
    10.0,
    10.5,
    100,
    -3,
    2**53 + 1,
    "10",
    "100",
    "9",
    "abc",
    "Abc",
    "é",
    "",
    True,
    False,
    None,
    [1, 2],
    [],
    {"x": 10},
    {},
]
OPERANDS: list[Any] = [10, 9.5, 2**53, "10", "abc", ""]
OPS = ["eq", "ne", "gt", "gte", "lt", "lte"]
FILTERS: list[dict[str, Any]] = [
    {"n": True},
    {"n": None},
    {"n": [1, 2]},
    {"n": []},
    {"n": {"x": 10}},
    {"n": {"x": {"$gte": 10}}},
    {"n": {}},
    {"deep": {"a": {"b": "c"}}},
]


def _value(i: int, v: Any) -> dict[str, Any]:
    return {"n": v, "i": i, "deep": {"a": {"b": "c" if i % 2 else "d"}}}


async def _check(url: str) -> None:
    async with relaystore.connect(url) as store:
        items = store.items
        stored = {f"k{i:02d}": _value(i, v) for i, v in enumerate(VALUES)}
        stored["missing"] = {"i": -1}
        await items.write([relaystore.stores.items.ItemWrite(("f",), k, v) for k, v in stored.items()])
        cases = [[Condition(("n",), op, operand)] for op in OPS for operand in OPERANDS]  # type: ignore[arg-type]
        cases += [compile_filter(f) for f in FILTERS]
        mismatches = []
        for conditions in cases:
            found = {i.key for i in await items.search(("f",), conditions=conditions, limit=None)}
            expected = {k for k, v in stored.items() if all(holds(v, c) for c in conditions)}
            if found != expected:
                mismatches.append((conditions, sorted(found ^ expected)))
        assert not mismatches, mismatches


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres", "redis", "file"])
def test_filters_match_the_reference(backend: str, tmp_path: Path) -> None:
    url, cleanup = backend_url(backend, tmp_path)
    try:
        asyncio.run(_check(url))
    finally:
        cleanup()


def test_reference_semantics() -> None:
    """What the reference itself promises: numbers as numbers, types never mixed."""
    assert holds({"n": 100}, Condition(("n",), "gt", 50))
    assert not holds({"n": "100"}, Condition(("n",), "gt", 50))
    assert not holds({"n": True}, Condition(("n",), "eq", 1))
    assert holds({"n": 10.0}, Condition(("n",), "eq", 10))
    assert not holds({}, Condition(("n",), "ne", 1))
    assert holds({"n": [1]}, Condition(("n", 0), "eq", 1))


async def _encode_once(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any] | None]:
    calls = []
    real = items_module.value_json

    def counting(value: Any) -> str:
        calls.append(value)
        return real(value)

    monkeypatch.setattr(items_module, "value_json", counting)
    async with relaystore.connect(url) as store:
        await store.items.write([items_module.ItemWrite(("once",), "k", {"t": (1, 2), "d": {"x": 1.5}})])
        encoded = len(calls)
        found = await store.items.get(("once",), "k")
    return encoded, None if found is None else found.value


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres", "redis"])
def test_a_put_encodes_its_value_once_and_reads_back_json(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_write's JSON text is what the backend stores (no second encoding), and every backend,
    memory included, gives back what JSON holds (a tuple comes back a list)."""
    url, cleanup = backend_url(backend, tmp_path)
    try:
        encoded, value = asyncio.run(_encode_once(url, monkeypatch))
    finally:
        cleanup()
    assert encoded == 1
    assert value == {"t": [1, 2], "d": {"x": 1.5}}
    assert isinstance(value["t"], list)
