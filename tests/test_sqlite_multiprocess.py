"""Four processes write one SQLite file at once; every acknowledged write must be there afterwards.

Each worker (spawned, so it shares nothing with the parent) does 500 mixed writes: checkpoint
saves on its own thread, compare-and-set saves on a shared thread (losing with Conflict is an
allowed, counted outcome), output appends, runs, and accumulator increments. It reports what the
store acknowledged and any other exception; the parent then reads everything back.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import pytest

import relaystore
from relaystore.errors import Conflict
from relaystore.models import CheckpointMetadata
from relaystore.testing import docs

WORKERS = 4
WRITES = 500
SHARED_THREAD = "shared"
COUNTER_AGENT = "counter-agent"


async def _work(url: str, worker: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "checkpoints": [],
        "cas_won": [],
        "cas_conflicts": 0,
        "outputs": [],
        "runs": [],
        "increments": 0,
        "errors": [],
    }
    async with relaystore.connect(url) as store:
        for i in range(WRITES):
            try:
                await _one_write(store, worker, i, report)
            except Exception:  # everything but the expected Conflict is a failure to report
                report["errors"].append(traceback.format_exc(limit=3))
    return report


async def _one_write(store: relaystore.Store, worker: int, i: int, report: dict[str, Any]) -> None:
    kind = i % 5
    if kind == 0:
        thread = f"w{worker}"
        checkpoint_id = await store.checkpoints.save(
            thread, CheckpointMetadata(id=f"w{worker}-{i}", thread_id=thread, step=i), b"%d" % i
        )
        report["checkpoints"].append(checkpoint_id)
    elif kind == 1:
        head = await store.checkpoints.head(SHARED_THREAD)
        metadata = CheckpointMetadata(id=f"s{worker}-{i}", thread_id=SHARED_THREAD, step=i)
        try:
            await store.checkpoints.save(SHARED_THREAD, metadata, b"", expected_head=head)
            report["cas_won"].append(metadata.id)
        except Conflict:
            report["cas_conflicts"] += 1
    elif kind == 2:
        ref = await store.outputs.append(f"task-{worker}", 1, f"agent-{i % 3}", docs.artifact_event())
        report["outputs"].append(str(ref))
    elif kind == 3:
        run = docs.run_record(f"agent-{worker}")
        await store.adaptive.store_run(run)
        report["runs"].append(run.id)
    else:
        await store.adaptive.update_accumulators(COUNTER_AGENT, docs.incremented)
        report["increments"] += 1


def _worker(url: str, worker: int, results: Any) -> None:
    try:
        results.put((worker, asyncio.run(_work(url, worker))))
    except BaseException:
        results.put((worker, {"errors": [traceback.format_exc()]}))


def _run_workers(url: str) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_worker, args=(url, w, results)) for w in range(WORKERS)]
    for process in processes:
        process.start()
    reports = dict(results.get(timeout=540) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return [reports[w] for w in range(WORKERS)]


@pytest.mark.slow
async def test_four_processes_lose_no_acknowledged_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with relaystore.connect(url):
        pass  # create the schema first so the workers race on writes, not on the migration
    reports = await asyncio.to_thread(_run_workers, url)

    errors = [error for report in reports for error in report["errors"]]
    assert errors == [], errors[0]
    for report in reports:
        assert "database is locked" not in str(report)
    async with relaystore.connect(url) as store:
        for worker, report in enumerate(reports):
            listed = [m.id for m in await store.checkpoints.list(f"w{worker}")]
            assert listed == report["checkpoints"]
            assert len(listed) == WRITES // 5
            assert [r.id for r in await store.adaptive.list_runs(f"agent-{worker}")] == report["runs"]
            in_attempt = [r.id for r in await store.outputs.list_for_attempt(f"task-{worker}", 1)]
            assert in_attempt == report["outputs"]

        won = {checkpoint_id for report in reports for checkpoint_id in report["cas_won"]}
        shared = [m.id for m in await store.checkpoints.list(SHARED_THREAD)]
        assert set(shared) == won and len(shared) == len(won)
        assert len(won) + sum(r["cas_conflicts"] for r in reports) == WORKERS * WRITES // 5

        outputs = await store.outputs.list()
        seqs = [record.seq for record in outputs]
        assert len(outputs) == WORKERS * WRITES // 5
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        increments = sum(report["increments"] for report in reports)
        assert increments == WORKERS * WRITES // 5
        assert docs.counter_of(await store.adaptive.load_accumulators(COUNTER_AGENT)) == increments
