"""Conformance of ``store.checkpoints`` (rust-ai-agents' CheckpointStore plus pagination and CAS)."""

from __future__ import annotations

import logging

import pytest

from relaystore.errors import (
    CheckpointNotFound,
    Conflict,
    CorruptRecord,
    InvalidInput,
    NotFound,
    ThreadNotFound,
)
from relaystore.models import CheckpointMetadata
from relaystore.stores import Store
from relaystore.testing.docs import all_pages, checkpoint, chunked, corrupt_or_skip

HOSTILE_OK = ["thread ünïcødé ✓ 🧵", "a:b:c", "a/b/../c", "{tag}", "..", " spaced  out ", "x" * 1024]
HOSTILE_BAD = ["", "a\x00b", "é" * 513]  # 513 two-byte characters = 1026 UTF-8 bytes


async def save_steps(store: Store, thread: str, count: int, prefix: str = "c") -> list[str]:
    ids = []
    for step in range(count):
        ids.append(
            await store.checkpoints.save(thread, checkpoint(thread, f"{prefix}{step}", step), b"s%d" % step)
        )
    return ids


# --------------------------------------------------------------------------- save / load


async def test_save_then_load_round_trips_metadata_and_state(store: Store) -> None:
    metadata = checkpoint("t1", "c1", step=4).with_parent("c0").with_custom("k", "v")
    returned = await store.checkpoints.save("t1", metadata, b"\x00\xffraw bytes")
    loaded = await store.checkpoints.load("t1", "c1")
    assert returned == "c1"
    assert loaded.state == b"\x00\xffraw bytes"
    assert loaded.metadata == metadata.model_copy(update={"state_size": 11})


async def test_load_returns_an_unpackable_pair(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"abc")
    metadata, state = await store.checkpoints.load("t1", "c1")
    assert (metadata.id, state) == ("c1", b"abc")


async def test_state_size_is_set_by_the_store(store: Store) -> None:
    lying = checkpoint("t1", "c1").model_copy(update={"state_size": 999})
    await store.checkpoints.save("t1", lying, b"12345")
    assert (await store.checkpoints.load("t1", "c1")).metadata.state_size == 5
    assert (await store.checkpoints.list("t1"))[0].state_size == 5


async def test_state_accepts_bytearray_and_memoryview(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "a"), bytearray(b"xy"))
    await store.checkpoints.save("t1", checkpoint("t1", "b"), memoryview(b"zw"))
    assert (await store.checkpoints.load("t1", "a")).state == b"xy"
    assert (await store.checkpoints.load("t1", "b")).state == b"zw"


async def test_empty_state_round_trips(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"")
    loaded = await store.checkpoints.load("t1", "c1")
    assert (loaded.state, loaded.metadata.state_size) == (b"", 0)


async def test_metadata_thread_mismatch_is_invalid_and_writes_nothing(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.checkpoints.save("t1", checkpoint("t2", "c1"), b"")
    assert await store.checkpoints.count("t1") == 0
    assert await store.checkpoints.count("t2") == 0


@pytest.mark.parametrize("state", ["text", None, 3, [1]])
async def test_state_must_be_bytes(store: Store, state: object) -> None:
    with pytest.raises(InvalidInput):
        await store.checkpoints.save("t1", checkpoint("t1", "c1"), state)  # type: ignore[arg-type]
    assert await store.checkpoints.count("t1") == 0


async def test_metadata_must_be_a_model(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.checkpoints.save("t1", {"id": "c1", "thread_id": "t1"}, b"")  # type: ignore[arg-type]


async def test_duplicate_id_in_thread_conflicts_and_keeps_the_first(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "c1", step=1), b"first")
    with pytest.raises(Conflict):
        await store.checkpoints.save("t1", checkpoint("t1", "c1", step=2), b"second")
    loaded = await store.checkpoints.load("t1", "c1")
    assert (loaded.state, loaded.metadata.step) == (b"first", 1)
    assert await store.checkpoints.count("t1") == 1


async def test_same_id_in_two_threads_is_fine(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"one")
    await store.checkpoints.save("t2", checkpoint("t2", "c1"), b"two")
    assert (await store.checkpoints.load("t1", "c1")).state == b"one"
    assert (await store.checkpoints.load("t2", "c1")).state == b"two"


async def test_unknown_thread_vs_unknown_checkpoint(store: Store) -> None:
    with pytest.raises(ThreadNotFound):
        await store.checkpoints.load("nowhere", "c1")
    await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"")
    with pytest.raises(CheckpointNotFound) as info:
        await store.checkpoints.load("t1", "missing")
    assert not isinstance(info.value, ThreadNotFound)
    assert isinstance(info.value, NotFound) and isinstance(info.value, KeyError)
    assert "missing" in str(info.value)


