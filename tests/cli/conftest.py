"""A SQLite store holding a bit of everything, for the CLI tests.

- threads ``thread-a`` (3 checkpoints saved with compare-and-set) and ``thread-b`` (binary and
  empty states);
- outputs of ``task-1`` attempt 0: planner → researcher ×2 → writer, plus one in attempt 1;
- two runs of ``research-agent`` and one document of every kind.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import relaystore
from relaystore.models import (
    AccumulatorState,
    CheckpointMetadata,
    ExecutionPlan,
    MetadataEnvelope,
    Metrics,
    NodeAccumulator,
    ParallelGroup,
    ParallelHint,
    Prediction,
    PromptBlock,
    PromptIR,
    RunRecord,
    SpanScore,
    StabilityAnalysisResult,
    Stats,
    TrieEnvelope,
    TrieNode,
    file_ref,
    inline,
)
from relaystore.models.outputs import ArtifactEvent, BlobContent, FinalEvent, PartialEvent, ProgressEvent
from relaystore.stores import Store

AGENT = "research-agent"
LEARNING_KEY = "research-agent::seed=stable-scaffold::"
GROUP = "fanout:sha256:98257"
RUN_IDS = ("01a1fd9c-2cd3-7122-a5e7-3415ceaae897", "01a1fd9c-2cd3-7122-a5e7-3415ceaae898")


@dataclass
class Filled:
    """What the filled store holds, for the tests to look for."""

    url: str
    path: Path
    refs: dict[str, str] = field(default_factory=dict)  # planner, researcher1/2, writer, retry
    heads: dict[str, str] = field(default_factory=dict)


def sample_run(run_id: str) -> RunRecord:
    return RunRecord.model_validate(
        {
            "id": run_id,
            "agent_id": AGENT,
            "started_at": "2026-11-21T10:17:12.100000000Z",
            "ended_at": "2026-11-21T10:17:13.350000000Z",
            "calls": [
                {
                    "kind": "llm",
                    "name": "planner",
                    "started_at": "2026-11-21T10:17:12.100000000Z",
                    "ended_at": "2026-11-21T10:17:12.400000000Z",
                    "output_tokens": 17,
                    "prompt_tokens": 42,
                    "total_tokens": 59,
                    "tool_call_count": 2,
                    "model_name": "nemotron-mini",
                    "annotated_request": {"messages": [{"role": "user", "content": "Research topic 0"}]},
                },
                {
                    "kind": "tool",
                    "name": "search",
                    "started_at": "2026-11-21T10:17:12.410000000Z",
                    "ended_at": "2026-11-21T10:17:12.900000000Z",
                },
                {
                    "kind": "tool",
                    "name": "fetch",
                    "started_at": "2026-11-21T10:17:12.411000000Z",
                    "ended_at": "2026-11-21T10:17:12.950000000Z",
                },
                {
                    "kind": "llm",
                    "name": "writer",
                    "started_at": "2026-11-21T10:17:13.000000000Z",
                    "ended_at": "2026-11-21T10:17:13.340000000Z",
                    "output_tokens": 120,
                    "prompt_tokens": 300,
                    "total_tokens": 420,
                    "tool_call_count": 0,
                    "model_name": "nemotron-mini",
                },
            ],
        }
    )


def sample_plan() -> ExecutionPlan:
    hints = [ParallelHint(tool_name=t, group_id=GROUP, explicit=False) for t in ("fetch", "search")]
    return ExecutionPlan(
        agent_id=AGENT,
        parallel_groups=[ParallelGroup(group_id=GROUP, tool_names=["fetch", "search"])],
        metadata_template=MetadataEnvelope(run_id=RUN_IDS[0], agent_id=AGENT, parallel_hints=hints),
    )


def metrics(n: int, mean: float, p90: float | None = None) -> Metrics:
    return Metrics(sample_count=n, mean=mean, p50=mean, p90=p90 or mean, p95=p90 or mean)


def prediction(remaining: float, gap_ms: float, tokens: float, sensitivity: int | None) -> Prediction:
    return Prediction(
        remaining_calls=metrics(3, remaining),
        interarrival_ms=metrics(2, gap_ms, gap_ms * 1.5),
        output_tokens=metrics(3, tokens, tokens + 4),
        latency_sensitivity=sensitivity,
    )


def sample_trie() -> TrieEnvelope:
    writer = TrieNode(name="writer", predictions_by_call_index={"1": prediction(0, 0, 120, 1)})
    planner = TrieNode(name="planner", predictions_by_call_index={"1": prediction(1, 610, 17, 3)})
    return TrieEnvelope(
        generated_at="2026-11-21T10:17:13.346547619+00:00",
        workflow_name=AGENT,
        root=TrieNode(
            name="root",
            children={"planner": planner, "writer": writer},
            predictions_any_index=prediction(1.5, 305, 68.5, 3),
        ),
    )


def sample_accumulators() -> AccumulatorState:
    stats = Stats(count=3, mean=1.0, m2=0.0)
    return AccumulatorState(
        nodes={
            "": NodeAccumulator(all_remaining_calls=stats),
            "planner": NodeAccumulator(remaining_calls={"1": stats}),
        }
    )


def sample_observations() -> list[PromptIR]:
    block = PromptBlock(
        span_id="system-0",
        sequence_index=0,
        role="system",
        content="You are a careful planner.",
        content_type="text",
        provenance="system",
    )
    return [
        PromptIR(
            ir_id="f00deb67-d829-4a02-bff2-22de8d7ba095",
            blocks=[block],
            created_at="2026-11-21T10:17:12.987253691Z",
        )
    ]


def sample_stability() -> StabilityAnalysisResult:
    return StabilityAnalysisResult(
        scores=[
            SpanScore(
                span_id="system-0", classification="stable", score=1.0, confidence=0.3, observation_count=6
            )
        ],
        stable_prefix_length=1,
        stable_prefix_fingerprint="sha256:5853977",
        total_observations=6,
    )


async def fill(store: Store, filled: Filled) -> None:
    """Write the sample data through the public API."""
    head = None
    for step, label in enumerate(("plan", "research", "draft")):
        meta = CheckpointMetadata.new("thread-a", step, label=label, parent_id=head, tags=["demo"])
        head = await store.checkpoints.save(
            "thread-a", meta.with_custom("model", "nemotron"), f"state {step}".encode(), expected_head=head
        )
    filled.heads["thread-a"] = head
    filled.heads["thread-b"] = await store.checkpoints.save(
        "thread-b", CheckpointMetadata.new("thread-b"), bytes(range(256))
    )
    await store.checkpoints.save("thread-b", CheckpointMetadata.new("thread-b", 1), b"")

    out = store.outputs
    refs = filled.refs
    refs["planner"] = await out.append(
        "task-1", 0, "planner", FinalEvent(content=inline({"steps": 2}), ok=True)
    )
    for i in (1, 2):
        await out.append("task-1", 0, f"researcher{i}", ProgressEvent(stage="searching", note="web"))
        refs[f"researcher{i}"] = await out.append(
            "task-1",
            0,
            "researcher",
            ArtifactEvent(name=f"notes-{i}", content=file_ref(f"/tmp/n{i}.md")),
            parent_refs=[refs["planner"]],
        )
    await out.append("task-1", 0, "writer", PartialEvent(chunk=inline("Once upon")))
    blob = BlobContent(sha256="ab" * 32, size=2048, mime="text/markdown")
    refs["writer"] = await out.append(
        "task-1",
        0,
        "writer",
        FinalEvent(content=blob, ok=True),
        parent_refs=[refs["researcher1"], refs["researcher2"]],
    )
    refs["retry"] = await out.append("task-1", 1, "planner", FinalEvent(content=inline("retry"), ok=False))

    for run_id in RUN_IDS:
        await store.adaptive.store_run(sample_run(run_id))
    await store.adaptive.store_plan(sample_plan())
    await store.adaptive.store_trie(AGENT, sample_trie())
    await store.adaptive.store_accumulators(AGENT, sample_accumulators())
    await store.adaptive.store_observations(LEARNING_KEY, sample_observations())
    await store.adaptive.store_stability(LEARNING_KEY, sample_stability())


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """A SQLite file with the sample data (shared by a module's tests: they only read it)."""
    path = tmp_path_factory.mktemp("filled") / "a.db"
    result = Filled(url=f"sqlite:///{path}", path=path)

    async def work() -> None:
        async with relaystore.connect(result.url) as store:
            await fill(store, result)

    asyncio.run(work())
    return result
