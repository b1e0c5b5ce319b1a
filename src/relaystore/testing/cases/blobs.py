"""Blob contract: content addressing, deduplication, streaming, ranges, limits."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from relaystore.errors import BlobNotFound, InvalidInput
from relaystore.stores import Store
from relaystore.stores.blobs import CHUNK_SIZE


@pytest.fixture
def blobs(store: Store):  # type: ignore[no-untyped-def]
    return store.blobs


async def stream(data: bytes, piece: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def read_all(blobs, sha: str, start: int = 0, end: int | None = None) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join([chunk async for chunk in await blobs.read(sha, start, end)])


async def test_put_returns_a_blob_content_ref(blobs) -> None:  # type: ignore[no-untyped-def]
    ref = await blobs.put(b"hello", mime="text/plain")
    assert (ref.kind, ref.sha256, ref.size, ref.mime) == (
        "blob",
        hashlib.sha256(b"hello").hexdigest(),
        5,
        "text/plain",
    )
    assert await blobs.get(ref.sha256) == b"hello"
    assert await blobs.stat(ref.sha256) == ref
    assert await blobs.exists(ref.sha256)


async def test_empty_blob(blobs) -> None:  # type: ignore[no-untyped-def]
    ref = await blobs.put(b"")
    assert ref.size == 0 and await blobs.get(ref.sha256) == b""


async def test_streamed_upload_across_chunk_boundaries(blobs) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(2 * CHUNK_SIZE + 12345)
    ref = await blobs.put(stream(data, 300_001))
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
    assert await read_all(blobs, ref.sha256) == data


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 1), (CHUNK_SIZE - 3, CHUNK_SIZE + 3), (CHUNK_SIZE, 2 * CHUNK_SIZE), (5, None), (100, 100)],
)
async def test_ranged_reads(blobs, start: int, end: int | None) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(2 * CHUNK_SIZE + 7)
    ref = await blobs.put(data)
    assert await read_all(blobs, ref.sha256, start, end) == data[start:end]


async def test_range_outside_the_blob_is_rejected(blobs) -> None:  # type: ignore[no-untyped-def]
    ref = await blobs.put(b"0123456789")
    for start, end in [(0, 11), (5, 4), (-1, 3)]:
        with pytest.raises(InvalidInput):
            await blobs.read(ref.sha256, start, end)


async def test_same_content_is_stored_once(blobs) -> None:  # type: ignore[no-untyped-def]
    first = await blobs.put(b"same bytes")
    second = await blobs.put(stream(b"same bytes", 3))
    assert first.sha256 == second.sha256
    assert [b.sha256 for b in await blobs.list()] == [first.sha256]


async def test_size_limit_keeps_nothing(blobs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        await blobs.put(b"x" * 101, max_size=100)
    assert list(await blobs.list()) == []


async def test_expected_digest_is_checked(blobs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        await blobs.put(b"abc", expected_sha256="0" * 64)
    assert list(await blobs.list()) == []
    ref = await blobs.put(b"abc", expected_sha256=hashlib.sha256(b"abc").hexdigest())
    assert ref.size == 3


async def test_failed_stream_keeps_nothing(blobs) -> None:  # type: ignore[no-untyped-def]
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (CHUNK_SIZE + 1)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await blobs.put(broken())
    assert list(await blobs.list()) == []


async def test_missing_blob(blobs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BlobNotFound):
        await blobs.stat("a" * 64)
    with pytest.raises(BlobNotFound):
        await blobs.read("a" * 64)
    assert not await blobs.exists("a" * 64)
    assert await blobs.delete("a" * 64) is False


@pytest.mark.parametrize("bad", ["", "A" * 64, "../" + "a" * 61, "a" * 63, 123])
async def test_bad_digest_is_invalid_input(blobs, bad: object) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        await blobs.stat(bad)


async def test_delete_and_list_pages(blobs) -> None:  # type: ignore[no-untyped-def]
    refs = sorted([await blobs.put(bytes([i])) for i in range(5)], key=lambda r: r.sha256)
    assert await blobs.delete(refs[0].sha256) is True
    assert not await blobs.exists(refs[0].sha256)
    first = await blobs.list(limit=2)
    second = await blobs.list(limit=2, cursor=first.next_cursor)
    assert [b.sha256 for b in [*first, *second]] == [r.sha256 for r in refs[1:]]
    assert second.next_cursor is None


async def test_read_streams_without_being_awaited_first(blobs) -> None:  # type: ignore[no-untyped-def]
    ref = await blobs.put(b"0123456789")
    assert b"".join([chunk async for chunk in blobs.read(ref.sha256, 2, 5)]) == b"234"
    assert await read_all(blobs, ref.sha256, 2, 5) == b"234"  # the awaited form still works
    with pytest.raises(BlobNotFound):
        async for _ in blobs.read("a" * 64):
            pass
    with pytest.raises(InvalidInput):
        async for _ in blobs.read(ref.sha256, 4, 99):
            pass
