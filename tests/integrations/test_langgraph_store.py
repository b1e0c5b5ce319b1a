"""RelayStore against LangGraph's BaseStore contract, on memory, sqlite and postgres.

Covers the cases of upstream's ``libs/checkpoint/tests/test_store.py`` (namespaces listing with
prefix/suffix/wildcards/depth/pagination, namespace validation, async batching and its
deduplication and cancellation, semantic search with filters, paths, pagination and non-ASCII
text), in our own words, plus what the issue adds: batch isolation, numeric filters (#7684),
TTL with a controllable clock, the sweeper, sync and async use of one instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchOp,
)
from langgraph.store.base.batch import AsyncBatchedBaseStore

from relaystore.errors import InvalidInput
from relaystore.integrations.langgraph_store import RelayStore
from tests.integrations.store_backends import MakeStore, backend_url
from tests.support.embeddings import LetterEmbeddings

TREE = [
    ("a", "b", "c"),
    ("a", "b", "d", "e"),
    ("a", "b", "d", "i"),
    ("a", "b", "f"),
    ("a", "c", "f"),
    ("b", "a", "f"),
    ("users", "123"),
    ("users", "456", "settings"),
    ("admin", "users", "789"),
]


def fill(store: RelayStore, namespaces: Iterable[tuple[str, ...]]) -> None:
    for i, ns in enumerate(namespaces):
        store.put(ns, f"id_{i}", {"data": f"value_{i:02d}"})


class Batched(AsyncBatchedBaseStore):
    """LangGraph's own batching front (as AsyncPostgresStore uses) over a RelayStore."""

    def __init__(self, inner: RelayStore) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[list[Op]] = []

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self.inner.batch(ops)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        self.calls.append(ops)
        return await self.inner.abatch(ops)


# ------------------------------------------------------------------ list_namespaces


