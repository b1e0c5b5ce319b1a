"""Several processes writing one file store at once lose nothing and never share a seq."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
from pathlib import Path

import relaystore
from relaystore.models import AccumulatorState, CheckpointMetadata

PROCESSES = 3
WRITES = 100


def bump(state: AccumulatorState | None) -> AccumulatorState:
    count = 0 if state is None or "" not in state.nodes else state.nodes[""].all_remaining_calls.count
    return AccumulatorState.model_validate({"nodes": {"": {"all_remaining_calls": {"count": count + 1}}}})


async def write_many(url: str, worker: int) -> None:
    async with relaystore.connect(url) as store:
        for i in range(WRITES):
            await store.outputs.append(f"task-{worker}", 0, "writer", {"type": "progress", "stage": str(i)})
            metadata = CheckpointMetadata(id=f"w{worker}-{i}", thread_id="shared")
            await store.checkpoints.save("shared", metadata, f"{worker}:{i}".encode())
            await store.adaptive.update_accumulators("agent", bump)


def worker_main(url: str, worker: int) -> None:
    asyncio.run(write_many(url, worker))


async def test_processes_lose_no_write_and_share_no_seq(tmp_path: Path) -> None:
    root = tmp_path / "s"
    url = f"file://{root}"
    async with relaystore.connect(url):
        pass  # create the store before the race, so every worker opens an existing one
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=worker_main, args=(url, n)) for n in range(PROCESSES)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(300)
    assert [p.exitcode for p in workers] == [0] * PROCESSES

    total = PROCESSES * WRITES
    async with relaystore.connect(url) as store:
        outputs = await store.outputs.list()
        checkpoints = await store.checkpoints.list("shared")
        counters = await store.adaptive.load_accumulators("agent")
        for worker in range(PROCESSES):
            stages = [r.event.stage for r in await store.outputs.list(task_id=f"task-{worker}")]  # type: ignore[union-attr]
            assert stages == [str(i) for i in range(WRITES)]  # each process's order is kept
    assert len(outputs) == total and len({r.seq for r in outputs}) == total
    assert [r.seq for r in outputs] == sorted(r.seq for r in outputs)
    assert {m.id for m in checkpoints} == {f"w{w}-{i}" for w in range(PROCESSES) for i in range(WRITES)}
    assert counters is not None and counters.nodes[""].all_remaining_calls.count == total

    checkpoint_files = os.listdir(root / "checkpoints" / "shared")
    checkpoint_seqs = [int(m.group(1)) for n in checkpoint_files if (m := re.match(r"(\d{20})-.*\.json$", n))]
    all_seqs = sorted(checkpoint_seqs + [r.seq for r in outputs])
    assert all_seqs == list(range(1, 2 * total + 1))  # one seq per record, none shared or skipped
