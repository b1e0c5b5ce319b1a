"""Store-order counters are checked against the data: a damaged one never hands out a seq in use.

The file backend's ``seq`` file carries a check, so a flipped digit (``24`` → ``04``) refuses the
next write with an error naming ``relaystore doctor --repair``; an older, unchecked counter is
compared with the records once. Redis' counters are checked inside the append scripts and
rebuilt from the data there, so ``02`` or a non-digit byte never breaks appends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import relaystore
from relaystore.errors import CorruptRecord
from relaystore.models import CheckpointMetadata
from relaystore.stores import Store
from relaystore.stores.doctor import diagnose
from tests.support.redis_stores import fresh_prefixed, raw_client
from tests.support.services import ensure_redis

EVENT = {"type": "progress", "stage": "s"}


def meta(thread: str, cid: str) -> CheckpointMetadata:
    return CheckpointMetadata(id=cid, thread_id=thread)


async def fill(store: Store, outputs: int = 20, checkpoints: int = 4) -> None:
    for _ in range(outputs):
        await store.outputs.append("t", 0, "a", EVENT)
    for i in range(checkpoints):
        await store.checkpoints.save("th", meta("th", f"c{i}"), b"")


# --------------------------------------------------------------------------- file


@pytest.fixture
async def file_store(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect(f"file://{tmp_path}/s") as store:
        yield store


async def test_a_damaged_digit_refuses_writes_until_doctor_repairs_it(
    file_store: Store, tmp_path: Path
) -> None:
    await fill(file_store)  # seq 24 handed out last
    counter = tmp_path / "s" / "seq"
    assert int(counter.read_text().split()[0]) == 24
    counter.write_text(counter.read_text().replace("24 ", "04 ", 1))
    for write in (
        file_store.outputs.append("t", 0, "a", EVENT),
        file_store.checkpoints.save("th", meta("th", "c9"), b"", expected_head="c3"),
    ):
        with pytest.raises(CorruptRecord, match=r"relaystore doctor --url file://\S+ --repair"):
            await write
    assert len(await file_store.outputs.list()) == 20  # nothing written
    assert await file_store.checkpoints.head("th") == "c3"

    report = await diagnose(file_store)
    assert [(c.trusted, c.expected) for c in report.counters] == [(False, 24)] and not report.healthy
    repaired = await diagnose(file_store, repair=True)
    assert repaired.counters[0].repaired and repaired.healthy
    assert (await diagnose(file_store)).counters[0].trusted

    # the compare-and-set save lands at the head of its thread, never in its middle
    await file_store.checkpoints.save("th", meta("th", "c9"), b"", expected_head="c3")
    assert [m.id for m in await file_store.checkpoints.list("th")] == ["c0", "c1", "c2", "c3", "c9"]
    assert (await file_store.checkpoints.load_latest("th")).metadata.id == "c9"
    seqs = [r.seq for r in await file_store.outputs.list()]
    new = await file_store.outputs.get(await file_store.outputs.append("t", 0, "a", EVENT))
    assert new.seq == 26 and new.seq > max(seqs)


@pytest.mark.parametrize(("text", "accepted"), [("04\n", False), ("30\n", True), ("x4\n", False)])
async def test_an_unchecked_counter_is_compared_with_the_records(
    file_store: Store, tmp_path: Path, text: str, accepted: bool
) -> None:
    await fill(file_store)
    (tmp_path / "s" / "seq").write_text(text)  # the older form, or one that is no number at all
    if not accepted:
        with pytest.raises(CorruptRecord, match="relaystore doctor"):
            await file_store.outputs.append("t", 0, "a", EVENT)
        return
    ref = await file_store.outputs.append("t", 0, "a", EVENT)
    assert (await file_store.outputs.get(ref)).seq == 31
    assert int((tmp_path / "s" / "seq").read_text().split()[0]) == 31  # checked from now on


# --------------------------------------------------------------------------- redis


@pytest.fixture
async def redis_store() -> AsyncIterator[Store]:
    if reason := ensure_redis():
        pytest.skip(reason)
    async with fresh_prefixed("redis://127.0.0.1:6379/0") as store:
        yield store


@pytest.mark.parametrize("damage", [b"02", b"1\xff", b"", b"-5"])
async def test_a_damaged_redis_counter_never_breaks_appends(redis_store: Store, damage: bytes) -> None:
    await fill(redis_store)
    outputs_seq, checkpoints_seq = redis_store.outputs._seq, redis_store.checkpoints._seq  # type: ignore[attr-defined]
    client = raw_client("redis://127.0.0.1:6379/0")
    try:
        for key in (outputs_seq, checkpoints_seq):
            await client.set(key, damage)
        report = await diagnose(redis_store)
        assert [c.trusted for c in report.counters] == [False, False]

        before = max(r.seq for r in await redis_store.outputs.list())
        first = await redis_store.outputs.get(await redis_store.outputs.append("t", 0, "a", EVENT))
        second = await redis_store.outputs.get(await redis_store.outputs.append("t", 0, "a", EVENT))
        assert before < first.seq < second.seq
        await redis_store.checkpoints.save("th", meta("th", "c9"), b"", expected_head="c3")
        assert [m.id for m in await redis_store.checkpoints.list("th")] == ["c0", "c1", "c2", "c3", "c9"]
        assert (await client.get(outputs_seq)) == str(second.seq).encode()  # rebuilt by the append
    finally:
        await client.aclose()


async def test_doctor_repairs_a_redis_counter_from_the_data(redis_store: Store) -> None:
    await fill(redis_store, outputs=12, checkpoints=2)
    outputs_seq = redis_store.outputs._seq  # type: ignore[attr-defined]
    client = raw_client("redis://127.0.0.1:6379/0")
    try:
        await client.set(outputs_seq, b"02")
        found = await diagnose(redis_store)
        assert "canonical" in found.counters[0].detail and not found.healthy
        repaired = await diagnose(redis_store, repair=True)
        assert repaired.counters[0].repaired and repaired.healthy
        assert await client.get(outputs_seq) == b"12"
        assert (await diagnose(redis_store)).counters[0].trusted
    finally:
        await client.aclose()
