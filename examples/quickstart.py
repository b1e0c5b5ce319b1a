"""A tour of relaystore: thread checkpoints, swarm outputs with lineage, NeMo Relay adaptive state.

    python examples/quickstart.py --url sqlite:///./relaystore.db      # or: make run

It writes through the library, then shows what it wrote with the ``relaystore`` CLI views. Every
run uses fresh ids, so it can run again on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import relaystore
from relaystore.errors import Conflict
from relaystore.models import (
    ArtifactEvent,
    CallRecord,
    CheckpointMetadata,
    ExecutionPlan,
    FinalEvent,
    MetadataEnvelope,
    Metrics,
    ParallelGroup,
    ParallelHint,
    Prediction,
    RunRecord,
    TrieEnvelope,
    TrieNode,
    inline,
)


class Tour:
    """The ids one run of the tour writes: suffixed so that reruns never collide."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.thread = f"support-chat-{tag}"
        self.task = f"market-report-{tag}"
        self.agent = f"research-agent-{tag}"
        self.planner_ref = ""
        self.writer_ref = ""


# --------------------------------------------------------------------------- checkpoints


async def save_checkpoints(store: relaystore.Store, tour: Tour) -> None:
    """Three steps of a conversation, each saved only if the thread head is what we last saw."""
    head = None
    for step, (label, state) in enumerate(
        [("greeting", b'{"messages": 1}'), ("lookup", b'{"messages": 3}'), ("answer", b'{"messages": 4}')]
    ):
        metadata = CheckpointMetadata.new(tour.thread, step, label=label, parent_id=head)
        head = await store.checkpoints.save(tour.thread, metadata, state, expected_head=head)
    first = (await store.checkpoints.list(tour.thread, limit=1))[0].id
    try:  # a second worker that still believes the first checkpoint is the head loses the race
        stale = CheckpointMetadata.new(tour.thread, 1, label="stale")
        await store.checkpoints.save(tour.thread, stale, b"{}", expected_head=first)
    except Conflict as exc:
        print(f"compare-and-set refused a stale write: {exc}")


# --------------------------------------------------------------------------- outputs


async def append_outputs(store: relaystore.Store, tour: Tour) -> None:
    """A small swarm: a planner, two researchers working from its plan, a writer joining them."""
    outputs = store.outputs
    plan = FinalEvent(content=inline({"questions": ["market size", "competitors"]}), ok=True)
    tour.planner_ref = await outputs.append(tour.task, 0, "planner", plan)
    notes = []
    for topic in ("market size", "competitors"):
        event = ArtifactEvent(name=f"notes: {topic}", content=inline(f"3 sources on {topic}"))
        notes.append(await outputs.append(tour.task, 0, "researcher", event, parent_refs=[tour.planner_ref]))
    report = FinalEvent(content=inline("# Market report\n..."), ok=True)
    tour.writer_ref = await outputs.append(tour.task, 0, "writer", report, parent_refs=notes)


# --------------------------------------------------------------------------- adaptive state