async def test_load_latest_is_the_last_saved_not_the_highest_step(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "late", step=9), b"9")
    await store.checkpoints.save("t1", checkpoint("t1", "early", step=1), b"1")
    latest = await store.checkpoints.load_latest("t1")
    assert (latest.metadata.id, latest.state) == ("early", b"1")
    assert await store.checkpoints.head("t1") == "early"


async def test_load_latest_of_unknown_thread(store: Store) -> None:
    with pytest.raises(ThreadNotFound):
        await store.checkpoints.load_latest("nowhere")
    assert await store.checkpoints.head("nowhere") is None


# --------------------------------------------------------------------------- compare-and-set


async def test_expected_head_none_on_empty_thread_saves(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"", expected_head=None)
    assert await store.checkpoints.head("t1") == "c1"


async def test_expected_head_none_on_non_empty_thread_conflicts(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"")
    with pytest.raises(Conflict):
        await store.checkpoints.save("t1", checkpoint("t1", "c2"), b"", expected_head=None)
    assert [m.id for m in await store.checkpoints.list("t1")] == ["c1"]


async def test_expected_head_current_saves(store: Store) -> None:
    await save_steps(store, "t1", 2)
    head = await store.checkpoints.head("t1")
    await store.checkpoints.save("t1", checkpoint("t1", "c2"), b"", expected_head=head)
    assert await store.checkpoints.head("t1") == "c2"


async def test_stale_expected_head_conflicts_and_writes_nothing(store: Store) -> None:
    await save_steps(store, "t1", 2)
    with pytest.raises(Conflict):
        await store.checkpoints.save("t1", checkpoint("t1", "c9"), b"", expected_head="c0")
    with pytest.raises(Conflict):
        await store.checkpoints.save("t1", checkpoint("t1", "c9"), b"", expected_head="never-saved")
    assert [m.id for m in await store.checkpoints.list("t1")] == ["c0", "c1"]
    with pytest.raises(CheckpointNotFound):
        await store.checkpoints.load("t1", "c9")


async def test_expected_head_on_empty_thread_conflicts(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"", expected_head="c0")
    assert await store.checkpoints.count("t1") == 0
    assert "t1" not in await store.checkpoints.list_threads()


async def test_cas_follows_the_head_after_delete(store: Store) -> None:
    await save_steps(store, "t1", 3)
    assert await store.checkpoints.delete("t1", "c2")
    assert await store.checkpoints.head("t1") == "c1"
    with pytest.raises(Conflict):
        await store.checkpoints.save("t1", checkpoint("t1", "x"), b"", expected_head="c2")
    await store.checkpoints.save("t1", checkpoint("t1", "x"), b"", expected_head="c1")


async def test_cas_with_duplicate_id_conflicts(store: Store) -> None:
    await save_steps(store, "t1", 2)
    with pytest.raises(Conflict):
        await store.checkpoints.save("t1", checkpoint("t1", "c0"), b"", expected_head="c1")
    assert await store.checkpoints.count("t1") == 2


async def test_expected_head_must_be_an_id(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"", expected_head="")
    with pytest.raises(InvalidInput):
        await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"", expected_head=7)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- listing


async def test_list_is_store_order_and_newest_first_reverses(store: Store) -> None:
    ids = await save_steps(store, "t1", 4)
    assert [m.id for m in await store.checkpoints.list("t1")] == ids
    assert [m.id for m in await store.checkpoints.list("t1", newest_first=True)] == ids[::-1]