def test_list_namespaces_prefix_suffix_depth_and_pages(make: MakeStore) -> None:
    store = make()
    fill(store, TREE)
    under_ab = [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f")]
    assert store.list_namespaces(prefix=("a", "b")) == under_ab
    assert store.list_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert store.list_namespaces(prefix=("a",), suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
    assert store.list_namespaces(prefix=("a", "b"), max_depth=3) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "b", "f"),
    ]
    assert store.list_namespaces(prefix=("a", "b"), limit=2) == under_ab[:2]
    assert store.list_namespaces(prefix=("a", "b"), offset=2) == under_ab[2:]
    assert store.list_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
    assert store.list_namespaces(suffix=("*", "f")) == [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert store.list_namespaces(prefix=("nonexistent",)) == []
    assert store.list_namespaces(prefix=("users", "123")) == [("users", "123")]
    assert store.list_namespaces() == sorted(TREE)


def test_list_namespaces_wildcards(make: MakeStore) -> None:
    store = make()
    fill(
        store,
        [
            ("users", "123"),
            ("users", "456"),
            ("users", "789", "settings"),
            ("admin", "users", "789"),
            ("guests", "123"),
            ("guests", "456", "preferences"),
        ],
    )
    assert store.list_namespaces(prefix=("users", "*")) == [
        ("users", "123"),
        ("users", "456"),
        ("users", "789", "settings"),
    ]
    assert store.list_namespaces(suffix=("*", "preferences")) == [("guests", "456", "preferences")]
    assert store.list_namespaces(prefix=("*", "users"), suffix=("*", "settings")) == []
    store.put(("admin", "users", "settings", "789"), "foo", {"data": "x"})
    assert store.list_namespaces(prefix=("*", "users"), suffix=("settings", "*")) == [
        ("admin", "users", "settings", "789")
    ]


def test_list_namespaces_pagination_depth_and_empty(make: MakeStore) -> None:
    store = make()
    assert store.list_namespaces() == []
    fill(store, [("namespace", f"sub_{i:02d}") for i in range(20)])
    for offset in (0, 5, 15):
        page = store.list_namespaces(prefix=("namespace",), limit=5, offset=offset)
        assert page == [("namespace", f"sub_{i:02d}") for i in range(offset, offset + 5)]
    other = make()
    fill(
        other, [("a", "b", "c", "d"), ("a", "b", "c", "e"), ("a", "b", "f"), ("a", "g"), ("h", "i", "j", "k")]
    )
    assert other.list_namespaces(max_depth=2) == [("a", "b"), ("a", "g"), ("h", "i")]
    assert other.list_namespaces(max_depth=0) == [()]


def test_empty_namespaces_are_not_listed(make: MakeStore) -> None:
    store = make()
    store.put(("docs", "x"), "k", {"v": 1})
    store.put(("docs", "y"), "k", {"v": 1})
    assert store.get(("never", "written"), "k") is None
    store.delete(("docs", "x"), "k")
    assert store.list_namespaces() == [("docs", "y")]


def test_several_conditions_of_one_kind_are_anded(make: MakeStore) -> None:
    store = make()
    fill(store, TREE)
    op = ListNamespacesOp(
        match_conditions=(MatchCondition("prefix", ("a",)), MatchCondition("prefix", ("*", "b"))), limit=10
    )
    assert store.batch([op]) == [
        [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f")]
    ]


# ------------------------------------------------------------------ namespaces


async def test_namespace_rules(make: MakeStore) -> None:
    store = make()
    doc = {"foo": "bar"}
    for bad in [(), ("the", "thing.about"), ("some", "fun", ""), ("langgraph", "foo"), ("nul\x00",)]:
        with pytest.raises(InvalidNamespaceError):
            store.put(bad, "foo", doc)
        with pytest.raises(InvalidNamespaceError):
            await store.aput(bad, "foo", doc)
    ns = ("foo", "langgraph", "foo")  # "langgraph" below the root is fine
    await store.aput(ns, "bar", doc)
    assert (await store.aget(ns, "bar")).value == doc  # type: ignore[union-attr]
    assert (await store.asearch(ns, query="bar"))[0].value == doc
    await store.adelete(ns, "bar")
    assert await store.aget(ns, "bar") is None
    # Ops given straight to batch skip the wrappers: a "langgraph" root is then allowed …
    store.batch([PutOp(("langgraph", "foo"), "bar", doc)])
    assert store.get(("langgraph", "foo"), "bar").value == doc  # type: ignore[union-attr]
    assert store.search(("langgraph", "foo"))[0].value == doc
    # … but a dotted label still cannot alias a deeper namespace.
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp(("a.b",), "k", doc)])
    with pytest.raises(InvalidNamespaceError):
        await store.abatch([GetOp(("a.b",), "k")])
    with pytest.raises(InvalidInput):
        store.batch([PutOp((), "k", doc)])


def test_prefix_matches_whole_labels_and_like_characters_are_literal(make: MakeStore) -> None:
    store = make()
    store.put(("foo",), "a", {"v": 1})
    store.put(("foobar",), "b", {"v": 2})
    store.put(("foo", "x"), "c", {"v": 3})
    store.put(("a%",), "d", {"v": 4})
    store.put(("ab",), "e", {"v": 5})
    store.put(("a_",), "f", {"v": 6})
    assert sorted(i.key for i in store.search(("foo",))) == ["a", "c"]
    assert [i.key for i in store.search(("a%",))] == ["d"]
    assert [i.key for i in store.search(("a_",))] == ["f"]
    assert len(store.search(())) == 6


# ------------------------------------------------------------------ batches


def test_batch_reads_see_the_state_before_its_writes(make: MakeStore) -> None:
    store = make()
    ns = ("t",)
    store.put(ns, "k", {"v": 0})
    results = store.batch(
        [
            PutOp(ns, "k", {"v": 1}),
            GetOp(ns, "k"),
            SearchOp(ns, filter={"v": 0}),
            PutOp(ns, "k", {"v": 2}),
            PutOp(ns, "new", {"v": 9}),
            ListNamespacesOp(),
            GetOp(ns, "new"),
        ]
    )
    assert results[0] is None and results[3] is None
    assert results[1].value == {"v": 0}  # type: ignore[union-attr]
    assert [i.value for i in results[2]] == [{"v": 0}]  # type: ignore[union-attr]
    assert results[5] == [ns]
    assert results[6] is None
    assert store.get(ns, "k").value == {"v": 2}  # type: ignore[union-attr]  # last put wins
    assert store.get(ns, "new").value == {"v": 9}  # type: ignore[union-attr]


