"""``load_full`` / ``list_full``: a checkpoint with its referenced attachments and pending writes,
the read LangGraph's ``get_tuple`` and ``list`` need, on every backend."""

from __future__ import annotations

import pytest

from relaystore.errors import CorruptRecord, InvalidInput
from relaystore.models import CheckpointMetadata, PendingWrite
from relaystore.stores import Store
from relaystore.testing.docs import checkpoint, corrupt_or_skip


def write(task: str, idx: int, value: bytes = b"v", path: str = "") -> PendingWrite:
    return PendingWrite(
        task_id=task, idx=idx, channel="messages", value=value, type="msgpack", task_path=path
    )


def step(thread: str, checkpoint_id: str, refs: list[str], **attributes: object) -> CheckpointMetadata:
    return checkpoint(thread, checkpoint_id).model_copy(update={"refs": refs, "attributes": attributes})


async def thread_of_three(store: Store) -> None:
    await store.checkpoints.save(
        "t1", step("t1", "c1", ["a"], source="input", step=-1), b"s1", attachments={"a": b"A"}
    )
    await store.checkpoints.save(
        "t1", step("t1", "c2", ["a", "b"], source="loop", step=0, user="u1"), b"s2", attachments={"b": b"B"}
    )
    await store.checkpoints.save("t1", step("t1", "c3", ["b", "gone"], source="loop", step=1), b"s3")
    await store.checkpoints.put_writes("t1", "c2", [write("z", 1), write("z", 0, path="~")])


async def test_load_full_returns_refs_and_writes(store: Store) -> None:
    await thread_of_three(store)
    latest = await store.checkpoints.load_full("t1")
    assert latest is not None
    assert latest.metadata.id == "c3" and latest.state == b"s3"
    assert latest.attachments == {"b": b"B"}  # a ref with no stored attachment is left out
    middle = await store.checkpoints.load_full("t1", "c2")
    assert middle is not None and middle.attachments == {"a": b"A", "b": b"B"}
    assert [(w.task_path, w.idx) for w in middle.writes] == [("", 1), ("~", 0)]
    assert middle.metadata.attributes == {"source": "loop", "step": 0, "user": "u1"}
    assert await store.checkpoints.load_full("t1", "nope") is None
    assert await store.checkpoints.load_full("t9") is None


async def test_list_full_pages_newest_first_with_cursor(store: Store) -> None:
    await thread_of_three(store)
    first = await store.checkpoints.list_full("t1", limit=2)
    assert [b.metadata.id for b in first] == ["c3", "c2"] and first.next_cursor
    assert first[1].attachments == {"a": b"A", "b": b"B"} and len(first[1].writes) == 2
    rest = await store.checkpoints.list_full("t1", limit=2, cursor=first.next_cursor)
    assert [b.metadata.id for b in rest] == ["c1"] and rest.next_cursor is None
    assert rest[0].state == b"s1" and rest[0].attachments == {"a": b"A"}
    oldest_first = await store.checkpoints.list_full("t1", newest_first=False)
    assert [b.metadata.id for b in oldest_first] == ["c1", "c2", "c3"]


async def test_list_full_filters_on_attributes(store: Store) -> None:
    await thread_of_three(store)

    async def ids(**options: object) -> list[str]:
        return [b.metadata.id for b in await store.checkpoints.list_full("t1", **options)]  # type: ignore[arg-type]

    assert await ids(filter={"source": "loop"}) == ["c3", "c2"]
    assert await ids(filter={"source": "loop", "step": 0}) == ["c2"]
    assert await ids(filter={"step": -1}) == ["c1"]
    assert await ids(filter={"user": "u1", "source": "input"}) == []
    assert await ids(filter={"missing": None}) == []  # absent is not null
    assert await ids(filter={"source": "loop"}, limit=1) == ["c3"]
    assert await ids(before="c3") == ["c2", "c1"]
    assert await ids(before="c2", filter={"source": "loop"}) == []
    page = await store.checkpoints.list_full("t1", filter={"source": "loop"}, limit=1)
    rest = await store.checkpoints.list_full(
        "t1", filter={"source": "loop"}, limit=1, cursor=page.next_cursor
    )
    assert [b.metadata.id for b in rest] == ["c2"]


async def test_list_full_without_values_keeps_writes(store: Store) -> None:
    await thread_of_three(store)
    listed = await store.checkpoints.list_full("t1", values=False)
    assert [(b.state, b.attachments) for b in listed] == [(b"", {})] * 3
    assert [len(b.writes) for b in listed] == [0, 2, 0]


async def test_list_full_checks_its_arguments(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.checkpoints.list_full("t1", filter={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        await store.checkpoints.list_full("t1", limit=0)
    with pytest.raises(InvalidInput):
        await store.checkpoints.list_full("t1", before="")
    assert list(await store.checkpoints.list_full("nobody")) == []


async def test_corrupt_checkpoint_fails_only_its_full_read(store: Store, factory: object) -> None:
    await thread_of_three(store)
    await corrupt_or_skip(factory, store, "checkpoint", ("t1", "c2"))
    with pytest.raises(CorruptRecord):
        await store.checkpoints.load_full("t1", "c2")
    assert [b.metadata.id for b in await store.checkpoints.list_full("t1")] == ["c3", "c1"]
    seen, cursor = [], None
    while True:  # pages of one: a page that only skipped the corrupt record still goes on
        page = await store.checkpoints.list_full("t1", limit=1, cursor=cursor)
        seen += [b.metadata.id for b in page]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == ["c3", "c1"]
