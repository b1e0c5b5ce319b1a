"""A writer that never stops: ``python -m tests.reliability.writer URL LIFE``.

It cycles through the four kinds of write (an output appended with its predecessor as parent, a
checkpoint saved with compare-and-set on the head, a run, an accumulator increment) and prints one
line per write only after the call returned, flushed, so the parent test knows exactly which
writes were acknowledged when it SIGKILLs this process.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import zlib

import relaystore
from relaystore.models import CheckpointMetadata
from relaystore.testing import docs

THREAD = "crash-thread"
TASK = "crash-task"
AGENT = "crash-agent"
COUNTER = "crash-counter"


def state_for(checkpoint_id: str) -> bytes:
    """A state of varying size derived from the id, so a torn write shows as a wrong value."""
    return checkpoint_id.encode() * (1 + zlib.crc32(checkpoint_id.encode()) % 3000)


def ack(kind: str, value: str) -> None:
    print(kind, value, flush=True)


async def write_forever(url: str, life: int) -> None:
    async with relaystore.connect(url) as store:
        head = await store.checkpoints.head(THREAD)
        parent: list[str] = []
        for i in itertools.count():
            kind = i % 4
            if kind == 0:
                event = {"type": "progress", "stage": f"life {life} step {i}"}
                ref = await store.outputs.append(TASK, life, "writer", event, parent_refs=parent)
                parent = [ref]
                ack("output", ref)
            elif kind == 1:
                checkpoint_id = f"life{life}-{i}"
                metadata = CheckpointMetadata(id=checkpoint_id, thread_id=THREAD, step=i, parent_id=head)
                await store.checkpoints.save(THREAD, metadata, state_for(checkpoint_id), expected_head=head)
                head = checkpoint_id
                ack("checkpoint", checkpoint_id)
            elif kind == 2:
                run = docs.run_record(AGENT)
                await store.adaptive.store_run(run)
                ack("run", run.id)
            else:
                await store.adaptive.update_accumulators(COUNTER, docs.incremented)
                ack("increment", str(i))


if __name__ == "__main__":
    asyncio.run(write_forever(sys.argv[1], int(sys.argv[2])))