def test_put_then_delete_in_one_batch_deletes(make: MakeStore) -> None:
    store = make()
    store.batch([PutOp(("t",), "k", {"v": 1}), PutOp(("t",), "k", None)])
    assert store.get(("t",), "k") is None
    assert store.list_namespaces() == []


def test_created_at_kept_updated_at_advances(make: MakeStore) -> None:
    store = make()
    store.put(("t",), "k", {"v": 1})
    first = store.get(("t",), "k")
    store.put(("t",), "k", {"v": 2})
    second = store.get(("t",), "k")
    assert first is not None and second is not None
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert second.created_at.tzinfo is not None


def test_returned_values_are_copies(make: MakeStore) -> None:
    store = make()
    store.put(("t",), "k", {"list": [1]})
    got = store.get(("t",), "k")
    assert got is not None
    got.value["list"].append(2)
    assert store.get(("t",), "k").value == {"list": [1]}  # type: ignore[union-attr]


def test_values_that_are_not_json_are_refused(make: MakeStore) -> None:
    store = make()
    with pytest.raises(InvalidInput):
        store.put(("t",), "k", {"n": float("nan")})
    with pytest.raises(InvalidInput):
        store.put(("t",), "k", {"o": object()})
    assert store.search(()) == []


# ------------------------------------------------------------------ filters


def test_numbers_compare_as_numbers_langgraph_7684(make: MakeStore) -> None:
    store = make()
    for n in (9, 10, 100):
        store.put(("n",), f"k{n}", {"n": n})
    assert [i.value["n"] for i in store.search(("n",), filter={"n": {"$gt": 50}})] == [100]
    assert sorted(i.value["n"] for i in store.search(("n",), filter={"n": {"$lte": 10}})) == [9, 10]
    assert sorted(i.value["n"] for i in store.search(("n",), filter={"n": {"$gte": 9.5, "$lt": 100}})) == [10]


def test_strings_compare_as_strings_and_other_types_never_match(make: MakeStore) -> None:
    store = make()
    values: list[Any] = [9, "100", "abc", True, None, [1], {"x": 1}]
    for i, v in enumerate(values):
        store.put(("m",), f"k{i}", {"n": v})
    store.put(("m",), "missing", {"other": 1})

    def keys(filter: dict[str, Any]) -> list[str]:
        return sorted(i.key for i in store.search(("m",), filter=filter))

    assert keys({"n": {"$gt": 5}}) == ["k0"]
    assert keys({"n": {"$gt": "5"}}) == ["k2"]
    assert keys({"n": {"$lt": "b"}}) == ["k1", "k2"]
    assert keys({"n": True}) == ["k3"]
    assert keys({"n": 1}) == []  # true is not 1
    assert keys({"n": None}) == ["k4"]
    assert keys({"n": {"$ne": 9}}) == ["k1", "k2", "k3", "k4", "k5", "k6"]  # missing key: no match
    assert keys({"n": [1]}) == ["k5"]
    assert keys({"n": {"x": 1}}) == ["k6"]


def test_nested_and_multiple_filters(make: MakeStore) -> None:
    store = make()
    store.put(("p",), "a", {"user": {"id": 7, "tags": ["x", "y"]}, "kind": "note", "score": 4.5})
    store.put(("p",), "b", {"user": {"id": 8, "tags": ["x"]}, "kind": "note", "score": 3.0})
    store.put(("p",), "c", {"user.id": 7, "kind": "fact"})
    assert [i.key for i in store.search(("p",), filter={"user": {"id": 7}})] == ["a"]
    assert [i.key for i in store.search(("p",), filter={"user": {"tags": ["x"]}})] == ["b"]
    assert [i.key for i in store.search(("p",), filter={"user.id": 7})] == ["c"]  # dotted key is literal
    found = store.search(("p",), filter={"kind": "note", "score": {"$gte": 4}})
    assert [i.key for i in found] == ["a"]
    with pytest.raises(ValueError, match="Unsupported operator"):
        store.search(("p",), filter={"kind": {"$in": ["note"]}})