async def test_list_of_unknown_thread_is_an_empty_page(store: Store) -> None:
    page = await store.checkpoints.list("nowhere", limit=3)
    assert list(page) == [] and page.next_cursor is None


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
async def test_list_pages_cover_everything_once(store: Store, limit: int, newest_first: bool) -> None:
    ids = await save_steps(store, "t1", 7)
    await save_steps(store, "other", 2)
    pages = await all_pages(store.checkpoints.list, limit, thread_id="t1", newest_first=newest_first)
    expected = ids[::-1] if newest_first else ids
    assert [[m.id for m in page] for page in pages] == chunked(expected, limit)


async def test_cursor_survives_writes_and_deletes(store: Store) -> None:
    await save_steps(store, "t1", 4)
    first = await store.checkpoints.list("t1", limit=2)
    assert first.next_cursor is not None
    await store.checkpoints.delete("t1", "c2")
    await store.checkpoints.save("t1", checkpoint("t1", "c4"), b"")
    rest = await store.checkpoints.list("t1", cursor=first.next_cursor)
    assert [m.id for m in rest] == ["c3", "c4"]


@pytest.mark.parametrize("cursor", ["garbage!", "", "bm90IGpzb24", "W10", "e30", 5])
async def test_bad_cursor_is_invalid(store: Store, cursor: object) -> None:
    await save_steps(store, "t1", 2)
    with pytest.raises(InvalidInput):
        await store.checkpoints.list("t1", cursor=cursor)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.checkpoints.list_threads(cursor=cursor)  # type: ignore[arg-type]


