"""Realistic documents for the conformance suite, shaped like NeMo Relay's stored JSON.

Shapes follow ``/work/shared/specs/nemo-relay-adaptive.md`` §1: runs with LLM and tool calls and
nanosecond timestamps, a fan-out execution plan, a small prediction trie, accumulators with
t-digests, an ACG observation window and a stability result.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import Any, Literal

from relaystore.models import (
    AccumulatorState,
    CallRecord,
    Centroid,
    CheckpointMetadata,
    Digest,
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
    TokenMetadata,
    ToolSchemaHash,
    TrieEnvelope,
    TrieNode,
)

_NANOS = itertools.count(123_456_789, 1_000_003)


def uuid7() -> str:
    """A lowercase, hyphenated UUID v7 (millisecond time prefix), as NeMo Relay's run ids."""
    millis = time.time_ns() // 1_000_000
    raw = bytearray(millis.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def ts(second: int = 12, nanos: int | None = None) -> str:
    """An RFC 3339 UTC timestamp with all nine fraction digits (the digits Python would lose)."""
    fraction = next(_NANOS) % 1_000_000_000 if nanos is None else nanos
    return f"2026-11-21T10:17:{second:02d}.{fraction:09d}Z"


def checkpoint(thread_id: str, checkpoint_id: str | None = None, step: int = 0) -> CheckpointMetadata:
    metadata = CheckpointMetadata.new(thread_id, step=step, label=f"step {step}", tags=["auto"])
    return metadata if checkpoint_id is None else metadata.model_copy(update={"id": checkpoint_id})


# --------------------------------------------------------------------------- outputs


def artifact_event(name: str = "report.md", text: str = "# findings") -> dict[str, Any]:
    return {"type": "artifact", "name": name, "content": {"kind": "inline", "value": text}}


def final_event(ok: bool = True) -> dict[str, Any]:
    return {"type": "final", "ok": ok, "content": {"kind": "file_ref", "path": "/out/a.json", "mime": None}}


# --------------------------------------------------------------------------- adaptive


def llm_call(name: str = "planner") -> CallRecord:
    return CallRecord(
        kind="llm",
        name=name,
        started_at=ts(12),
        ended_at=ts(13),
        output_tokens=17,
        prompt_tokens=412,
        total_tokens=429,
        tool_call_count=2,
        model_name="nemotron-super",
        annotated_request={
            "messages": [
                {"role": "system", "content": "You are a careful research planner."},
                {"role": "user", "content": [{"type": "text", "text": "Research topic 0"}]},
            ],
            "model": "nemotron-super",
            "tools": [{"type": "function", "function": {"name": "search", "parameters": {}}}],
            "response_format": {"type": "json_object"},
        },
        annotated_response={
            "id": "resp-1",
            "finish_reason": "tool_use",
            "tool_calls": [{"id": "c1", "name": "search", "arguments": '{"q":"x"}'}],
            "usage": {"prompt_tokens": 412, "completion_tokens": 17, "total_tokens": 429},
        },
    )


def tool_call(name: str = "search") -> CallRecord:
    return CallRecord(kind="tool", name=name, started_at=ts(13), ended_at=ts(14))


def run_record(agent_id: str = "demo-agent", run_id: str | None = None) -> RunRecord:
    return RunRecord(
        id=run_id or uuid7(),
        agent_id=agent_id,
        calls=[llm_call(), tool_call("search"), tool_call("fetch"), llm_call("writer")],
        started_at=ts(11),
        ended_at=ts(15),
    )


def envelope(agent_id: str) -> MetadataEnvelope:
    group = "fanout:sha256:98257"
    return MetadataEnvelope(
        run_id=uuid7(),
        agent_id=agent_id,
        parallel_hints=[
            ParallelHint(tool_name="fetch", group_id=group, explicit=False),
            ParallelHint(tool_name="search", group_id=group, explicit=False),
        ],
        extensions={},
    )


def execution_plan(
    agent_id: str = "demo-agent", tools: tuple[str, ...] = ("fetch", "search")
) -> ExecutionPlan:
    return ExecutionPlan(
        agent_id=agent_id,
        parallel_groups=[ParallelGroup(group_id="fanout:sha256:98257", tool_names=list(tools))],
        metadata_template=envelope(agent_id),
    )


def _metrics(samples: int, mean: float) -> Metrics:
    return Metrics(sample_count=samples, mean=mean, p50=mean, p90=mean, p95=mean)


def _prediction(sensitivity: int | None) -> Prediction:
    return Prediction(
        remaining_calls=_metrics(3, 0.0),
        interarrival_ms=_metrics(0, 0.0),
        output_tokens=_metrics(3, 17.0),
        latency_sensitivity=sensitivity,
    )


def trie_envelope(agent_id: str = "demo-agent") -> TrieEnvelope:
    writer = TrieNode(
        name="writer",
        predictions_by_call_index={"1": _prediction(1)},
        predictions_any_index=_prediction(1),
    )
    root = TrieNode(
        name="root",
        children={"writer": writer, "planner": TrieNode(name="planner")},
        predictions_by_call_index={"1": _prediction(None)},
        predictions_any_index=_prediction(3),
    )
    return TrieEnvelope(generated_at="2026-11-21T10:17:13.346547619+00:00", workflow_name=agent_id, root=root)


def _stats(count: int, mean: float) -> Stats:
    centroids = [Centroid(mean=mean, weight=1.0) for _ in range(count)]
    digest = Digest(
        centroids=centroids, count=float(count), max=mean, min=mean, sum=mean * count, max_size=100
    )
    return Stats(count=count, mean=mean, m2=0.0, digest=digest)


def accumulator_state(count: int = 3) -> AccumulatorState:
    """Accumulators whose root node's ``all_remaining_calls.count`` is ``count`` (a counter)."""
    planner = NodeAccumulator(
        remaining_calls={"1": _stats(3, 1.0)},
        output_tokens={"1": _stats(3, 17.0)},
        all_remaining_calls=_stats(3, 1.0),
    )
    root = NodeAccumulator(all_remaining_calls=Stats(count=count, mean=1.0, m2=0.5))
    return AccumulatorState(nodes={"": root, "planner": planner, "workflow/agent": NodeAccumulator()})


def counter_of(state: AccumulatorState | None) -> int:
    return 0 if state is None else state.nodes[""].all_remaining_calls.count


def incremented(state: AccumulatorState | None) -> AccumulatorState:
    """``state`` with its counter plus one (a fresh state with counter 1 when None)."""
    if state is None:
        return accumulator_state(count=1)
    root = state.nodes[""]
    bumped = root.all_remaining_calls.model_copy(update={"count": root.all_remaining_calls.count + 1})
    nodes = {**state.nodes, "": root.model_copy(update={"all_remaining_calls": bumped})}
    return state.model_copy(update={"nodes": nodes})


def prompt_ir(topic: int = 0) -> PromptIR:
    blocks = [
        PromptBlock(
            span_id="system-0",
            sequence_index=0,
            role="system",
            content="You are a careful research planner. Always cite sources.",
            content_type="text",
            provenance="system",
            sensitivity="public",
            token_metadata=TokenMetadata(model_family="llama", token_count=11),
        ),
        PromptBlock(
            span_id="system-1-search",
            sequence_index=1,
            role="system",
            content='{"function":{"description":"Web search","name":"search"},"type":"function"}',
            content_type="tool_schema",
            provenance="system",
        ),
        PromptBlock(
            span_id="user-2",
            sequence_index=2,
            role="user",
            content=f"Research topic number {topic}",
            content_type="text",
            provenance="user",
            sensitivity="private",
        ),
    ]
    return PromptIR(
        ir_id=str(uuid.uuid4()),
        blocks=blocks,
        tool_schema_hashes=[ToolSchemaHash(tool_name="search", schema_hash="sha256:e3eb5cf5")],
        source_request_hash="sha256:51446f00",
        created_at=ts(12, 987_253_691),
    )


def observations(count: int = 2) -> list[PromptIR]:
    return [prompt_ir(i) for i in range(count)]


def stability() -> StabilityAnalysisResult:
    def score(
        span: str, classification: Literal["stable", "semi_stable", "variable"], value: float
    ) -> SpanScore:
        return SpanScore(
            span_id=span, classification=classification, score=value, confidence=0.3, observation_count=6
        )

    return StabilityAnalysisResult(
        scores=[
            score("system-0", "stable", 1.0),
            score("system-1-search", "stable", 1.0),
            score("user-2", "variable", 0.16666666666666666),
        ],
        stable_prefix_length=2,
        stable_prefix_fingerprint="sha256:585397792eb81de66565531a1f150a352e912db1f78541bd317399c4471b9894",
        total_observations=6,
    )


def document(kind: str, key: str) -> Any:
    """A realistic document of ``kind`` for ``key`` (a plan's agent id must be the key)."""
    builders = {
        "plan": lambda: execution_plan(key),
        "trie": lambda: trie_envelope(key),
        "accumulators": lambda: accumulator_state(),
        "acg_observations": lambda: observations(),
        "acg_stability": lambda: stability(),
    }
    return builders[kind]()


def as_json(value: Any) -> Any:
    """The JSON value of a model or a list of models, for equality checks."""
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value.to_dict() if hasattr(value, "to_dict") else value


# --------------------------------------------------------------------------- test helpers


async def all_pages(list_page: Any, limit: int, **kwargs: Any) -> list[list[Any]]:
    """Every page of a listing, following ``next_cursor`` to the end."""
    pages: list[list[Any]] = []
    cursor = None
    while True:
        page = await list_page(limit=limit, cursor=cursor, **kwargs)
        pages.append(list(page))
        assert len(pages) < 10_000, "next_cursor never ran out"
        cursor = page.next_cursor
        if cursor is None:
            return pages


def chunked(items: list[Any], size: int) -> list[list[Any]]:
    """The pages a listing of ``items`` must give with ``limit=size`` (one empty page if none)."""
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


async def corrupt_or_skip(
    factory: Any, store: Any, what: str, key: tuple[str, ...], *, how: str = "json"
) -> None:
    """Corrupt one record through the factory's optional hook, or skip the test.

    ``how`` is one of :data:`relaystore.testing.damage.HOWS`. A hook written before ``how=``
    existed (three parameters) is called for ``"json"`` only; other kinds of damage skip.
    """
    import inspect

    import pytest

    from relaystore.testing import Capability, capabilities_of

    hook = getattr(factory, "corrupt", None)
    if hook is None or Capability.CORRUPTION not in capabilities_of(factory):
        pytest.skip(f"{factory.NAME} lacks {Capability.CORRUPTION.value}")
    takes_how = "how" in inspect.signature(hook).parameters
    if not takes_how and how != "json":
        pytest.skip(f"{factory.NAME}: its corrupt hook takes no how= (only json damage)")
    try:
        await (hook(store, what, key, how=how) if takes_how else hook(store, what, key))
    except NotImplementedError as exc:
        pytest.skip(f"{factory.NAME}: {exc}")