def test_search_order_and_pagination(make: MakeStore) -> None:
    store = make()
    for i in range(7):
        store.put(("s",), f"k{i}", {"i": i})
    store.put(("s",), "k2", {"i": 2, "touched": True})
    listed = [i.key for i in store.search(("s",), limit=100)]
    assert listed == ["k2", "k6", "k5", "k4", "k3", "k1", "k0"]  # most recently updated first
    pages = [[i.key for i in store.search(("s",), limit=3, offset=o)] for o in (0, 3, 6)]
    assert [key for page in pages for key in page] == listed
    assert store.search(("s",), limit=0) == []
    assert all(i.score is None for i in store.search(("s",), query="anything"))


# ------------------------------------------------------------------ sync and async on one instance


async def test_sync_and_async_calls_share_one_instance(make: MakeStore) -> None:
    store = make()
    store.put(("mix",), "sync", {"v": 1})  # a sync call inside a running event loop
    await store.aput(("mix",), "async", {"v": 2})
    assert (await store.aget(("mix",), "sync")).value == {"v": 1}  # type: ignore[union-attr]
    assert store.get(("mix",), "async").value == {"v": 2}  # type: ignore[union-attr]
    results = await asyncio.gather(*(store.aput(("mix",), f"g{i}", {"i": i}) for i in range(20)))
    assert results == [None] * 20
    assert len(await asyncio.to_thread(store.search, ("mix",), limit=100)) == 22


async def test_from_url_context_managers(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'cm.db'}"
    async with RelayStore.from_url(url) as store:
        await store.aput(("cm",), "k", {"v": 1})
    with RelayStore.from_url_sync(url) as again:
        assert again.get(("cm",), "k").value == {"v": 1}  # type: ignore[union-attr]
    with pytest.raises(asyncio.InvalidStateError):
        again.get(("cm",), "k")


async def test_from_url_serves_the_callers_loop_directly(backend: str, tmp_path: Any) -> None:
    url, cleanup = backend_url(backend, tmp_path)
    try:
        async with RelayStore.from_url(url) as store:
            assert (store._local is None) == (backend == "memory")
            await store.aput(("x",), "async", {"v": 1})  # on this loop, straight to the backend
            got = await asyncio.to_thread(store.get, ("x",), "async")  # the private loop sees it
            assert got is not None and got.value == {"v": 1}
            await asyncio.to_thread(store.put, ("x",), "sync", {"v": 2})
            assert (await store.aget(("x",), "sync")).value == {"v": 2}  # type: ignore[union-attr]
            assert [i.key for i in await store.asearch(("x",), filter={"v": {"$gt": 1}})] == ["sync"]
        assert store._local is None
    finally:
        cleanup()


async def test_an_opened_store_is_used_on_its_own_loop(tmp_path: Any) -> None:
    import relaystore

    async with relaystore.connect(f"sqlite:///{tmp_path / 'own.db'}") as opened:
        store = RelayStore(opened)
        await store.aput(("own",), "k", {"v": 1})
        assert (await store.aget(("own",), "k")).value == {"v": 1}  # type: ignore[union-attr]
        with pytest.raises(asyncio.InvalidStateError, match="deadlock"):
            store.get(("own",), "k")
        assert (await asyncio.to_thread(store.get, ("own",), "k")).value == {"v": 1}  # type: ignore[union-attr]
        store.close()
        assert not opened.closed  # a store it did not open stays open


async def test_an_opened_memory_store_also_serves_sync_calls_on_its_loop() -> None:
    import relaystore

    async with relaystore.connect("memory://") as opened:
        store = RelayStore(opened)
        store.put(("own",), "k", {"v": 1})  # runs inline: the memory face never suspends
        assert (await store.aget(("own",), "k")).value == {"v": 1}  # type: ignore[union-attr]


# ------------------------------------------------------------------ LangGraph's batching front


