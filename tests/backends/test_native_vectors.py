"""Native vector search of the item face: sqlite-vec on SQLite, pgvector on PostgreSQL.

Each native search must return the page the exact numpy reference
(:func:`relaystore.stores.vectors.exact_nearest`) returns on the same data, keep its
``item_vectors`` table in step through overwrites, deletes and sweeps, and a store opened
without the extension must fall back to the reference. pgvector runs only where the server has
the extension available (it is created in a private database); without it those cases skip and
the fallback cases still run on the shared ``test`` database.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from relaystore.backends import open_backend
from relaystore.backends.postgres import items as pg_items
from relaystore.backends.postgres import vectors as pg_vectors
from relaystore.backends.sqlite import items as sqlite_items
from relaystore.backends.sqlite import vectors as sqlite_vectors
from relaystore.stores import Store
from relaystore.stores.items import ItemStore, ItemWrite, compile_filter
from relaystore.stores.vectors import exact_nearest
from tests.support.services import ensure_postgres

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
DIMS = 8
CASES: list[tuple[tuple[str, ...], dict[str, Any] | None, int, int]] = [
    (("users",), None, 10, 0),
    (("users", "u1"), {"n": {"$gt": 100}}, 5, 3),
    (("users",), {"kind": "fact"}, 7, 40),
    ((), None, 20, 250),  # the page straddles the last scored items and the unscored ones
    ((), None, 10, 400),  # past every scored item: unscored only
    (("users", "u2"), {"n": {"$lt": 0}}, 10, 0),  # nothing matches
]

Opener = Callable[..., Any]


def _vector(rnd: random.Random, dims: int = DIMS) -> list[float]:
    return [rnd.gauss(0, 1) for _ in range(dims)]


def _writes(count: int = 300) -> list[ItemWrite]:
    """Items with two vectors, one, none, a zero vector, or vectors of another length."""
    rnd = random.Random(7)
    out = []
    for i in range(count):
        vectors: dict[str, list[float]] | None
        if i % 11 == 0:
            vectors = None
        elif i % 13 == 0:
            vectors = {"text": [0.0] * DIMS}
        elif i % 17 == 0:
            vectors = {"text": _vector(rnd, DIMS + 1)}
        elif i % 2:
            vectors = {"text": _vector(rnd), "title": _vector(rnd)}
        else:
            vectors = {"text": _vector(rnd)}
        value = {"n": i, "kind": ("fact", "pref")[i % 2]}
        out.append(ItemWrite(("users", f"u{i % 4}", "memories"), f"k{i}", value, None, vectors))
    return out


def _same(native: list[tuple[float | None, Any]], exact: list[tuple[float | None, Any]]) -> None:
    assert [(s.namespace, s.key) for _, s in native] == [(s.namespace, s.key) for _, s in exact]
    assert [s.value for _, s in native] == [s.value for _, s in exact]
    for (a, _), (b, _) in zip(native, exact, strict=True):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a == pytest.approx(b, abs=1e-5)  # float32 arithmetic in the engine


async def _check_against_exact(items: ItemStore, query: list[float]) -> None:
    for prefix, filter, limit, offset in CASES:
        conditions = compile_filter(filter)
        native = await items.nearest(prefix, query, conditions=conditions, limit=limit, offset=offset)
        exact = await exact_nearest(items, prefix, query, conditions, limit, offset)
        _same(native, exact)


# --------------------------------------------------------------------------- stores


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / f'v-{uuid.uuid4().hex}.db'}"


@pytest.fixture
def no_sqlite_vec(monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite-vec cannot be imported, as when it is not installed."""
    monkeypatch.setitem(sys.modules, "sqlite_vec", None)


def _pg_available() -> bool:
    with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    return row is not None


