"""The file backend beyond the conformance suite: URLs, layout, names, temp files, locking."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import uuid
import zlib
from pathlib import Path

import filelock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relaystore
from relaystore import backends
from relaystore.backends._policy import describe
from relaystore.backends.filesystem import (
    EVENT_FILE_BYTES,
    PLAIN_NAME_BYTES,
    FileOptions,
    decode_name,
    encode_name,
    parse_url,
)
from relaystore.errors import BackendUnavailable, CorruptRecord, InvalidInput
from relaystore.models import AccumulatorState, CheckpointMetadata
from relaystore.stores import Store
from relaystore.stores.doctor import diagnose

# Ids the contract accepts: non-empty, no NUL, at most 1024 UTF-8 bytes.
IDS = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1).filter(
    lambda s: len(s.encode()) <= 1024
)


def url_of(path: Path, **query: str) -> str:
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return f"file://{path}" + (f"?{suffix}" if suffix else "")


def files_under(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, names in os.walk(root) for f in names]


def metadata(thread: str, cid: str) -> CheckpointMetadata:
    return CheckpointMetadata(id=cid, thread_id=thread)


# --------------------------------------------------------------------------- URLs


def test_absolute_urls_name_the_directory() -> None:
    assert parse_url("file:///srv/store", {}).local_path == Path("/srv/store")
    assert parse_url("file:////srv/store", {}).local_path == Path("/srv/store")
    assert parse_url("file://localhost/srv/my%20store", {}).local_path == Path("/srv/my store")
    parsed = parse_url("file:///srv/store?timeout=2&fsync=false", {})
    assert (parsed.timeout, parsed.fsync) == (2.0, False)
    assert parse_url("file:///srv/store", {"timeout": 5}).timeout == 5.0  # keywords win


def test_the_parse_url_entry_gives_typed_options_with_the_root_as_local_path() -> None:
    parsed = backends.parse_url("file:///srv/a/../store?fsync=0")
    assert isinstance(parsed, FileOptions)
    assert (parsed.scheme, parsed.local_path, parsed.fsync) == ("file", Path("/srv/store"), False)
    assert describe(parsed)["local_path"] == "/srv/store"


@pytest.mark.parametrize(
    "url",
    ["file://./relative", "file://host/srv", "file:///", "file:///srv?bogus=1", "file:///srv?timeout=0"],
)
def test_bad_urls_are_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput):
        parse_url(url, {})


# --------------------------------------------------------------------------- opening


async def test_open_creates_manifest_and_counter(tmp_path: Path) -> None:
    async with relaystore.connect(url_of(tmp_path / "s")) as store:
        info = await store.info()
    assert json.loads((tmp_path / "s" / "relaystore.json").read_text()) == {
        "format": "relaystore-file",
        "version": 3,
    }
    assert (tmp_path / "s" / "seq").read_text() == f"{0:020d} {zlib.crc32(b'0' * 20):08x}\n"
    assert info["backend"] == "file" and info["last_seq"] == 0


async def test_a_torn_or_older_counter_never_goes_back(tmp_path: Path) -> None:
    counter = tmp_path / "s" / "seq"
    async with relaystore.connect(url_of(tmp_path / "s")) as store:
        await store.checkpoints.save("t", metadata("t", "c1"), b"")
        await store.checkpoints.save("t", metadata("t", "c2"), b"")
        torn = bytearray(counter.read_bytes())
        torn[19] = ord("1")  # "…02" became "…01": a torn overwrite, which its CRC exposes
        counter.write_bytes(bytes(torn))
        with pytest.raises(CorruptRecord, match="relaystore doctor"):  # never handed out again
            await store.outputs.append("t", 0, "a", {"type": "progress", "stage": "1"})
        assert (await diagnose(store, repair=True)).healthy  # rebuilt from the records
        ref = await store.outputs.append("t", 0, "a", {"type": "progress", "stage": "1"})
        assert (await store.outputs.get(ref)).seq == 3  # after the highest seq on disk
        counter.write_text("7\n")  # format 2's bare number is read, then replaced by a checked line
        await store.checkpoints.save("t", metadata("t", "c3"), b"")
        assert counter.read_bytes().split()[0] == b"%020d" % 8
        assert (await store.info())["last_seq"] == 8


async def test_a_save_and_an_append_cost_a_fixed_number_of_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with relaystore.connect(url_of(tmp_path / "s")) as store:
        await store.checkpoints.save("t", metadata("t", "c0"), b"")  # directories exist from here on
        await store.outputs.append("t", 0, "a", {"type": "progress", "stage": "0"})
        calls: list[int] = []
        real_fsync = os.fsync
        monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
        await store.checkpoints.save("t", metadata("t", "c1"), b"state", expected_head="c0")
        # the counter (in place), then state and metadata (file and directory each); the index
        # line is not fsynced (open rebuilds it after an OS crash)
        assert len(calls) == 5
        calls.clear()
        await store.outputs.append("t", 0, "a", {"type": "progress", "stage": "1"})
        assert len(calls) == 1 + 5 + 2  # the counter, five index directories, the record


async def test_missing_parent_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable):
        await relaystore.connect(url_of(tmp_path / "missing" / "s"))


async def test_a_file_in_place_of_the_root_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("not a directory")
    with pytest.raises(BackendUnavailable):
        await relaystore.connect(url_of(tmp_path / "s"))


async def test_a_foreign_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput):
        await relaystore.connect(url_of(tmp_path))
    assert not (tmp_path / "relaystore.json").exists()


async def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    async with relaystore.connect(url_of(tmp_path / "s")):
        pass
    (tmp_path / "s" / "relaystore.json").write_text('{"format": "relaystore-file", "version": 99}')
    with pytest.raises(BackendUnavailable, match="version 99"):
        await relaystore.connect(url_of(tmp_path / "s"))


async def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = await relaystore.connect(url_of(tmp_path / "s"))
    await store.close()
    with pytest.raises(BackendUnavailable):
        await store.checkpoints.count("t")


async def test_a_held_lock_times_out_as_unavailable(tmp_path: Path) -> None:
    async with relaystore.connect(url_of(tmp_path / "s", timeout="0.1")) as store:
        with filelock.FileLock(str(tmp_path / "s" / ".lock")):
            with pytest.raises(BackendUnavailable, match="locked"):
                await store.checkpoints.save("t", metadata("t", "c"), b"")
            assert await store.checkpoints.count("t") == 0  # readers take no lock
        await store.checkpoints.save("t", metadata("t", "c"), b"")
        assert await store.checkpoints.count("t") == 1


# --------------------------------------------------------------------------- layout


async def test_checkpoint_state_is_a_raw_file_next_to_its_metadata(tmp_path: Path) -> None:
    async with relaystore.connect(url_of(tmp_path / "s")) as store:
        await store.checkpoints.save("Thread A", metadata("Thread A", "c1"), b"\x00raw")
    thread_dir = tmp_path / "s" / "checkpoints" / "^thread%20^a"
    assert sorted(os.listdir(thread_dir)) == [
        ".index",
        "00000000000000000001-c1.json",
        "00000000000000000001-c1.state",
    ]
    assert (thread_dir / ".index").read_bytes().split() == [b"00000000000000000001", b"0528629c", b"c1"]
    assert (thread_dir / "00000000000000000001-c1.state").read_bytes() == b"\x00raw"
    assert json.loads((thread_dir / "00000000000000000001-c1.json").read_text())["thread_id"] == "Thread A"


async def test_a_large_output_event_gets_its_own_file(tmp_path: Path) -> None:
    big = "x" * (EVENT_FILE_BYTES + 1)
    async with relaystore.connect(url_of(tmp_path / "s")) as store:
        small = await store.outputs.append("t", 0, "a", {"type": "progress", "stage": "s"})
        ref = await store.outputs.append(
            "t", 0, "a", {"type": "final", "ok": True, "content": {"kind": "inline", "value": big}}
        )
        assert (await store.outputs.get(ref)).event.content.value == big  # type: ignore[union-attr]
        assert [r.id for r in await store.outputs.list(task_id="t")] == [small, ref]
    records = tmp_path / "s" / "outputs" / "records"
    assert sorted(os.listdir(records)) == sorted([f"{small}.json", f"{ref}.json", f"{ref}.event.json"])
    assert "event" not in json.loads((records / f"{ref}.json").read_text())


async def test_documents_and_runs_are_readable_files(tmp_path: Path) -> None:
    async with relaystore.connect(url_of(tmp_path / "s")) as store:
        await store.adaptive.store_accumulators("agent-1", AccumulatorState())
    path = tmp_path / "s" / "adaptive" / "accumulators" / "agent-1.json"
    assert json.loads(path.read_text()) == {"nodes": {}}


async def test_seq_is_never_reused_after_deletes_or_a_lost_counter(tmp_path: Path) -> None:
    async with relaystore.connect(url_of(tmp_path / "s")) as store:
        first = await store.outputs.append("t", 0, "a", {"type": "progress", "stage": "1"})
        await store.checkpoints.save("t", metadata("t", "c"), b"")
        await store.checkpoints.delete("t", "c")
        second = await store.outputs.import_record(
            (await store.outputs.get(first)).model_copy(update={"id": "out-" + "0" * 32})
        )
        assert second.seq == 3
        (tmp_path / "s" / "seq").unlink()
        third = await store.outputs.append("t", 0, "a", {"type": "progress", "stage": "3"})
        assert (await store.outputs.get(third)).seq == 4  # rebuilt from the highest seq on disk


# --------------------------------------------------------------------------- interrupted writes


async def test_temp_files_are_never_listed_and_removed_on_open(tmp_path: Path) -> None:
    root = tmp_path / "s"
    async with relaystore.connect(url_of(root)) as store:
        await store.checkpoints.save("t", metadata("t", "c1"), b"one")
    thread_dir = root / "checkpoints" / "t"
    (thread_dir / ".tmp-0123456789abcdef").write_bytes(b'{"torn')
    (root / "adaptive" / "plan").mkdir(parents=True)
    (root / "adaptive" / "plan" / ".tmp-feedfacefeedface").write_bytes(b"{")
    async with relaystore.connect(url_of(root)) as store:
        assert [m.id for m in await store.checkpoints.list("t")] == ["c1"]
        assert list(await store.adaptive.list_keys("plan")) == []
    assert not [p for p in files_under(root) if p.name.startswith(".tmp-")]


async def test_markers_without_a_record_are_skipped(tmp_path: Path) -> None:
    """An insert killed after its index markers but before its record leaves no visible output."""
    root = tmp_path / "s"
    async with relaystore.connect(url_of(root)) as store:
        ref = await store.outputs.append("t", 0, "a", {"type": "progress", "stage": "s"})
        ghost = "out-" + "f" * 32
        for directory in ("all", "task/t", "producer/a", "attempt/t/0", "run/t/0/a"):
            (root / "outputs" / "index" / directory / f"{99:020d}-{ghost}").touch()
        (root / "outputs" / "index" / "children" / ref).mkdir(parents=True)
        (root / "outputs" / "index" / "children" / ref / f"{99:020d}-{ghost}").touch()
        assert [r.id for r in await store.outputs.list()] == [ref]
        assert (await store.outputs.get_latest_by_name_in_run("t", 0, "a")).id == ref
        assert await store.outputs.descendants(ref) == []


# --------------------------------------------------------------------------- names


@given(IDS)
def test_encoded_names_are_safe_and_round_trip(key: str) -> None:
    name = encode_name(key)
    assert name == name.lower() and name.isascii()
    assert "/" not in name and "\\" not in name and not name.startswith(".") and not name.endswith(".")
    assert len(name.encode()) <= PLAIN_NAME_BYTES
    assert decode_name(name) == key or ("~" in name and decode_name(name) is None)


@given(IDS, IDS)
def test_distinct_ids_get_distinct_names_even_ignoring_case(a: str, b: str) -> None:
    if a != b:
        assert encode_name(a).casefold() != encode_name(b).casefold()


@pytest.mark.parametrize("key", ["..", ".", "a/../../b", "..\\..\\x", "A", "a", "é" * 512, "x" * 1024])
def test_hostile_names_stay_one_path_component(key: str) -> None:
    name = encode_name(key)
    assert name not in (".", "..") and Path(name).name == name


@pytest.fixture(scope="module")
def shared_root() -> object:
    path = Path(tempfile.mkdtemp(prefix="relaystore-names-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def round_trip(store: Store, owner: str, key: str) -> None:
    await store.checkpoints.save(owner, metadata(owner, key), key.encode())
    assert (await store.checkpoints.load(owner, key)).state == key.encode()
    assert owner in await store.checkpoints.list_threads()
    await store.adaptive.store_accumulators(key, AccumulatorState())
    assert key in await store.adaptive.list_keys("accumulators")
    assert key in await store.adaptive.list_agents()
    ref = await store.outputs.append(owner, 0, key, {"type": "progress", "stage": key})
    assert (await store.outputs.get_latest_by_name_in_run(owner, 0, key)).id == ref


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(owner=IDS, key=IDS)
def test_arbitrary_ids_round_trip_and_stay_under_the_root(shared_root: Path, owner: str, key: str) -> None:
    root = shared_root / uuid.uuid4().hex

    async def scenario() -> None:
        async with relaystore.connect(url_of(root, fsync="false")) as store:
            await round_trip(store, owner, key)

    asyncio.run(scenario())
    real_root = os.path.realpath(root)
    for path in files_under(root):
        assert os.path.commonpath([real_root, os.path.realpath(path)]) == real_root
    shutil.rmtree(root)


async def test_deleting_in_a_fresh_store_is_a_no_op(tmp_path: Path) -> None:
    async with relaystore.connect(url_of(tmp_path / "s")) as store:
        assert await store.checkpoints.delete_thread("t") == 0
        assert await store.checkpoints.prune("t", 0) == 0
        assert await store.checkpoints.delete("t", "c") is False
        assert await store.adaptive.prune_runs("a", 0) == 0
        assert await store.adaptive.delete_document("plan", "a") is False


async def test_format_1_writes_are_keyed_by_checkpoint_id_on_open(tmp_path: Path) -> None:
    """Format 1 named a checkpoint's writes ``writes/<seq>-<id>``; opening renames them to
    ``writes/<id>`` (format 2, where writes may precede their checkpoint) and keeps them."""
    from relaystore.models import CheckpointMetadata, PendingWrite

    root = tmp_path / "s"
    async with relaystore.connect(url_of(root)) as store:
        await store.checkpoints.save("t", CheckpointMetadata(id="c1", thread_id="t"), b"state")
        await store.checkpoints.put_writes(
            "t", "c1", [PendingWrite(task_id="a", idx=0, channel="m", value=b"w")]
        )
    writes_dir = root / "checkpoints" / "t" / "writes"
    (writes_dir / "c1").rename(writes_dir / f"{1:020d}-c1")  # as format 1 laid it out
    (root / "relaystore.json").write_text('{"format": "relaystore-file", "version": 1}')
    async with relaystore.connect(url_of(root)) as store:
        assert [w.value for w in await store.checkpoints.list_writes("t", "c1")] == [b"w"]
    assert sorted(p.name for p in writes_dir.iterdir()) == ["c1"]
    assert json.loads((root / "relaystore.json").read_text())["version"] == 3
