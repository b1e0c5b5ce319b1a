"""RelaySaver compresses channel values and pending writes that the store would keep as given
(``Store.compress_below``), reads both layouts, and refuses a damaged compressed value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("langgraph.checkpoint.base")

from langgraph.checkpoint.base.id import uuid6

import relaystore
from relaystore.errors import CorruptRecord
from relaystore.integrations.langgraph import RelaySaver
from relaystore.integrations.langgraph.records import (
    COMPRESS_MAX,
    COMPRESS_MIN,
    pack,
    pack_write,
    unpack,
    unpack_write,
)

TEXT = [
    {"role": "tool", "content": f"result {i}: " + "the page of the search result " * 40} for i in range(2)
]


def test_pack_compresses_only_between_the_minimum_and_the_stores_limit() -> None:
    data = b"agent tool result " * 200  # 3,600 bytes
    assert pack(("msgpack", data), 0)[0] == 1  # a store that compresses nothing itself wants it raw
    squeezed = pack(("msgpack", data), 10**9)
    assert squeezed[0] == 2 and len(squeezed) < len(data) // 4
    assert unpack(squeezed, "k") == ("msgpack", data)
    assert pack(("msgpack", data), len(data))[0] == 1  # at the limit the backend compresses it
    assert pack(("msgpack", data[: COMPRESS_MIN - 1]), 10**9)[0] == 1  # too small to gain
    noise = os.urandom(4096)
    assert pack(("msgpack", noise), 10**9) == pack(("msgpack", noise), 0)  # incompressible: raw
    assert pack(("msgpack", data[:COMPRESS_MAX]), 10**9)[0] == 2
    large = b"agent tool result " * (COMPRESS_MAX // 16)
    assert pack(("msgpack", large), 10**9)[0] == 1  # large values stay raw: deflate would cost more


def test_writes_carry_the_compression_in_their_type() -> None:
    data = b"a tool message " * 100
    kind, stored = pack_write("msgpack", data, 10**9)
    assert kind == "zlib/msgpack" and len(stored) < len(data) // 4
    assert unpack_write(kind, stored, "w") == ("msgpack", data)
    assert pack_write("msgpack", data, 0) == ("msgpack", data)
    assert unpack_write(None, b"", "w") == ("null", b"")


def test_a_damaged_compressed_value_is_a_corrupt_record() -> None:
    squeezed = pack(("msgpack", b"x" * 2000), 10**9)
    with pytest.raises(CorruptRecord, match="k1"):
        unpack(squeezed[:-8] + b"\xff" * 8, "k1")
    with pytest.raises(CorruptRecord, match="w1"):
        unpack_write("zlib/msgpack", b"\x00\xff\xfe", "w1")


async def test_sqlite_stores_values_and_writes_compressed_and_reads_them_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'z.db'}"
    async with RelaySaver.from_url(url) as saver:
        assert saver.store.compress_below > 10**9
        checkpoint_id = str(uuid6(clock_seq=1))
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}
        checkpoint = {
            "v": 4,
            "id": checkpoint_id,
            "ts": "",
            "channel_values": {"messages": TEXT},
            "channel_versions": {"messages": saver.get_next_version(None, None)},
            "versions_seen": {},
        }
        versions = dict(checkpoint["channel_versions"])  # type: ignore[call-overload]
        root = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        await saver.aput(root, checkpoint, {"step": 0}, versions)  # type: ignore[arg-type]
        await saver.aput_writes(config, [("messages", TEXT[:1])], "task-1")  # type: ignore[arg-type]

        key = "t\x1f"
        (attachment,) = (await saver.store.checkpoints.get_attachments(key, await all_keys(saver))).values()
        assert attachment[0] == 2 and len(attachment) < len(saver.serde.dumps_typed(TEXT)[1]) // 3
        (write,) = await saver.store.checkpoints.list_writes(key, checkpoint_id)
        assert write.type == "zlib/msgpack"

        got = await saver.aget_tuple(root)  # type: ignore[arg-type]
        assert got is not None
        assert got.checkpoint["channel_values"] == {"messages": TEXT}
        assert got.pending_writes == [("task-1", "messages", TEXT[:1])]


async def test_values_stored_uncompressed_before_are_still_read(tmp_path: Path) -> None:
    """A file written by a saver that did not compress (format byte 1) reads as before."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    async with relaystore.connect(url) as store:
        store.compress_below = 0  # as relaystore before compression wrote it
        saver = RelaySaver(store)
        root = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=1)),
            "ts": "",
            "channel_values": {"messages": TEXT},
            "channel_versions": {"messages": saver.get_next_version(None, None)},
            "versions_seen": {},
        }
        await saver.aput(root, checkpoint, {"step": 0}, dict(checkpoint["channel_versions"]))  # type: ignore[arg-type,call-overload]
        (attachment,) = (await store.checkpoints.get_attachments("t\x1f", await all_keys(saver))).values()
        assert attachment[0] == 1
    async with RelaySaver.from_url(url) as reader:
        got = await reader.aget_tuple(root)  # type: ignore[arg-type]
        assert got is not None and got.checkpoint["channel_values"] == {"messages": TEXT}


async def test_memory_store_compresses_nothing() -> None:
    async with RelaySaver.from_url("memory://") as saver:
        assert saver.store.compress_below == 0


async def all_keys(saver: RelaySaver) -> list[str]:
    return list(await saver.store.checkpoints.list_attachments("t\x1f", limit=100))