@pytest.fixture
def pgvector_db() -> Iterator[str]:
    """A private database with ``CREATE EXTENSION vector``; skips where pgvector is not installed."""
    reason = ensure_postgres()
    if reason:
        pytest.skip(f"postgres: {reason}")
    if not _pg_available():
        pytest.skip("pgvector is not installed on this PostgreSQL server (no 'vector' extension)")
    name = f"rs_pgvector_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(f"{PG_SERVER}/{name}", autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        yield f"{PG_SERVER}/{name}?schema=items&pool_min=0&pool_max=2"
    finally:
        with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_plain() -> Iterator[str]:
    """A private schema in the shared database, which has no pgvector."""
    reason = ensure_postgres()
    if reason:
        pytest.skip(f"postgres: {reason}")
    schema = f"rs_vec_{uuid.uuid4().hex}"
    yield f"{PG_SERVER}/test?schema={schema}&pool_min=0&pool_max=2"
    with psycopg.connect(f"{PG_SERVER}/test", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = await open_backend(url)
    try:
        await store.items.count()  # the item face's setup: migration and detection
        yield store
    finally:
        await store.close()


def _vector_rows(store: Store) -> int:
    """Rows in the store's ``item_vectors`` table, read beside the store."""
    if store.backend == "sqlite":
        with sqlite3.connect(store.url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM item_vectors").fetchone()[0])
    base, _, query = store.url.partition("?")
    schema = dict(part.split("=", 1) for part in query.split("&"))["schema"]
    with psycopg.connect(base, autocommit=True) as conn:
        table = sql.Identifier(schema, "item_vectors")
        row = conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(table)).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- sqlite-vec


async def test_sqlite_vec_search_equals_the_exact_search(tmp_path: Path) -> None:
    async with opened(_sqlite_url(tmp_path)) as store:
        assert store.items.native_vectors == "sqlite-vec"
        await store.items.write(_writes())
        await _check_against_exact(store.items, _vector(random.Random(1)))


async def test_sqlite_vec_index_follows_overwrites_deletes_and_sweeps(tmp_path: Path) -> None:
    async with opened(_sqlite_url(tmp_path)) as store:
        await _index_follows_writes(store, sweep_clock=True)


async def test_sqlite_without_sqlite_vec_falls_back_and_still_indexes(
    tmp_path: Path, no_sqlite_vec: None
) -> None:
    url = _sqlite_url(tmp_path)
    query = _vector(random.Random(2))
    async with opened(url) as store:
        assert store.items.native_vectors is None
        await store.items.write(_writes())
        fallback = await store.items.nearest(("users",), query, limit=30)
        assert len(fallback) == 30 and fallback[0][0] is not None
        assert _vector_rows(store) > 0  # written for a later opening with the extension
    sys.modules.pop("sqlite_vec")  # the extension is back
    async with opened(url) as store:
        assert store.items.native_vectors == "sqlite-vec"
        _same(await store.items.nearest(("users",), query, limit=30), fallback)


async def test_in_memory_sqlite_uses_the_exact_search() -> None:
    async with opened("sqlite:///:memory:") as store:
        assert store.items.native_vectors is None  # no second connection to a private database
        await store.items.write(_writes(40))
        found = await store.items.nearest(("users",), _vector(random.Random(3)), limit=5)
        assert [s for s, _ in found if s is None] == [] and len(found) == 5


async def test_sqlite_filter_key_json_paths_cannot_write_falls_back(tmp_path: Path) -> None:
    async with opened(_sqlite_url(tmp_path)) as store:
        rnd = random.Random(4)
        await store.items.write(
            [ItemWrite(("n",), f"k{i}", {'a"b': i % 3}, None, {"v": _vector(rnd)}) for i in range(30)]
        )
        conditions, query = compile_filter({'a"b': 1}), _vector(rnd)
        found = await store.items.nearest(("n",), query, conditions=conditions, limit=20)
        assert len(found) == 10 and all(item.value == {'a"b': 1} for _, item in found)
        _same(found, await exact_nearest(store.items, ("n",), query, conditions, 20, 0))


async def test_sqlite_items_from_before_the_vectors_table_are_backfilled(tmp_path: Path) -> None:
    url = _sqlite_url(tmp_path)
    with pytest.MonkeyPatch.context() as patch:  # written by a relaystore with one items migration
        patch.setattr(sqlite_items, "MIGRATIONS", sqlite_items.MIGRATIONS[:1])
        patch.setattr(sqlite_items, "SCHEMA_VERSION", 1)
        patch.setattr(sqlite_vectors, "vector_rows", lambda puts: [])  # it had no vectors table
        async with opened(url) as store:
            await store.items.write(_writes(60))
    async with opened(url) as store:
        assert _vector_rows(store) == sum(len(w.vectors or {}) for w in _writes(60))
        await _check_against_exact(store.items, _vector(random.Random(5)))


# --------------------------------------------------------------------------- pgvector


async def test_pgvector_search_equals_the_exact_search(pgvector_db: str) -> None:
    async with opened(pgvector_db) as store:
        assert store.items.native_vectors == "pgvector"
        await store.items.write(_writes())
        await _check_against_exact(store.items, _vector(random.Random(1)))


async def test_pgvector_index_follows_overwrites_deletes_and_sweeps(pgvector_db: str) -> None:
    async with opened(pgvector_db) as store:
        await _index_follows_writes(store, sweep_clock=True)


async def test_postgres_without_pgvector_falls_back_and_still_indexes(pg_plain: str) -> None:
    async with opened(pg_plain) as store:
        assert store.items.native_vectors is None
        await store.items.write(_writes(80))
        query = _vector(random.Random(6))
        found = await store.items.nearest(("users",), query, limit=10)
        assert len(found) == 10 and all(score is not None for score, _ in found)
        assert _vector_rows(store) == sum(len(w.vectors or {}) for w in _writes(80))
        await _index_follows_writes(store, sweep_clock=True)


async def test_postgres_items_from_before_the_vectors_table_are_backfilled(pg_plain: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pg_items, "MIGRATIONS", pg_items.MIGRATIONS[:1])
        patch.setattr(pg_items, "SCHEMA_VERSION", 1)
        patch.setattr(pg_vectors, "vector_rows", lambda puts: [])
        async with opened(pg_plain) as store:
            await store.items.write(_writes(50))
    async with opened(pg_plain) as store:
        assert _vector_rows(store) == sum(len(w.vectors or {}) for w in _writes(50))


# --------------------------------------------------------------------------- shared


async def _index_follows_writes(store: Store, *, sweep_clock: bool) -> None:
    """Overwrites replace an item's vectors, deletes and sweeps remove them, and the ranking
    follows (checked against the exact search each time)."""
    items = store.items
    now = [1_000_000.0]
    items.clock = lambda: now[0]
    ns = ("idx",)
    east, north = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    await items.write(
        [
            ItemWrite(ns, "a", {"v": 1}, None, {"t": east}),
            ItemWrite(ns, "b", {"v": 2}, None, {"t": north, "u": [0.0, 0.0, 1.0]}),
        ]
    )
    before = _vector_rows(store)

    async def ranking() -> list[tuple[str, float | None]]:
        found = await items.nearest(ns, east, limit=10)
        _same(found, await exact_nearest(items, ns, east, [], 10, 0))
        return [(item.key, None if score is None else round(score, 4)) for score, item in found]

    assert await ranking() == [("a", 1.0), ("b", 0.0)]
    await items.write([ItemWrite(ns, "b", {"v": 3}, None, {"t": east})])  # overwrite: new vectors
    assert _vector_rows(store) == before - 1
    assert [key for key, _ in await ranking()] == ["b", "a"]  # tie: newest first
    await items.write([ItemWrite(ns, "a", {"v": 4})])  # overwrite without vectors
    assert await ranking() == [("b", 1.0), ("a", None)]
    assert _vector_rows(store) == before - 2
    await items.write([ItemWrite(ns, "b", None)])  # delete
    assert await ranking() == [("a", None)]
    assert _vector_rows(store) == before - 3
    if sweep_clock:
        await items.write([ItemWrite(ns, "c", {"v": 5}, 60.0, {"t": north})])
        assert ("c", 0.0) in await ranking()
        now[0] += 61  # expired: never returned, then swept with its vectors
        assert await ranking() == [("a", None)]
        assert await items.sweep() == 1
        assert _vector_rows(store) == before - 3


async def test_sqlite_vec_search_leaves_a_corrupt_record_out(tmp_path: Path) -> None:
    url = _sqlite_url(tmp_path)
    async with opened(url) as store:
        rnd = random.Random(8)
        query = _vector(rnd)
        await store.items.write(
            [ItemWrite(("c",), f"k{i}", {"i": i}, None, {"v": _vector(rnd)}) for i in range(6)]
            + [ItemWrite(("c",), "plain", {"i": -1})]
        )
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:  # damaged behind the store's back
            conn.execute("UPDATE items SET value = 'not json' WHERE key IN ('k2', 'plain')")
        found = await store.items.nearest(("c",), query, limit=10)
    assert store.items.native_vectors == "sqlite-vec"
    assert sorted(item.key for _, item in found) == ["k0", "k1", "k3", "k4", "k5"]
    assert all(score is not None for score, _ in found)
