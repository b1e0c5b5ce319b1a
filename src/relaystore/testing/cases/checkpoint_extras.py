"""Pending writes and thread attachments: the checkpoint contract's additions for LangGraph-style
runtimes (several values per step, shared across steps)."""

from __future__ import annotations

import pytest

from relaystore.errors import Conflict, InvalidInput
from relaystore.models import PendingWrite
from relaystore.stores import Store
from relaystore.testing.docs import checkpoint


def write(
    task: str, idx: int, channel: str = "messages", value: bytes = b"v", path: str = ""
) -> PendingWrite:
    return PendingWrite(task_id=task, idx=idx, channel=channel, value=value, type="msgpack", task_path=path)


async def saved(store: Store, thread: str = "t1", *ids: str) -> None:
    for checkpoint_id in ids or ("c1",):
        await store.checkpoints.save(thread, checkpoint(thread, checkpoint_id), b"state")


async def test_writes_round_trip_sorted_by_path_task_and_index(store: Store) -> None:
    await saved(store)
    writes = [
        write("b", 1, path="~x"),
        write("b", 0, value=b"\x00\xff"),
        write("a", 2),
        write("a", -1, "__error__"),
    ]
    await store.checkpoints.put_writes("t1", "c1", writes)
    listed = await store.checkpoints.list_writes("t1", "c1")
    assert [(w.task_path, w.task_id, w.idx) for w in listed] == [
        ("", "a", -1),
        ("", "a", 2),
        ("", "b", 0),
        ("~x", "b", 1),
    ]
    assert listed[2].value == b"\x00\xff" and listed[2].type == "msgpack" and listed[0].channel == "__error__"


async def test_repeated_write_is_ignored_unless_replace(store: Store) -> None:
    await saved(store)
    await store.checkpoints.put_writes("t1", "c1", [write("a", 0, value=b"first")])
    await store.checkpoints.put_writes("t1", "c1", [write("a", 0, value=b"second")])
    assert [w.value for w in await store.checkpoints.list_writes("t1", "c1")] == [b"first"]
    await store.checkpoints.put_writes("t1", "c1", [write("a", 0, value=b"third")], replace=True)
    assert [w.value for w in await store.checkpoints.list_writes("t1", "c1")] == [b"third"]


async def test_writes_belong_to_one_checkpoint(store: Store) -> None:
    await saved(store, "t1", "c1", "c2")
    await saved(store, "t2", "c1")
    await store.checkpoints.put_writes("t1", "c1", [write("a", 0)])
    assert await store.checkpoints.list_writes("t1", "c2") == []
    assert await store.checkpoints.list_writes("t2", "c1") == []
    assert await store.checkpoints.list_writes("t9", "c9") == []


async def test_writes_may_precede_their_checkpoint(store: Store) -> None:
    # As every LangGraph saver: a step's writes can land before its checkpoint's save.
    await store.checkpoints.put_writes("t1", "c1", [write("a", 0, value=b"early")])
    assert await store.checkpoints.count("t1") == 0  # writes alone make no thread
    assert await store.checkpoints.list_threads() == []
    await saved(store)
    assert [w.value for w in await store.checkpoints.list_writes("t1", "c1")] == [b"early"]
    bundle = await store.checkpoints.load_full("t1")
    assert bundle is not None and [w.value for w in bundle.writes] == [b"early"]
    await store.checkpoints.put_writes("t1", "nope", [])  # nothing to attach: no error


async def test_orphan_writes_are_garbage_for_prune_and_delete(store: Store) -> None:
    await saved(store)
    for checkpoint_id in ("c1", "lost1", "lost2"):
        await store.checkpoints.put_writes("t1", checkpoint_id, [write("a", 0)])
    assert await store.checkpoints.delete_orphan_writes("t1") == 2
    assert await store.checkpoints.list_writes("t1", "lost1") == []
    assert len(await store.checkpoints.list_writes("t1", "c1")) == 1
    await store.checkpoints.put_writes("t1", "lost3", [write("a", 0)])
    await store.checkpoints.prune("t1", keep=5)  # deletes no checkpoint, only the orphan
    assert await store.checkpoints.list_writes("t1", "lost3") == []
    assert len(await store.checkpoints.list_writes("t1", "c1")) == 1
    await store.checkpoints.put_writes("t2", "never", [write("a", 0)])
    await store.checkpoints.delete_thread("t2")
    await store.checkpoints.save("t2", checkpoint("t2", "never"), b"state")
    assert await store.checkpoints.list_writes("t2", "never") == []


async def test_repeats_within_one_call_keep_first_or_last(store: Store) -> None:
    await store.checkpoints.put_writes("t1", "c1", [write("a", 0, value=b"1"), write("a", 0, value=b"2")])
    assert [w.value for w in await store.checkpoints.list_writes("t1", "c1")] == [b"1"]
    await store.checkpoints.put_writes(
        "t1", "c1", [write("a", 0, value=b"3"), write("a", 0, value=b"4")], replace=True
    )
    assert [w.value for w in await store.checkpoints.list_writes("t1", "c1")] == [b"4"]


