"""Reading a store back after a crash: every acknowledged write is there, nothing torn is visible."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from relaystore.errors import NotFound
from relaystore.stores import Store
from relaystore.testing import docs
from tests.reliability.writer import AGENT, COUNTER, TASK, THREAD, state_for


@dataclass
class Acks:
    """What a writer printed, i.e. what the store acknowledged, over all its lives."""

    outputs: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    increments: int = 0

    def add(self, line: str) -> None:
        kind, _, value = line.strip().partition(" ")
        if kind == "increment":
            self.increments += 1
        elif kind in ("output", "checkpoint", "run"):
            getattr(self, kind + "s").append(value)
        else:
            raise AssertionError(f"the writer printed {line!r}")

    @property
    def total(self) -> int:
        return len(self.outputs) + len(self.checkpoints) + len(self.runs) + self.increments


@contextmanager
def skipped_records() -> Iterator[list[logging.LogRecord]]:
    """Collect the warnings listings log when they skip an undecodable record."""
    found: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = found.append  # type: ignore[method-assign]
    logger = logging.getLogger("relaystore")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


async def verify_crashed_store(store: Store, acks: Acks, lives: int) -> int:
    """Assert the store holds every acknowledged write and no partial record; return how many
    acknowledged writes are missing (counted for the soak table before the test fails on it).

    A killed writer may have had one write of each kind in flight, which may or may not have
    landed: so at most ``lives`` records beyond the acknowledged ones may be listed.
    """
    with skipped_records() as skipped:
        lost = await _lost_outputs(store, acks) + await _lost_checkpoints(store, acks)
        lost += await _lost_runs(store, acks)
        counter = docs.counter_of(await store.adaptive.load_accumulators(COUNTER))
        lost += max(0, acks.increments - counter)
        await _check_listings(store, acks, lives)
    assert acks.increments <= counter <= acks.increments + lives
    assert not skipped, f"a listing skipped a torn record: {skipped[0].getMessage()}"
    return lost


async def _lost_outputs(store: Store, acks: Acks) -> int:
    lost = 0
    for ref in acks.outputs:
        try:
            assert (await store.outputs.get(ref)).id == ref
        except NotFound:
            lost += 1
    return lost


async def _lost_checkpoints(store: Store, acks: Acks) -> int:
    lost = 0
    for checkpoint_id in acks.checkpoints:
        try:
            loaded = await store.checkpoints.load(THREAD, checkpoint_id)
        except NotFound:
            lost += 1
            continue
        assert loaded.state == state_for(checkpoint_id)
    return lost


async def _lost_runs(store: Store, acks: Acks) -> int:
    listed = {run.id for run in await store.adaptive.list_runs(AGENT)}
    return len(set(acks.runs) - listed)


async def _check_listings(store: Store, acks: Acks, lives: int) -> None:
    """Listings and counts agree, every listed record is whole, and lineage/CAS chains hold."""
    outputs = list(await store.outputs.list(task_id=TASK))
    seqs = [record.seq for record in outputs]
    assert seqs == sorted(set(seqs)), "output seqs must be unique and increasing in store order"
    assert len(outputs) - len(acks.outputs) <= lives
    listed_refs = {record.id for record in outputs}
    for record in outputs:  # every parent of a listed output is itself whole and readable
        for parent in record.parent_refs:
            assert parent in listed_refs and (await store.outputs.get(parent)).id == parent

    metadata = list(await store.checkpoints.list(THREAD))
    assert await store.checkpoints.count(THREAD) == len(metadata)
    assert len(metadata) - len(acks.checkpoints) <= lives
    previous = None
    for m in metadata:  # every save was a CAS on the head, so the thread is one unbroken chain
        assert m.parent_id == previous, f"checkpoint {m.id} does not follow {previous}"
        loaded = await store.checkpoints.load(THREAD, m.id)
        assert loaded.state == state_for(m.id) and loaded.metadata.state_size == len(loaded.state)
        previous = m.id
    if metadata:
        assert await store.checkpoints.head(THREAD) == metadata[-1].id

    runs = list(await store.adaptive.list_runs(AGENT))
    assert await store.adaptive.count_runs(AGENT) == len(runs), "run index and run records disagree"
    assert len(runs) - len(acks.runs) <= lives