def uuid7() -> str:
    """A time-ordered UUID v7, as NeMo Relay gives its runs (Python 3.11 has no ``uuid.uuid7``)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
    return str(uuid.UUID(int=value | 0b10 << 62 | rand & (2**62 - 1)))


def sample_run(agent: str, started: datetime) -> RunRecord:
    """One run as NeMo Relay records it: planner LLM, two parallel tools, writer LLM."""

    def at(ms: int) -> str:
        return (started + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    llm = {"kind": "llm", "model_name": "nemotron-mini"}
    calls = [
        CallRecord(**llm, name="planner", started_at=at(0), ended_at=at(300),
                   prompt_tokens=42, output_tokens=17, total_tokens=59, tool_call_count=2),
        CallRecord(kind="tool", name="search", started_at=at(310), ended_at=at(790)),
        CallRecord(kind="tool", name="fetch", started_at=at(311), ended_at=at(850)),
        CallRecord(**llm, name="writer", started_at=at(900), ended_at=at(1240),
                   prompt_tokens=310, output_tokens=120, total_tokens=430, tool_call_count=0),
    ]  # fmt: skip
    return RunRecord(id=uuid7(), agent_id=agent, calls=calls, started_at=at(0), ended_at=at(1250))


def sample_plan(agent: str, run_id: str) -> ExecutionPlan:
    """The plan NeMo Relay learns from such runs: search and fetch may run in parallel."""
    group = "fanout:sha256:98257"
    hints = [ParallelHint(tool_name=tool, group_id=group, explicit=False) for tool in ("fetch", "search")]
    return ExecutionPlan(
        agent_id=agent,
        parallel_groups=[ParallelGroup(group_id=group, tool_names=["fetch", "search"])],
        metadata_template=MetadataEnvelope(run_id=run_id, agent_id=agent, parallel_hints=hints),
    )


def prediction(remaining: float, gap_ms: float, tokens: float, sensitivity: int) -> Prediction:
    def metrics(mean: float, n: int = 3) -> Metrics:
        return Metrics(sample_count=n, mean=mean, p50=mean, p90=mean * 1.2, p95=mean * 1.3)

    return Prediction(
        remaining_calls=metrics(remaining),
        interarrival_ms=metrics(gap_ms, n=2),
        output_tokens=metrics(tokens),
        latency_sensitivity=sensitivity,
    )


def sample_trie(agent: str) -> TrieEnvelope:
    """The prediction trie: per LLM name, what tends to follow its first call."""
    planner = TrieNode(name="planner", predictions_by_call_index={"1": prediction(1, 600, 17, 3)})
    writer = TrieNode(name="writer", predictions_by_call_index={"1": prediction(0, 0, 120, 1)})
    return TrieEnvelope(
        generated_at=datetime.now(UTC).isoformat(),
        workflow_name=agent,
        root=TrieNode(
            name="root",
            children={"planner": planner, "writer": writer},
            predictions_any_index=prediction(0.5, 300, 68.5, 3),
        ),
    )


async def store_adaptive(store: relaystore.Store, tour: Tour) -> None:
    """Three recorded runs, the plan learned from them and the prediction trie."""
    runs = [sample_run(tour.agent, datetime.now(UTC) - timedelta(minutes=m)) for m in (30, 20, 10)]
    for run in runs:
        await store.adaptive.store_run(run)
    await store.adaptive.store_plan(sample_plan(tour.agent, runs[-1].id))
    await store.adaptive.store_trie(tour.agent, sample_trie(tour.agent))


# --------------------------------------------------------------------------- the tour


async def write_everything(url: str, tour: Tour) -> None:
    async with relaystore.connect(url) as store:
        print(f"opened {store!r}")
        await save_checkpoints(store, tour)
        await append_outputs(store, tour)
        await store_adaptive(store, tour)


def show(url: str, *args: str) -> None:
    """Run one ``relaystore`` command in this process (so ``memory://NAME`` works too)."""
    from relaystore.cli import app

    print(f"\n$ relaystore {' '.join(args)}", flush=True)
    app([*args, "--url", url], prog_name="relaystore", standalone_mode=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("RELAYSTORE_URL", "sqlite:///./relaystore.db"))
    url = parser.parse_args().url
    if not sys.stdout.isatty():  # piped: give the tables more room than Rich's 80-column default
        os.environ.setdefault("COLUMNS", "120")

    tour = Tour()
    asyncio.run(write_everything(url, tour))
    print(f"\nEvery command below also takes --url (or RELAYSTORE_URL); here it is {url}")
    show(url, "threads", "--limit", "10")
    show(url, "checkpoints", tour.thread)
    show(url, "outputs", tour.task, "0")
    show(url, "lineage", tour.planner_ref)
    show(url, "lineage", tour.writer_ref)
    show(url, "runs", tour.agent)
    show(url, "plan", tour.agent)
    show(url, "trie", tour.agent)


if __name__ == "__main__":
    main()
