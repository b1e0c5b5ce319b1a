"""SIGKILL a writer of a file store at random moments: every acknowledged write survives.

The writer (this file run as a script) appends outputs and saves checkpoints in a loop and prints
each id only after the call returned. The test kills it at a random point, several times over the
same store, then checks that every printed id is readable and that no torn file is visible.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import relaystore
from relaystore.errors import ThreadNotFound
from relaystore.models import CheckpointMetadata

KILLS = 5
THREAD = "crash-thread"
ROOT = Path(__file__).resolve().parent.parent


def state_for(checkpoint_id: str) -> bytes:
    """A state whose size varies, so a torn write would show as a wrong length or content."""
    return checkpoint_id.encode() * (1 + zlib.crc32(checkpoint_id.encode()) % 2000)


async def write_forever(url: str, life: int) -> None:
    async with relaystore.connect(url) as store:
        for i in range(10**9):
            ref = await store.outputs.append("task", life, "writer", {"type": "progress", "stage": str(i)})
            print(f"output {ref}", flush=True)
            checkpoint_id = f"life{life}-{i}"
            metadata = CheckpointMetadata(id=checkpoint_id, thread_id=THREAD)
            await store.checkpoints.save(THREAD, metadata, state_for(checkpoint_id))
            print(f"checkpoint {checkpoint_id}", flush=True)


def start_writer(url: str, life: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, __file__, url, str(life)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


def kill_after_some_acks(writer: subprocess.Popen[str], rng: random.Random, jitter: float = 0.0) -> list[str]:
    """Let the writer acknowledge a random number of writes, SIGKILL it, return every ack.

    ``jitter``: wait up to that many seconds after the last ack read, so that the kill lands
    anywhere in a write, not only at its start."""
    assert writer.stdout is not None
    acks = []
    for _ in range(rng.randint(1, 60)):
        line = writer.stdout.readline()
        assert line, f"the writer exited early with {writer.wait()}"
        acks.append(line.strip())
    time.sleep(rng.uniform(0, jitter))
    writer.send_signal(signal.SIGKILL)  # mid-write most of the time: it never stops writing
    rest, _ = writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    return acks + [line for line in rest.splitlines() if line]


@pytest.mark.timeout(300)
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "store"
    url = f"file://{root}"
    rng = random.Random()
    acks: list[str] = []
    for life in range(KILLS):
        acks += kill_after_some_acks(start_writer(url, life), rng)

    outputs = [line.split()[1] for line in acks if line.startswith("output ")]
    checkpoints = [line.split()[1] for line in acks if line.startswith("checkpoint ")]
    assert outputs and checkpoints
    async with relaystore.connect(url) as store:
        for ref in outputs:
            assert (await store.outputs.get(ref)).id == ref
        for checkpoint_id in checkpoints:
            assert (await store.checkpoints.load(THREAD, checkpoint_id)).state == state_for(checkpoint_id)

        listed = await store.outputs.list()
        assert set(outputs) <= {r.id for r in listed}
        assert len({r.seq for r in listed}) == len(listed)
        metadata = await store.checkpoints.list(THREAD)
        assert set(checkpoints) <= {m.id for m in metadata}
        for m in metadata:  # every listed checkpoint has its full state
            assert (await store.checkpoints.load(THREAD, m.id)).state == state_for(m.id)
    assert not [name for _, _, names in os.walk(root) for name in names if name.startswith(".tmp-")]


def committed_ids(root: Path) -> list[str]:
    """The checkpoint ids whose metadata file exists, in seq order: what the index must agree with."""
    directory = root / "checkpoints" / THREAD
    names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and n[:20].isdigit())
    return [json.loads((directory / n).read_text())["id"] for n in names]


@pytest.mark.timeout(300)
async def test_a_reader_that_stays_open_agrees_with_the_files_after_each_sigkill(tmp_path: Path) -> None:
    """The index after a killed writer (a dangling write-ahead line, a torn append) is read right
    by a store opened before the kill, which never repairs it at open; the next open makes the
    index equal to what the files say."""
    root = tmp_path / "store"
    url = f"file://{root}"
    rng = random.Random()
    acks: list[str] = []
    async with relaystore.connect(url) as reader:
        for life in range(KILLS):
            acks += kill_after_some_acks(start_writer(url, life), rng, jitter=0.03)
            acknowledged = [line.split()[1] for line in acks if line.startswith("checkpoint ")]
            committed = committed_ids(root)
            assert set(acknowledged) <= set(committed)
            assert [m.id for m in await reader.checkpoints.list(THREAD)] == committed
            assert [m.id for m in await reader.checkpoints.list(THREAD, newest_first=True, limit=5)] == (
                committed[::-1][:5]
            )
            if not committed:  # the random kill came before the first save committed
                with pytest.raises(ThreadNotFound):
                    await reader.checkpoints.load_latest(THREAD)
                assert await reader.checkpoints.head(THREAD) is None
                continue
            assert (await reader.checkpoints.load_latest(THREAD)).metadata.id == committed[-1]
            assert await reader.checkpoints.head(THREAD) == committed[-1]
    async with relaystore.connect(url):
        index = (root / "checkpoints" / THREAD / ".index").read_bytes()
    assert [line.split()[2].decode() for line in index.splitlines()] == committed_ids(root)


if __name__ == "__main__":
    asyncio.run(write_forever(sys.argv[1], int(sys.argv[2])))