async def test_cursor_of_another_listing_kind_is_invalid(store: Store) -> None:
    for thread in ("a", "b", "c"):
        await save_steps(store, thread, 3)
    thread_cursor = (await store.checkpoints.list_threads(limit=1)).next_cursor
    checkpoint_cursor = (await store.checkpoints.list("a", limit=1)).next_cursor
    assert thread_cursor and checkpoint_cursor
    with pytest.raises(InvalidInput):
        await store.checkpoints.list("a", cursor=thread_cursor)
    with pytest.raises(InvalidInput):
        await store.checkpoints.list_threads(cursor=checkpoint_cursor)


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "2"])
async def test_bad_limit_is_invalid(store: Store, limit: object) -> None:
    with pytest.raises(InvalidInput):
        await store.checkpoints.list("t1", limit=limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.checkpoints.list_threads(limit=limit)  # type: ignore[arg-type]


async def test_count(store: Store) -> None:
    assert await store.checkpoints.count("t1") == 0
    await save_steps(store, "t1", 3)
    await save_steps(store, "t2", 1)
    assert await store.checkpoints.count("t1") == 3


async def test_list_threads_sorted_by_code_point_and_paginated(store: Store) -> None:
    threads = ["b", "a", "Z", "é", "a:b", "a/b", "ü", "aa"]
    for thread in threads:
        await store.checkpoints.save(thread, checkpoint(thread, "c"), b"")
    assert list(await store.checkpoints.list_threads()) == sorted(threads)
    pages = await all_pages(store.checkpoints.list_threads, 3)
    assert pages == chunked(sorted(threads), 3)


# --------------------------------------------------------------------------- deletion and retention


async def test_delete_reports_whether_it_existed(store: Store) -> None:
    await save_steps(store, "t1", 2)
    assert await store.checkpoints.delete("t1", "c0") is True
    assert await store.checkpoints.delete("t1", "c0") is False
    assert await store.checkpoints.delete("nowhere", "c0") is False
    with pytest.raises(CheckpointNotFound):
        await store.checkpoints.load("t1", "c0")
    assert [m.id for m in await store.checkpoints.list("t1")] == ["c1"]


async def test_deleting_the_head_makes_its_predecessor_latest(store: Store) -> None:
    await save_steps(store, "t1", 3)
    await store.checkpoints.delete("t1", "c2")
    assert (await store.checkpoints.load_latest("t1")).metadata.id == "c1"


async def test_emptied_thread_no_longer_exists(store: Store) -> None:
    await save_steps(store, "t1", 2)
    await save_steps(store, "t2", 1)
    await store.checkpoints.delete("t1", "c0")
    await store.checkpoints.delete("t1", "c1")
    assert list(await store.checkpoints.list_threads()) == ["t2"]
    with pytest.raises(ThreadNotFound):
        await store.checkpoints.load_latest("t1")
    with pytest.raises(ThreadNotFound):
        await store.checkpoints.load("t1", "c0")
    assert await store.checkpoints.head("t1") is None
    await store.checkpoints.save("t1", checkpoint("t1", "c0"), b"", expected_head=None)


async def test_delete_thread(store: Store) -> None:
    await save_steps(store, "t1", 3)
    await save_steps(store, "t2", 1)
    assert await store.checkpoints.delete_thread("t1") == 3
    assert await store.checkpoints.delete_thread("t1") == 0
    assert list(await store.checkpoints.list_threads()) == ["t2"]
    with pytest.raises(ThreadNotFound):
        await store.checkpoints.load_latest("t1")
    assert await store.checkpoints.count("t2") == 1


@pytest.mark.parametrize(
    ("keep", "left"), [(0, []), (1, ["c4"]), (3, ["c2", "c3", "c4"]), (5, None), (9, None)]
)
async def test_prune_keeps_the_newest(store: Store, keep: int, left: list[str] | None) -> None:
    ids = await save_steps(store, "t1", 5)
    await save_steps(store, "t2", 2)
    removed = await store.checkpoints.prune("t1", keep=keep)
    expected = ids if left is None else left
    assert removed == 5 - len(expected)
    assert [m.id for m in await store.checkpoints.list("t1")] == expected
    assert await store.checkpoints.count("t2") == 2
    assert ("t1" in await store.checkpoints.list_threads()) == bool(expected)


async def test_prune_unknown_thread_and_bad_keep(store: Store) -> None:
    assert await store.checkpoints.prune("nowhere", keep=0) == 0
    for keep in (-1, True, 1.0, None):
        with pytest.raises(InvalidInput):
            await store.checkpoints.prune("t1", keep=keep)  # type: ignore[arg-type]


async def test_prune_follows_store_order_after_delete_and_resave(store: Store) -> None:
    await save_steps(store, "t1", 3)
    await store.checkpoints.delete("t1", "c0")
    await store.checkpoints.save("t1", checkpoint("t1", "c0"), b"again")
    assert await store.checkpoints.prune("t1", keep=2) == 1
    assert [m.id for m in await store.checkpoints.list("t1")] == ["c2", "c0"]
    assert (await store.checkpoints.load_latest("t1")).state == b"again"


# --------------------------------------------------------------------------- hostile ids


@pytest.mark.parametrize("thread", HOSTILE_OK)
async def test_hostile_but_valid_ids_round_trip(store: Store, thread: str) -> None:
    checkpoint_id = thread[::-1]
    await store.checkpoints.save(thread, checkpoint(thread, checkpoint_id), b"x")
    assert (await store.checkpoints.load(thread, checkpoint_id)).metadata.thread_id == thread
    assert (await store.checkpoints.load_latest(thread)).metadata.id == checkpoint_id
    assert list(await store.checkpoints.list_threads()) == [thread]
    assert await store.checkpoints.head(thread) == checkpoint_id


@pytest.mark.parametrize("bad", HOSTILE_BAD)
async def test_invalid_ids_are_rejected_everywhere(store: Store, bad: str) -> None:
    calls = [
        store.checkpoints.save(bad, checkpoint(bad, "c"), b""),
        store.checkpoints.save("t", checkpoint("t", bad), b""),
        store.checkpoints.load(bad, "c"),
        store.checkpoints.load("t", bad),
        store.checkpoints.load_latest(bad),
        store.checkpoints.head(bad),
        store.checkpoints.list(bad),
        store.checkpoints.delete(bad, "c"),
        store.checkpoints.delete("t", bad),
        store.checkpoints.delete_thread(bad),
        store.checkpoints.count(bad),
        store.checkpoints.prune(bad, keep=1),
    ]
    for call in calls:
        with pytest.raises(InvalidInput):
            await call
    assert list(await store.checkpoints.list_threads()) == []


async def test_id_of_exactly_1024_bytes_is_accepted(store: Store) -> None:
    thread = "é" * 512
    assert len(thread.encode()) == 1024
    await store.checkpoints.save(thread, checkpoint(thread, "c"), b"")
    assert await store.checkpoints.count(thread) == 1


async def test_non_string_thread_id_is_invalid(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.checkpoints.count(5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- corrupt records


async def test_corrupt_checkpoint_fails_only_its_own_read(
    store: Store, factory: object, caplog: pytest.LogCaptureFixture
) -> None:
    await save_steps(store, "t1", 3)
    await corrupt_or_skip(factory, store, "checkpoint", ("t1", "c1"))
    with pytest.raises(CorruptRecord):
        await store.checkpoints.load("t1", "c1")
    assert (await store.checkpoints.load("t1", "c0")).state == b"s0"
    assert (await store.checkpoints.load_latest("t1")).metadata.id == "c2"
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        listed = await store.checkpoints.list("t1")
    assert [m.id for m in listed] == ["c0", "c2"]
    assert any(r.name == "relaystore" and r.levelno == logging.WARNING for r in caplog.records)
    assert await store.checkpoints.count("t1") == 3


async def test_corrupt_latest_checkpoint_fails_load_latest(store: Store, factory: object) -> None:
    await save_steps(store, "t1", 2)
    await corrupt_or_skip(factory, store, "checkpoint", ("t1", "c1"))
    with pytest.raises(CorruptRecord) as info:
        await store.checkpoints.load_latest("t1")
    assert info.value.key


async def test_corrupt_checkpoint_does_not_end_pagination_early(store: Store, factory: object) -> None:
    """A page that skips a corrupt record must still say whether more records follow."""
    await save_steps(store, "t1", 6)
    await corrupt_or_skip(factory, store, "checkpoint", ("t1", "c1"))
    pages = await all_pages(store.checkpoints.list, 2, thread_id="t1")
    assert [m.id for page in pages for m in page] == ["c0", "c2", "c3", "c4", "c5"]


async def test_corrupt_head_is_still_the_head(store: Store, factory: object) -> None:
    """``head()`` names the latest checkpoint even when it cannot be decoded, so CAS stays usable."""
    await save_steps(store, "t1", 2)
    await corrupt_or_skip(factory, store, "checkpoint", ("t1", "c1"))
    assert await store.checkpoints.head("t1") == "c1"
    await store.checkpoints.save("t1", checkpoint("t1", "c2"), b"", expected_head="c1")
    assert (await store.checkpoints.load_latest("t1")).metadata.id == "c2"


async def test_metadata_model_defaults_survive(store: Store) -> None:
    metadata = CheckpointMetadata(id="c1", thread_id="t1")
    await store.checkpoints.save("t1", metadata, b"")
    loaded = (await store.checkpoints.load("t1", "c1")).metadata
    assert loaded == metadata
    assert (loaded.parent_id, loaded.label, loaded.tags, loaded.custom) == (None, None, [], {})


async def test_list_threads_by_prefix(store: Store) -> None:
    ids = ["a", "ab", "ab/1", "ab/2", "ab\U0010ffff", "ac", "b", "tenant/é", "tenant/z"]
    for thread in ids:
        await store.checkpoints.save(thread, checkpoint(thread, "c0"), b"")
    assert list(await store.checkpoints.list_threads(prefix="ab")) == ["ab", "ab/1", "ab/2", "ab\U0010ffff"]
    assert list(await store.checkpoints.list_threads(prefix="ab/")) == ["ab/1", "ab/2"]
    assert list(await store.checkpoints.list_threads(prefix="tenant/")) == ["tenant/z", "tenant/é"]
    assert list(await store.checkpoints.list_threads(prefix="zz")) == []
    first = await store.checkpoints.list_threads(prefix="ab", limit=2)
    rest = await store.checkpoints.list_threads(prefix="ab", cursor=first.next_cursor)
    assert [*first, *rest] == ["ab", "ab/1", "ab/2", "ab\U0010ffff"]
    with pytest.raises(InvalidInput):
        await store.checkpoints.list_threads(prefix="")