async def test_batched_front_groups_and_dedupes(make: MakeStore) -> None:
    front = Batched(make())
    await asyncio.gather(
        front.aput(("test",), "same", {"value": "same"}), front.aput(("test",), "diff", {"value": "d"})
    )
    front.calls.clear()
    results = await asyncio.gather(
        front.aget(("test",), "same"), front.aget(("test",), "same"), front.aget(("test",), "diff")
    )
    assert results[0] == results[1] != results[2]
    assert len(front.calls) == 1 and len(front.calls[0]) == 2
    front.calls.clear()
    await asyncio.gather(
        front.aput(("test",), "key", {"value": 1}), front.aput(("test",), "key", {"value": 2})
    )
    assert front.calls == [[PutOp(("test",), "key", {"value": 2})]]
    assert (await front.aget(("test",), "key")).value == {"value": 2}  # type: ignore[union-attr]
    front.calls.clear()
    found = await asyncio.gather(*(front.asearch(("test",), filter={"value": 2}) for _ in range(2)))
    assert len(front.calls) == 1 and len(front.calls[0]) == 1
    assert [i.key for i in found[0]] == ["key"] == [i.key for i in found[1]]


async def test_batched_front_survives_cancellation(make: MakeStore) -> None:
    front = Batched(make())
    await front.aput(("c",), "k", {"v": 1})
    task = asyncio.create_task(front.aget(("c",), "k"))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert (await front.aget(("c",), "k")).value == {"v": 1}  # type: ignore[union-attr]
    assert front._task is not None
    front._task.cancel()
    await asyncio.sleep(0.01)
    assert (await front.asearch(("c",)))[0].value == {"v": 1}


# ------------------------------------------------------------------ semantic search


def embeddings() -> LetterEmbeddings:
    return LetterEmbeddings(dims=128)


def test_index_config_is_kept(make: MakeStore) -> None:
    model = embeddings()
    store = make(index={"dims": 128, "embed": model})
    assert store.index_config is not None and store.index_config["dims"] == 128
    assert store.embeddings is not None


async def test_vector_insert_update_and_opt_out(make: MakeStore) -> None:
    store = make(index={"dims": 128, "embed": embeddings(), "fields": ["text"]})
    for key, text in [
        ("d1", "zany zebra Xerxes"),
        ("d2", "something about dogs"),
        ("d3", "text about birds"),
    ]:
        await store.aput(("v",), key, {"text": text})
    first = await store.asearch(("v",), query="zany zebra Xerxes")
    assert first[0].key == "d1" and first[0].score == pytest.approx(1.0, abs=1e-3)
    await store.aput(("v",), "d1", {"text": "new text about dogs"})
    after = {i.key: i.score for i in await store.asearch(("v",), query="zany zebra Xerxes")}
    assert after["d1"] is not None and after["d1"] < first[0].score  # type: ignore[operator]
    store.put(("v",), "d4", {"text": "new text about dogs"}, index=False)
    top = store.search(("v",), query="new text about dogs", limit=2)
    assert top[0].key == "d1" and "d4" not in [i.key for i in top]
    everything = store.search(("v",), query="new text about dogs", limit=10)
    assert everything[-1].key == "d4" and everything[-1].score is None  # unembedded come last


def test_vector_search_with_filters(make: MakeStore) -> None:
    store = make(index={"dims": 128, "embed": embeddings()})
    for key, value in [
        ("doc1", {"text": "red apple", "color": "red", "score": 4.5}),
        ("doc2", {"text": "red car", "color": "red", "score": 3.0}),
        ("doc3", {"text": "green apple", "color": "green", "score": 4.0}),
        ("doc4", {"text": "blue car", "color": "blue", "score": 3.5}),
    ]:
        store.put(("test",), key, value)
    assert [i.key for i in store.search(("test",), query="apple", filter={"color": "red"})] == [
        "doc1",
        "doc2",
    ]
    assert [i.key for i in store.search(("test",), query="car", filter={"color": "red"})] == ["doc2", "doc1"]
    assert len(store.search(("test",), query="blue", filter={"score": {"$gt": 3.2}})) == 3
    both = store.search(("test",), query="apple", filter={"score": {"$gte": 4.0}, "color": "green"})
    assert [i.key for i in both] == ["doc3"]


