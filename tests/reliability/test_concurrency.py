"""Four processes × N mixed operations on one store, per backend: nothing is lost.

Each worker (spawned, sharing nothing with the parent) cycles through five operations: a save on
its own thread (CAS on its own head), a compare-and-set round on a shared thread, an output
append (its previous output as parent) to a shared task, a run of a shared agent, and an increment
of a shared accumulator document. CAS rounds are lock-stepped with a barrier: every worker reads
the head, all wait, then all save with ``expected_head=head``; exactly one may win each round.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import traceback
from collections import Counter
from typing import Any

import pytest

import relaystore
from relaystore.errors import Conflict
from relaystore.models import CheckpointMetadata
from relaystore.testing import docs
from tests.reliability.conftest import BACKENDS, Tally

WORKERS = 4
SIZES = [pytest.param(250, id="ci"), pytest.param(1000, id="soak", marks=pytest.mark.soak)]
SHARED_THREAD = "cas-thread"
TASK = "shared-task"
AGENT = "shared-agent"
COUNTER = "shared-counter"
BARRIER_TIMEOUT = 120.0


class Worker:
    """One process's share of the load and its report of what the store acknowledged."""

    def __init__(self, store: relaystore.Store, worker: int, barrier: Any) -> None:
        self.store = store
        self.worker = worker
        self.barrier = barrier
        self.head: str | None = None
        self.parent: list[str] = []
        self.report: dict[str, Any] = {
            "checkpoints": [],
            "cas": [],
            "outputs": [],
            "runs": [],
            "increments": 0,
            "errors": [],
        }

    async def step(self, i: int) -> None:
        kind = i % 5
        if kind == 1:
            await self.cas_round(i)  # never skipped: every worker must meet every barrier
            return
        operation = {0: self.own_save, 2: self.append, 3: self.store_run, 4: self.increment}[kind]
        try:
            await operation(i)
        except Exception:  # anything raised is reported; the parent asserts there is none
            self.report["errors"].append(traceback.format_exc(limit=4))

    async def own_save(self, i: int) -> None:
        thread = f"own-{self.worker}"
        metadata = CheckpointMetadata(id=f"w{self.worker}-{i}", thread_id=thread, step=i)
        await self.store.checkpoints.save(thread, metadata, b"%d" % i, expected_head=self.head)
        self.head = metadata.id
        self.report["checkpoints"].append(metadata.id)

    async def cas_round(self, i: int) -> None:
        """Read the shared head, wait for everyone to have read it, then race to save on it."""
        round_no = i // 5
        try:
            await asyncio.to_thread(self.barrier.wait, BARRIER_TIMEOUT)  # last round's saves are done
            head = await self.store.checkpoints.head(SHARED_THREAD)
            await asyncio.to_thread(self.barrier.wait, BARRIER_TIMEOUT)  # everyone holds the same head
            metadata = CheckpointMetadata(
                id=f"r{round_no}-w{self.worker}", thread_id=SHARED_THREAD, step=round_no, parent_id=head
            )
            try:
                await self.store.checkpoints.save(SHARED_THREAD, metadata, b"", expected_head=head)
                self.report["cas"].append((round_no, head, True))
            except Conflict:
                self.report["cas"].append((round_no, head, False))
        except Exception:
            self.report["errors"].append(traceback.format_exc(limit=4))

    async def append(self, i: int) -> None:
        event = docs.artifact_event(name=f"w{self.worker}-{i}")
        ref = await self.store.outputs.append(TASK, 1, f"agent-{self.worker}", event, parent_refs=self.parent)
        self.parent = [ref]
        self.report["outputs"].append(str(ref))

    async def store_run(self, i: int) -> None:
        run = docs.run_record(AGENT)
        await self.store.adaptive.store_run(run)
        self.report["runs"].append(run.id)

    async def increment(self, i: int) -> None:
        await self.store.adaptive.update_accumulators(COUNTER, docs.incremented)
        self.report["increments"] += 1


async def _work(url: str, worker: int, operations: int, barrier: Any) -> dict[str, Any]:
    async with relaystore.connect(url) as store:
        worker_state = Worker(store, worker, barrier)
        for i in range(operations):
            await worker_state.step(i)
        return worker_state.report


