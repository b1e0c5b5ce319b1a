"""Conformance of ``store.outputs`` (mlua-swarm's OutputStore plus listing, lineage and import)."""

from __future__ import annotations

import logging
import re

import pytest

from relaystore.errors import Conflict, CorruptRecord, InvalidInput, OutputNotFound
from relaystore.models import OutputRecord, OutputRef, ProgressEvent, inline
from relaystore.models.outputs import ArtifactEvent
from relaystore.stores import Store
from relaystore.testing.docs import (
    all_pages,
    artifact_event,
    checkpoint,
    chunked,
    corrupt_or_skip,
    final_event,
)

UNKNOWN_REF = "out-" + "0" * 32


async def append(
    store: Store, task: str = "t1", attempt: int = 1, agent: str = "writer", *parents: str
) -> str:
    return await store.outputs.append(task, attempt, agent, artifact_event(), parents)


# --------------------------------------------------------------------------- append / get


async def test_append_then_get_round_trips(store: Store) -> None:
    event = artifact_event("report.md", "# findings")
    ref = await store.outputs.append("task-1", 2, "writer", event)
    record = await store.outputs.get(ref)
    assert re.fullmatch(r"out-[0-9a-f]{32}", ref)
    assert isinstance(ref, OutputRef)
    assert (record.id, record.task_id, record.attempt, record.producer_agent) == (ref, "task-1", 2, "writer")
    assert record.event == ArtifactEvent.model_validate(event)
    assert record.parent_refs == []
    assert record.seq > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", record.created_at)


@pytest.mark.parametrize(
    "event",
    [
        ProgressEvent(stage="search", note="3 hits"),
        {"type": "partial", "chunk": {"kind": "inline", "value": {"nested": [1, 2.5, None, "x"]}}},
        final_event(ok=False),
        {"type": "final", "ok": True, "content": {"kind": "blob", "sha256": "a" * 64, "size": 12}},
    ],
)
async def test_every_event_kind_round_trips(store: Store, event: object) -> None:
    ref = await store.outputs.append("t", 0, "a", event)
    stored = (await store.outputs.get(ref)).event
    expected = event if isinstance(event, ProgressEvent) else type(stored).model_validate(event)
    assert stored == expected


async def test_appends_get_distinct_refs_and_increasing_seqs(store: Store) -> None:
    refs = [await append(store, f"t{i % 3}", i % 2, f"a{i % 4}") for i in range(12)]
    seqs = [(await store.outputs.get(ref)).seq for ref in refs]
    assert len(set(refs)) == 12
    assert seqs == sorted(seqs) and len(set(seqs)) == 12


async def test_get_unknown_ref_and_malformed_ref(store: Store) -> None:
    with pytest.raises(OutputNotFound):
        await store.outputs.get(UNKNOWN_REF)
    with pytest.raises(OutputNotFound):
        await store.outputs.get("out-0123456789")  # mlua-swarm's short refs are readable
    for bad in ["", "out-XYZ", "ref-" + "0" * 32, "out-" + "0" * 9, 42]:
        with pytest.raises(InvalidInput):
            await store.outputs.get(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("", 1, "a"), "empty task"),
        (("t", 1, ""), "empty producer"),
        (("t\x00", 1, "a"), "NUL task"),
        (("t", 1, "é" * 513), "long producer"),
        (("t", -1, "a"), "negative attempt"),
        (("t", 2**32, "a"), "attempt over u32"),
        (("t", True, "a"), "bool attempt"),
        (("t", "1", "a"), "str attempt"),
    ],
)
async def test_append_rejects_bad_ids(store: Store, args: tuple[object, ...], what: str) -> None:
    with pytest.raises(InvalidInput):
        await store.outputs.append(*args, artifact_event())  # type: ignore[arg-type]
    assert list(await store.outputs.list()) == [], what


@pytest.mark.parametrize(
    "event",
    [
        {"type": "nope"},
        {"type": "artifact", "name": "x"},
        {"type": "progress", "stage": "s", "extra": 1},
        "text",
    ],
)
async def test_append_rejects_bad_events(store: Store, event: object) -> None:
    with pytest.raises(InvalidInput):
        await store.outputs.append("t", 1, "a", event)
    assert list(await store.outputs.list()) == []