async def test_concurrent_vector_searches_through_the_batching_front(make: MakeStore) -> None:
    front = Batched(make(index={"dims": 128, "embed": embeddings()}))
    colors, things = ["red", "blue", "green", "yellow", "purple"], ["apple", "car", "house", "book", "phone"]
    docs = [
        (f"doc{i}", {"text": f"{colors[i % 5]} {things[i % 5]}", "color": colors[i % 5], "i": i})
        for i in range(30)
    ]
    await asyncio.gather(
        *[front.aput(("t",), k, v) for k, v in docs],
        *[front.adelete(("t",), k) for k, _ in docs],
        *[front.aput(("t",), k, v) for k, v in docs],
    )
    queries: list[tuple[str, dict[str, Any]]] = [("apple", {"color": "red"}), ("house", {"i": {"$gt": 25}})]
    results = await asyncio.gather(*(front.asearch(("t",), query=q, filter=f) for q, f in queries))
    assert results[0] and all(r.value["color"] == "red" for r in results[0])
    assert sorted(r.value["i"] for r in results[1]) == [26, 27, 28, 29]


async def test_vector_search_pagination(make: MakeStore) -> None:
    store = make(index={"dims": 128, "embed": embeddings()})
    for i in range(5):
        await store.aput(("p",), f"doc{i}", {"text": f"test document number {i}"})
    first, second = (
        store.search(("p",), query="test", limit=2),
        store.search(("p",), query="test", limit=2, offset=2),
    )
    assert len(first) == len(second) == 2
    assert {i.key for i in first}.isdisjoint(i.key for i in second)
    assert len(await store.asearch(("p",), query="test", limit=10)) == 5


async def test_embedding_paths_store_level_and_per_put(make: MakeStore) -> None:
    store = make(index={"dims": 128, "embed": embeddings(), "fields": ["key0", "key1", "key3"]})
    await store.aput(("t",), "doc1", {"key1": "xxx", "key2": "yyy", "key3": "zzz"})  # key0 missing: fine
    await store.aput(("t",), "doc2", {"key0": "uuu", "key1": "vvv", "key2": "www", "key3": "xxx"})
    best = await store.asearch(("t",), query="xxx")
    assert {i.key for i in best} == {"doc1", "doc2"}
    assert best[0].score == pytest.approx(best[1].score, abs=1e-5) == pytest.approx(1.0, abs=1e-3)
    assert (await store.asearch(("t",), query="uuu"))[0].key == "doc2"
    assert all(i.score is not None and i.score < 0.99 for i in await store.asearch(("t",), query="www"))

    per_put = make(index={"dims": 128, "embed": embeddings(), "fields": ["key17"]})
    await per_put.aput(("t",), "doc3", {"key0": "aaa", "key1": "bbb", "key2": "ccc"}, index=["key0", "key1"])
    await per_put.aput(("t",), "doc4", {"key0": "eee", "key1": "bbb", "key3": "ggg"}, index=["key1", "key3"])
    assert (await per_put.asearch(("t",), query="aaa"))[0].key == "doc3"
    assert (await per_put.asearch(("t",), query="ggg"))[0].key == "doc4"
    tie = await per_put.asearch(("t",), query="bbb")
    assert tie[0].score == pytest.approx(tie[1].score)
    await per_put.aput(("t",), "doc5", {"key0": "hhh"}, index=False)
    found = {i.key: i.score for i in await per_put.asearch(("t",), query="hhh")}
    assert len(found) == 3 and found["doc5"] is None


def test_non_ascii_text(make: MakeStore) -> None:
    store = make(index={"dims": 128, "embed": embeddings()})
    texts = ["这是中文", "これは日本語です", "이건 한국어야", "Это русский", "यह रूसी है"]
    for i, text in enumerate(texts, 1):
        store.put(("user_123", "memories"), str(i), {"text": text})
    for i, text in enumerate(texts, 1):
        assert store.search(("user_123", "memories"), query=text)[0].key == str(i)
