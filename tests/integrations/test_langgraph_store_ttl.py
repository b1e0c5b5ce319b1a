"""RelayStore TTL (minutes, as LangGraph) with a controllable clock, the self-running sweeper, and
four processes writing one SQLite store."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from relaystore.integrations.langgraph_store import RelayStore
from tests.integrations.store_backends import MakeStore

START = 1_800_000_000.0


class Clock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def stored(store: RelayStore, *, include_expired: bool) -> int:
    """Rows in the store, expired-but-unswept ones too if asked (the item face's count)."""
    return store._run_sync(store.items.count(include_expired=include_expired))


def test_ttl_expires_and_reads_refresh(make: MakeStore) -> None:
    clock = Clock()
    store = make(clock=clock)
    store.put(("t",), "k", {"v": 1}, ttl=1)  # one minute
    clock.advance(50)
    assert store.get(("t",), "k") is not None  # refreshes: now expires 60 s from here
    clock.advance(50)
    assert store.get(("t",), "k", refresh_ttl=False) is not None  # 100 s after the put: alive
    clock.advance(15)  # 65 s after the refresh
    assert store.get(("t",), "k") is None
    assert store.search(("t",)) == []
    assert store.list_namespaces() == []
    assert stored(store, include_expired=True) == 1  # not swept yet, but never shown


def test_search_refreshes_and_refresh_false_does_not(make: MakeStore) -> None:
    clock = Clock()
    store = make(clock=clock)
    store.put(("s",), "a", {"v": 1}, ttl=1)
    store.put(("s",), "b", {"v": 2}, ttl=1)
    clock.advance(40)
    assert len(store.search(("s",), filter={"v": 1})) == 1  # refreshes a only
    assert len(store.search(("s",), refresh_ttl=False)) == 2
    clock.advance(30)
    assert [i.key for i in store.search(("s",))] == ["a"]


def test_an_expired_item_is_not_resurrected_by_a_read(make: MakeStore) -> None:
    clock = Clock()
    store = make(clock=clock)
    store.put(("r",), "k", {"v": 1}, ttl=0.5)
    first = store.get(("r",), "k")
    clock.advance(31)
    assert store.get(("r",), "k") is None  # a refreshing read of an expired item
    assert store.search(("r",)) == []
    clock.advance(-20)  # had the read refreshed it, it would be alive again here
    clock.advance(20)
    assert store.get(("r",), "k") is None
    store.put(("r",), "k", {"v": 2})
    again = store.get(("r",), "k")
    assert first is not None and again is not None
    assert again.created_at > first.created_at  # a new item, not the expired one updated


def test_default_ttl_and_explicit_none(make: MakeStore) -> None:
    clock = Clock()
    store = make(clock=clock, ttl={"default_ttl": 2, "refresh_on_read": False})
    store.put(("d",), "defaulted", {"v": 1})
    store.put(("d",), "forever", {"v": 2}, ttl=None)
    clock.advance(90)
    assert store.get(("d",), "defaulted") is not None  # refresh_on_read False: not extended
    clock.advance(40)
    assert store.get(("d",), "defaulted") is None
    assert store.get(("d",), "forever") is not None


def test_put_replaces_the_ttl(make: MakeStore) -> None:
    clock = Clock()
    store = make(clock=clock)
    store.put(("p",), "k", {"v": 1}, ttl=1)
    store.put(("p",), "k", {"v": 2}, ttl=None)
    clock.advance(3600)
    assert store.get(("p",), "k").value == {"v": 2}  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        store.put(("p",), "k", {"v": 3}, ttl=-1)


def test_the_sweeper_runs_by_itself(make: MakeStore) -> None:
    clock = Clock()
    store = make(clock=clock, ttl={"sweep_interval_minutes": 0.002})  # every 0.12 s
    store.put(("w",), "short", {"v": 1}, ttl=1)
    store.put(("w",), "long", {"v": 2}, ttl=10)
    clock.advance(120)
    deadline = time.monotonic() + 10
    while stored(store, include_expired=True) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored(store, include_expired=True) == 1
    assert store.get(("w",), "long") is not None


def test_a_put_with_ttl_starts_the_sweeper_without_a_ttl_config(make: MakeStore) -> None:
    store = make(clock=Clock())
    store.put(("n",), "k", {"v": 1})
    assert store._sweeper is None
    store.put(("n",), "k2", {"v": 1}, ttl=1)
    assert store._sweeper is not None and not store._sweeper.done()


def test_sweep_ttl_by_hand(make: MakeStore) -> None:
    clock = Clock()
    store = make(clock=clock)
    store.put(("h",), "k", {"v": 1}, ttl=1)
    assert store.sweep_ttl() == 0
    clock.advance(61)
    assert store.sweep_ttl() == 1
    assert stored(store, include_expired=True) == 0


# ------------------------------------------------------------------ four processes, one file

WORKERS = 4
PUTS = 40


def _writer(url: str, worker: int) -> list[str]:
    errors = []
    with RelayStore.from_url_sync(url) as store:
        for i in range(PUTS):
            try:
                store.put(("shared", f"w{worker}"), f"k{i}", {"worker": worker, "i": i})
                store.put(("shared", "common"), f"k{i % 5}", {"worker": worker, "i": i})
            except Exception as exc:  # reported to the parent, which fails the test
                errors.append(repr(exc))
    return errors


def test_four_processes_put_to_one_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"  # a new file: the four also race to create the table
    context = multiprocessing.get_context("spawn")
    with context.Pool(WORKERS) as pool:
        reports = pool.starmap(_writer, [(url, w) for w in range(WORKERS)])
    assert reports == [[]] * WORKERS
    with RelayStore(url) as store:
        for worker in range(WORKERS):
            items = store.search(("shared", f"w{worker}"), limit=1000)
            assert sorted(i.value["i"] for i in items) == list(range(PUTS))
        assert len(store.search(("shared", "common"), limit=100)) == 5
        assert len(store.list_namespaces(prefix=("shared",))) == WORKERS + 1