async def test_append_rejects_malformed_parent_refs(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.outputs.append("t", 1, "a", artifact_event(), ["not-a-ref"])
    assert list(await store.outputs.list()) == []


async def test_attempt_bounds_are_inclusive(store: Store) -> None:
    low = await store.outputs.append("t", 0, "a", artifact_event())
    high = await store.outputs.append("t", 2**32 - 1, "a", artifact_event())
    assert (await store.outputs.get(low)).attempt == 0
    assert (await store.outputs.get(high)).attempt == 2**32 - 1


# --------------------------------------------------------------------------- latest


async def test_latest_by_name_is_global_across_tasks_and_attempts(store: Store) -> None:
    await append(store, "t1", 1, "writer")
    await append(store, "t2", 5, "reader")
    newest = await append(store, "t2", 3, "writer")
    await append(store, "t1", 9, "reader")
    assert (await store.outputs.get_latest_by_name("writer")).id == newest


async def test_latest_by_name_matches_producer_not_artifact_name(store: Store) -> None:
    await store.outputs.append("t", 1, "writer", artifact_event(name="summary"))
    with pytest.raises(OutputNotFound) as info:
        await store.outputs.get_latest_by_name("summary")
    assert "summary" in str(info.value)


async def test_latest_in_run_never_falls_back_to_another_attempt(store: Store) -> None:
    first = await append(store, "t1", 1, "writer")
    await append(store, "t1", 2, "reader")
    await append(store, "t2", 2, "writer")
    assert (await store.outputs.get_latest_by_name_in_run("t1", 1, "writer")).id == first
    with pytest.raises(OutputNotFound) as info:
        await store.outputs.get_latest_by_name_in_run("t1", 2, "writer")
    assert str(info.value) == "t1/2/writer"
    newer = await append(store, "t1", 1, "writer")
    assert (await store.outputs.get_latest_by_name_in_run("t1", 1, "writer")).id == newer


async def test_latest_lookups_validate_input(store: Store) -> None:
    for call in [
        store.outputs.get_latest_by_name(""),
        store.outputs.get_latest_by_name_in_run("", 1, "a"),
        store.outputs.get_latest_by_name_in_run("t", -1, "a"),
        store.outputs.get_latest_by_name_in_run("t", 1, "a\x00"),
    ]:
        with pytest.raises(InvalidInput):
            await call


# --------------------------------------------------------------------------- listing


async def test_list_for_attempt_is_insertion_order_and_skips_other_runs(store: Store) -> None:
    mine = []
    for i in range(5):
        mine.append(await append(store, "t1", 1, f"agent{4 - i}"))
        await append(store, "t1", 2, "x")
        await append(store, "t2", 1, "x")
    assert [r.id for r in await store.outputs.list_for_attempt("t1", 1)] == mine
    assert list(await store.outputs.list_for_attempt("t1", 7)) == []
    pages = await all_pages(store.outputs.list_for_attempt, 2, task_id="t1", attempt=1)
    assert [[r.id for r in page] for page in pages] == chunked(mine, 2)


async def test_list_filters(store: Store) -> None:
    rows = [("t1", "a"), ("t2", "a"), ("t1", "b"), ("t2", "b"), ("t1", "a")]
    refs = [await append(store, task, 1, agent) for task, agent in rows]

    async def ids(**flt: str) -> list[str]:
        return [r.id for r in await store.outputs.list(**flt)]

    assert await ids() == refs
    assert await ids(task_id="t1") == [refs[0], refs[2], refs[4]]
    assert await ids(producer_agent="b") == [refs[2], refs[3]]
    assert await ids(task_id="t1", producer_agent="a") == [refs[0], refs[4]]
    assert await ids(task_id="none") == []
    with pytest.raises(InvalidInput):
        await store.outputs.list(task_id="")


@pytest.mark.parametrize("limit", [1, 2, 5, 6])
async def test_list_pages_cover_everything_once(store: Store, limit: int) -> None:
    refs = [await append(store, "t", i % 2, "a") for i in range(5)]
    pages = await all_pages(store.outputs.list, limit)
    assert [[r.id for r in page] for page in pages] == chunked(refs, limit)


async def test_list_cursor_sees_later_appends(store: Store) -> None:
    refs = [await append(store) for _ in range(3)]
    first = await store.outputs.list(limit=2)
    refs.append(await append(store))
    rest = await store.outputs.list(cursor=first.next_cursor)
    assert [r.id for r in first] + [r.id for r in rest] == refs


async def test_bad_cursors_and_limits(store: Store) -> None:
    await append(store)
    await append(store)
    await store.checkpoints.save("a", checkpoint("a"), b"")
    await store.checkpoints.save("b", checkpoint("b"), b"")
    key_cursor = (await store.checkpoints.list_threads(limit=1)).next_cursor
    assert key_cursor is not None
    for cursor in ["%%%", "bm9wZQ", key_cursor]:
        with pytest.raises(InvalidInput):
            await store.outputs.list(cursor=cursor)
        with pytest.raises(InvalidInput):
            await store.outputs.list_for_attempt("t1", 1, cursor=cursor)
    for limit in (0, -3, False):
        with pytest.raises(InvalidInput):
            await store.outputs.list(limit=limit)


# --------------------------------------------------------------------------- lineage


async def test_ancestors_and_descendants_of_a_diamond(store: Store) -> None:
    #   root -> left, right -> join -> leaf ; join also names an unknown ref
    root = await append(store)
    left = await append(store, "t1", 1, "writer", root)
    right = await append(store, "t1", 1, "writer", root)
    join = await append(store, "t1", 1, "writer", right, left, UNKNOWN_REF)
    leaf = await append(store, "t1", 1, "writer", join)

    async def ancestors(ref: str, depth: int | None = None) -> list[str]:
        return [r.id for r in await store.outputs.ancestors(ref, max_depth=depth)]

    async def descendants(ref: str, depth: int | None = None) -> list[str]:
        return [r.id for r in await store.outputs.descendants(ref, max_depth=depth)]

    assert await ancestors(leaf) == [join, left, right, root]
    assert await ancestors(leaf, 1) == [join]
    assert await ancestors(leaf, 2) == [join, left, right]
    assert await ancestors(leaf, 0) == []
    assert await ancestors(root) == []
    assert await descendants(root) == [left, right, join, leaf]
    assert await descendants(root, 1) == [left, right]
    assert await descendants(left, 1) == [join]
    assert await descendants(leaf) == []
    assert (await store.outputs.get(join)).parent_refs == [right, left, UNKNOWN_REF]


async def test_lineage_of_unknown_ref_and_bad_depth(store: Store) -> None:
    ref = await append(store)
    for call in (store.outputs.ancestors, store.outputs.descendants):
        with pytest.raises(OutputNotFound):
            await call(UNKNOWN_REF)
        with pytest.raises(InvalidInput):
            await call("nope")
        for depth in (-1, True, "2", 1.5):
            with pytest.raises(InvalidInput):
                await call(ref, max_depth=depth)  # type: ignore[arg-type]


async def test_duplicate_parent_refs_count_once(store: Store) -> None:
    root = await append(store)
    child = await append(store, "t1", 1, "w", root, root)
    assert [r.id for r in await store.outputs.ancestors(child)] == [root]
    assert [r.id for r in await store.outputs.descendants(root)] == [child]


async def test_child_appended_before_its_parent_is_imported(store: Store) -> None:
    parent = OutputRecord(
        id=OutputRef.generate(),
        task_id="t",
        attempt=1,
        producer_agent="p",
        event=ProgressEvent(stage="s"),
        created_at="2026-01-01T00:00:00.123456789Z",
    )
    child = await append(store, "t", 1, "c", parent.id)
    assert await store.outputs.ancestors(child) == []
    await store.outputs.import_record(parent)
    assert [r.id for r in await store.outputs.ancestors(child)] == [parent.id]
    assert [r.id for r in await store.outputs.descendants(parent.id)] == [child]


# --------------------------------------------------------------------------- import


async def test_import_keeps_id_and_created_at_and_assigns_a_new_seq(store: Store) -> None:
    await append(store)
    exported = OutputRecord(
        id=OutputRef("out-0123456789"),
        task_id="t9",
        attempt=3,
        producer_agent="legacy",
        event={"type": "artifact", "name": "n", "content": inline([1, 2])},  # type: ignore[arg-type]
        seq=1,
        created_at="2025-05-05T05:05:05.123456789Z",
    )
    imported = await store.outputs.import_record(exported.model_dump(mode="json"))
    stored = await store.outputs.get("out-0123456789")
    assert imported.id == "out-0123456789" and imported.seq == stored.seq
    assert stored.created_at == "2025-05-05T05:05:05.123456789Z"
    assert stored.model_dump(exclude={"seq"}) == exported.model_dump(exclude={"seq"})
    newest = await store.outputs.get(await append(store))
    assert 1 < stored.seq < newest.seq
    assert (await store.outputs.get_latest_by_name("legacy")).id == "out-0123456789"


async def test_import_duplicate_id_conflicts(store: Store) -> None:
    ref = await append(store)
    record = await store.outputs.get(ref)
    with pytest.raises(Conflict):
        await store.outputs.import_record(record)
    assert [r.id for r in await store.outputs.list()] == [ref]


@pytest.mark.parametrize(
    "change",
    [{"task_id": ""}, {"producer_agent": "a\x00"}, {"attempt": -1}, {"id": "x"}, {"created_at": "now"}],
)
async def test_import_rejects_malformed_records(store: Store, change: dict[str, object]) -> None:
    record = (await store.outputs.get(await append(store))).model_dump(mode="json")
    record.update(id=str(OutputRef.generate()))
    with pytest.raises(InvalidInput):
        await store.outputs.import_record({**record, **change})
    assert len(await store.outputs.list()) == 1


# --------------------------------------------------------------------------- hostile ids


@pytest.mark.parametrize("name", ["ünï ✓", "a:b", "a/b", "{x}", "..", " s p ", "é" * 512])
async def test_hostile_but_valid_ids_round_trip(store: Store, name: str) -> None:
    ref = await store.outputs.append(name, 1, name, artifact_event())
    assert (await store.outputs.get(ref)).task_id == name
    assert (await store.outputs.get_latest_by_name(name)).id == ref
    assert (await store.outputs.get_latest_by_name_in_run(name, 1, name)).id == ref
    assert [r.id for r in await store.outputs.list_for_attempt(name, 1)] == [ref]
    assert [r.id for r in await store.outputs.list(task_id=name, producer_agent=name)] == [ref]


# --------------------------------------------------------------------------- corrupt records


async def test_corrupt_output_fails_only_its_own_read(
    store: Store, factory: object, caplog: pytest.LogCaptureFixture
) -> None:
    root = await append(store)
    bad = await append(store, "t1", 1, "writer", root)
    child = await append(store, "t1", 1, "writer", bad)
    await corrupt_or_skip(factory, store, "output", (bad,))
    with pytest.raises(CorruptRecord):
        await store.outputs.get(bad)
    assert (await store.outputs.get(child)).parent_refs == [bad]
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        listed = await store.outputs.list()
        in_attempt = await store.outputs.list_for_attempt("t1", 1)
        below_root = await store.outputs.descendants(root, max_depth=1)
    assert [r.id for r in listed] == [root, child]
    assert [r.id for r in in_attempt] == [root, child]
    assert below_root == []
    assert any(r.name == "relaystore" and r.levelno == logging.WARNING for r in caplog.records)
    assert (await store.outputs.get_latest_by_name_in_run("t1", 1, "writer")).id == child


async def test_lineage_through_a_corrupt_output_names_it(store: Store, factory: object) -> None:
    # ancestors() without max_depth may read the whole lineage in one query (sqlite's recursive
    # CTE); it must fail on the corrupt record exactly as the level-by-level walk does.
    root = await append(store)
    bad = await append(store, "t1", 1, "writer", root)
    child = await append(store, "t1", 1, "writer", bad)
    await corrupt_or_skip(factory, store, "output", (bad,))
    for depth in (None, 5):
        with pytest.raises(CorruptRecord):
            await store.outputs.ancestors(child, max_depth=depth)


async def test_corrupt_output_does_not_end_pagination_early(store: Store, factory: object) -> None:
    refs = [await append(store) for _ in range(6)]
    await corrupt_or_skip(factory, store, "output", (refs[1],))
    pages = await all_pages(store.outputs.list, 2)
    assert [r.id for page in pages for r in page] == [refs[0], *refs[2:]]