def _worker(url: str, worker: int, operations: int, barrier: Any, results: Any) -> None:
    try:
        results.put((worker, asyncio.run(_work(url, worker, operations, barrier))))
    except BaseException:
        barrier.abort()  # release the others at once rather than at the barrier timeout
        results.put((worker, {"errors": [traceback.format_exc()]}))


def run_workers(url: str, operations: int) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    barrier = context.Barrier(WORKERS)
    processes = [
        context.Process(target=_worker, args=(url, w, operations, barrier, results)) for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        reports = dict(results.get(timeout=1500) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.exitcode is None:
                process.kill()
    return [reports[w] for w in range(WORKERS)]


def error_types(reports: list[dict[str, Any]]) -> Counter[str]:
    """The exception class named on the last line of each reported traceback."""
    return Counter(
        e.strip().splitlines()[-1].partition(":")[0].rpartition(".")[2] for r in reports for e in r["errors"]
    )


def check_cas_rounds(reports: list[dict[str, Any]], rounds: int) -> list[str]:
    """Exactly one winner per round, every worker saw the previous round's winner as head;
    return the winners in round order."""
    by_round: dict[int, list[tuple[int, str | None, bool]]] = {}
    for worker, report in enumerate(reports):
        for round_no, head, won in report["cas"]:
            by_round.setdefault(round_no, []).append((worker, head, won))
    winners: list[str] = []
    for round_no in range(rounds):
        entries = by_round[round_no]
        assert len(entries) == WORKERS
        heads = {head for _, head, _ in entries}
        assert heads == {winners[-1] if winners else None}, f"round {round_no}: heads {heads}"
        won = [worker for worker, _, ok in entries if ok]
        assert len(won) == 1, f"round {round_no}: {len(won)} winners"
        winners.append(f"r{round_no}-w{won[0]}")
    return winners


async def check_store(url: str, reports: list[dict[str, Any]], operations: int) -> int:
    """Read everything back; return how many acknowledged writes are missing."""
    lost = 0
    async with relaystore.connect(url) as store:
        for worker, report in enumerate(reports):
            listed = [m.id for m in await store.checkpoints.list(f"own-{worker}")]
            lost += len(set(report["checkpoints"]) - set(listed))
            assert listed == report["checkpoints"]
            mine = [r.id for r in await store.outputs.list(producer_agent=f"agent-{worker}")]
            lost += len(set(report["outputs"]) - set(mine))
            assert mine == report["outputs"], "one process's appends keep their order"

        winners = check_cas_rounds(reports, (operations + 3) // 5)
        shared = list(await store.checkpoints.list(SHARED_THREAD))
        assert [m.id for m in shared] == winners
        assert [m.parent_id for m in shared] == [None, *winners[:-1]]

        outputs = list(await store.outputs.list(task_id=TASK))
        acked = [ref for report in reports for ref in report["outputs"]]
        seqs = [record.seq for record in outputs]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert sorted(r.id for r in outputs) == sorted(acked)

        runs = [run.id for run in await store.adaptive.list_runs(AGENT)]
        acked_runs = [run for report in reports for run in report["runs"]]
        lost += len(set(acked_runs) - set(runs))
        assert sorted(runs) == sorted(acked_runs)
        assert await store.adaptive.count_runs(AGENT) == len(acked_runs)
        for report in reports:  # each process's runs stay in its own order
            assert [r for r in runs if r in set(report["runs"])] == report["runs"]

        increments = sum(report["increments"] for report in reports)
        counter = docs.counter_of(await store.adaptive.load_accumulators(COUNTER))
        lost += max(0, increments - counter)
        assert counter == increments
    return lost


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("operations", SIZES)
@pytest.mark.parametrize("backend", BACKENDS)
async def test_four_processes_lose_nothing_and_cas_has_one_winner_per_round(
    backend: str,
    operations: int,
    store_url,
    tally: Tally,  # type: ignore[no-untyped-def]
) -> None:
    async with store_url(backend) as url:
        async with relaystore.connect(url):
            pass  # create the schema first, so the workers race on writes and not on migrations
        reports = await asyncio.to_thread(run_workers, url, operations)
        errors = error_types(reports)
        tally.add(backend, operations=WORKERS * operations, errors=errors)
        assert not errors, next(e for r in reports for e in r["errors"])
        lost = await check_store(url, reports, operations)
        tally.add(backend, lost=lost)
        assert lost == 0