@pytest.mark.parametrize(
    "bad",
    [
        {"task_id": "", "idx": 0, "channel": "c", "value": b""},
        {"task_id": "a", "idx": 0, "channel": "c"},
        {"task_id": "a", "idx": 2**63, "channel": "c", "value": b""},
        {"task_id": "a", "idx": 0, "channel": "", "value": b""},
    ],
)
async def test_malformed_writes_are_invalid_input(store: Store, bad: dict) -> None:  # type: ignore[type-arg]
    await saved(store)
    with pytest.raises(InvalidInput):
        await store.checkpoints.put_writes("t1", "c1", [bad])
    assert await store.checkpoints.list_writes("t1", "c1") == []


async def test_writes_go_with_their_checkpoint(store: Store) -> None:
    await saved(store, "t1", "c1", "c2", "c3")
    for checkpoint_id in ("c1", "c2", "c3"):
        await store.checkpoints.put_writes("t1", checkpoint_id, [write("a", 0)])
    await store.checkpoints.delete("t1", "c3")
    await store.checkpoints.prune("t1", keep=1)
    await saved(store, "t1", "c1", "c3")  # the same ids again start with no writes
    assert await store.checkpoints.list_writes("t1", "c1") == []
    assert await store.checkpoints.list_writes("t1", "c3") == []
    assert len(await store.checkpoints.list_writes("t1", "c2")) == 1
    await store.checkpoints.delete_thread("t1")
    await saved(store, "t1", "c2")
    assert await store.checkpoints.list_writes("t1", "c2") == []


async def test_attachments_round_trip_and_overwrite(store: Store) -> None:
    big = bytes(range(256)) * 1000
    await store.checkpoints.put_attachments("t1", {"messages\x1f1": big, "step\x1f1": b"1"})
    await store.checkpoints.put_attachments("t1", {"step\x1f1": b"one"})
    got = await store.checkpoints.get_attachments("t1", ["messages\x1f1", "step\x1f1", "missing"])
    assert got == {"messages\x1f1": big, "step\x1f1": b"one"}
    assert await store.checkpoints.get_attachments("t2", ["step\x1f1"]) == {}
    assert await store.checkpoints.get_attachments("t1", []) == {}


async def test_attachments_list_delete_and_go_with_the_thread(store: Store) -> None:
    await saved(store)
    await store.checkpoints.put_attachments("t1", {f"k{i}": b"x" for i in range(5)})
    await store.checkpoints.put_attachments("t2", {"k0": b"other"})
    first = await store.checkpoints.list_attachments("t1", limit=3)
    rest = await store.checkpoints.list_attachments("t1", cursor=first.next_cursor)
    assert [*first, *rest] == ["k0", "k1", "k2", "k3", "k4"] and rest.next_cursor is None
    assert await store.checkpoints.delete_attachments("t1", ["k0", "k1", "nope"]) == 2
    assert list(await store.checkpoints.list_attachments("t1")) == ["k2", "k3", "k4"]
    await store.checkpoints.delete_thread("t1")
    assert list(await store.checkpoints.list_attachments("t1")) == []
    assert await store.checkpoints.get_attachments("t2", ["k0"]) == {"k0": b"other"}


async def test_attachment_keys_and_values_are_checked(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.checkpoints.put_attachments("t1", {"": b"x"})
    with pytest.raises(InvalidInput):
        await store.checkpoints.put_attachments("t1", {"k": "not bytes"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        await store.checkpoints.get_attachments("t1", ["a\x00b"])
    assert list(await store.checkpoints.list_attachments("t1")) == []


@pytest.mark.parametrize("field", ["task_path", "type"])
@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
async def test_write_text_fields_must_be_storable(store: Store, field: str, text: str) -> None:
    await saved(store)
    bad = {"task_id": "a", "idx": 0, "channel": "c", "value": b"", field: text}
    with pytest.raises(InvalidInput):
        await store.checkpoints.put_writes("t1", "c1", [bad])


async def test_save_with_attachments_stores_both(store: Store) -> None:
    await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"s", attachments={"ch\x1f1": b"value"})
    assert await store.checkpoints.get_attachments("t1", ["ch\x1f1"]) == {"ch\x1f1": b"value"}
    assert (await store.checkpoints.load_latest("t1")).metadata.id == "c1"


async def test_save_with_attachments_keeps_the_checkpoint_contract(store: Store) -> None:
    await saved(store)
    with pytest.raises(InvalidInput):
        await store.checkpoints.save("t1", checkpoint("t1", "c2"), b"", attachments={"": b"x"})
    with pytest.raises(Conflict):
        await store.checkpoints.save(
            "t1", checkpoint("t1", "c2"), b"", expected_head="stale", attachments={"k": b"x"}
        )
    assert [m.id for m in await store.checkpoints.list("t1")] == ["c1"]
    assert await store.checkpoints.get_attachments("t1", ["k"]) == {}  # a Conflict writes nothing
    with pytest.raises(Conflict):
        await store.checkpoints.save("t1", checkpoint("t1", "c1"), b"", attachments={"dup": b"x"})
    assert await store.checkpoints.get_attachments("t1", ["dup"]) == {}
