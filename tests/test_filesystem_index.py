"""The file backend's per-thread checkpoint index (``checkpoints/<thread>/.index``): reads use it
instead of listing the directory, and a torn, stale, dangling or missing index is detected and
repaired from the checkpoint files, never trusted blindly."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import relaystore
from relaystore.backends.filesystem import encode_name
from relaystore.backends.filesystem import index as file_index
from relaystore.backends.filesystem.layout import FileRoot
from relaystore.models import CheckpointMetadata
from relaystore.stores import Store

THREAD = "Thread A"
N = 40


def url_of(root: Path) -> str:
    return f"file://{root}"


def thread_dir(root: Path) -> Path:
    return root / "checkpoints" / encode_name(THREAD)


def expected_index(root: Path) -> bytes:
    """The index as the checkpoint files on disk say it must be."""
    directory = thread_dir(root)
    return file_index.lines(FileRoot(root).seq_files(directory))


async def save(store: Store, checkpoint_id: str, **kwargs: object) -> None:
    metadata = CheckpointMetadata(id=checkpoint_id, thread_id=THREAD)
    await store.checkpoints.save(THREAD, metadata, checkpoint_id.encode(), **kwargs)  # type: ignore[arg-type]


async def ids(store: Store, **kwargs: object) -> list[str]:
    return [m.id for m in await store.checkpoints.list(THREAD, **kwargs)]  # type: ignore[arg-type]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def store(root: Path) -> AsyncIterator[Store]:
    async with relaystore.connect(url_of(root)) as opened:
        for i in range(N):
            await save(opened, f"c{i}")
        yield opened


async def assert_reads_are_right(store: Store, saved: list[str]) -> None:
    assert await ids(store) == saved
    assert await ids(store, newest_first=True, limit=3) == saved[::-1][:3]
    assert (await store.checkpoints.load_latest(THREAD)).metadata.id == saved[-1]
    assert await store.checkpoints.head(THREAD) == saved[-1]
    assert (await store.checkpoints.load(THREAD, saved[0])).state == saved[0].encode()


async def test_reads_and_saves_do_not_list_the_thread_directory(
    store: Store, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed: list[str] = []
    real_listdir = os.listdir

    def counting_listdir(path: str | os.PathLike[str]) -> list[str]:
        listed.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", counting_listdir)
    page = await store.checkpoints.list(THREAD, newest_first=True, limit=10)
    assert [m.id for m in page] == [f"c{i}" for i in range(N - 1, N - 11, -1)]
    assert [
        m.id
        for m in await store.checkpoints.list(THREAD, newest_first=True, limit=5, cursor=page.next_cursor)
    ] == [f"c{i}" for i in range(N - 11, N - 16, -1)]
    assert (await store.checkpoints.load_latest(THREAD)).metadata.id == f"c{N - 1}"
    assert (await store.checkpoints.load(THREAD, "c7")).state == b"c7"
    await save(store, "next", expected_head=f"c{N - 1}")
    assert str(thread_dir(root)) not in listed


async def test_the_index_matches_the_files_after_saves_deletes_and_prunes(store: Store, root: Path) -> None:
    assert (thread_dir(root) / ".index").read_bytes() == expected_index(root)
    assert await store.checkpoints.delete(THREAD, "c5")
    assert await store.checkpoints.prune(THREAD, keep=10) == N - 1 - 10
    assert (thread_dir(root) / ".index").read_bytes() == expected_index(root)
    await assert_reads_are_right(store, [f"c{i}" for i in range(N - 10, N)])
    assert await store.checkpoints.delete_thread(THREAD) == 10
    assert not thread_dir(root).exists()


async def test_a_torn_tail_is_ignored_by_readers_and_cut_by_the_next_writer(store: Store, root: Path) -> None:
    path = thread_dir(root) / ".index"
    with open(path, "ab") as file:  # a writer killed in the middle of its append
        file.write(file_index.line(10**6, "torn")[:57])
    saved = [f"c{i}" for i in range(N)]
    await assert_reads_are_right(store, saved)
    await save(store, "after", expected_head=saved[-1])
    assert path.read_bytes() == expected_index(root)
    await assert_reads_are_right(store, [*saved, "after"])


async def test_a_line_failing_its_check_makes_reads_use_the_files_and_a_writer_rebuild(
    store: Store, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = thread_dir(root) / ".index"
    raw = bytearray(path.read_bytes())
    raw[3 * file_index.LINE + 35] ^= 1  # one flipped bit in c3's stem: its CRC no longer holds
    path.write_bytes(bytes(raw))
    saved = [f"c{i}" for i in range(N)]
    assert await ids(store) == saved  # a read that crosses line 4 answers from the files ...
    assert "line 4 fails its check" in caplog.text
    assert path.read_bytes() == expected_index(root)  # ... and rebuilds the index
    await assert_reads_are_right(store, saved)


async def test_a_writer_rebuilds_an_index_whose_tail_fails_its_check(
    store: Store, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = thread_dir(root) / ".index"
    raw = bytearray(path.read_bytes())
    raw[-file_index.LINE + 3] = ord("x")  # the head's seq is no longer digits
    path.write_bytes(bytes(raw))
    await save(store, "after", expected_head=f"c{N - 1}")  # the head check reads the last line
    assert f"line {N} fails its check" in caplog.text
    assert path.read_bytes() == expected_index(root)
    await assert_reads_are_right(store, [*(f"c{i}" for i in range(N)), "after"])


async def test_lines_an_os_crash_lost_are_restored_at_open(store: Store, root: Path) -> None:
    path = thread_dir(root) / ".index"
    path.write_bytes(path.read_bytes()[: -2 * file_index.LINE])  # the last two appends never reached disk
    await store.close()
    async with relaystore.connect(url_of(root)) as reopened:
        assert path.read_bytes() == expected_index(root)
        await assert_reads_are_right(reopened, [f"c{i}" for i in range(N)])


async def test_garbage_and_missing_indexes_are_rebuilt_at_open(store: Store, root: Path) -> None:
    path = thread_dir(root) / ".index"
    path.write_bytes(b"\x00" * (3 * file_index.LINE))  # an OS crash may leave a zero-filled tail
    await store.close()
    async with relaystore.connect(url_of(root)) as reopened:
        assert path.read_bytes() == expected_index(root)
        path.unlink()
        await assert_reads_are_right(reopened, [f"c{i}" for i in range(N)])  # from the files
    async with relaystore.connect(url_of(root)) as reopened:
        assert path.read_bytes() == expected_index(root)


async def test_a_line_without_its_checkpoint_is_skipped_and_its_id_saved_again(
    store: Store, root: Path
) -> None:
    """A save killed after its write-ahead line, before its commit: the line dangles."""
    file_index.append(thread_dir(root), 10**6, encode_name("ghost"))
    saved = [f"c{i}" for i in range(N)]
    await assert_reads_are_right(store, saved)
    await save(store, "ghost", expected_head=saved[-1])  # not a duplicate, and the head held
    await assert_reads_are_right(store, [*saved, "ghost"])
    assert await store.checkpoints.count(THREAD) == N + 1


async def test_a_format_2_store_gets_its_indexes_at_open(store: Store, root: Path) -> None:
    (thread_dir(root) / ".index").unlink()
    (root / "relaystore.json").write_text('{"format": "relaystore-file", "version": 2}')
    await store.close()
    async with relaystore.connect(url_of(root)) as reopened:
        assert (thread_dir(root) / ".index").read_bytes() == expected_index(root)
        await assert_reads_are_right(reopened, [f"c{i}" for i in range(N)])
    assert json.loads((root / "relaystore.json").read_text())["version"] == 3


async def test_a_foreign_file_gets_no_line_and_cannot_break_the_width(store: Store, root: Path) -> None:
    (thread_dir(root) / f"{10**6:020d}-{'x' * 200}.json").write_text("{}")  # no encode_name makes it
    await store.close()
    async with relaystore.connect(url_of(root)) as reopened:
        raw = (thread_dir(root) / ".index").read_bytes()
        assert len(raw) == N * file_index.LINE
        assert (await reopened.checkpoints.load_latest(THREAD)).metadata.id == f"c{N - 1}"
