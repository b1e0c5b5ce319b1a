"""NeMo Relay's adaptive state, wire-compatible with what its Rust runtime stores.

Each model parses the JSON that NeMo Relay writes and serializes it back to the same JSON value:

- fields NeMo Relay omits when empty (``skip_serializing_if``) stay omitted;
- other optional fields are written as ``null``;
- unknown fields, and the opaque ``annotated_request`` / ``annotated_response``, are kept as they are;
- timestamps keep all nine fraction digits (see :data:`~relaystore.models.common.Timestamp`).

Shapes follow ``../shared/specs/nemo-relay-adaptive.md`` §1.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, NonNegativeInt, field_serializer, field_validator

from relaystore.models.common import Timestamp, UuidStr, WireModel, omit_none

# --------------------------------------------------------------------------- runs


class ParallelHint(WireModel):
    tool_name: str
    group_id: str
    explicit: bool


class MetadataEnvelope(WireModel):
    run_id: UuidStr
    agent_id: str
    parallel_hints: list[ParallelHint]
    extensions: Any = Field(default_factory=dict)


class CallRecord(WireModel):
    """One LLM or tool call inside a run. Token counts are u32 in NeMo Relay."""

    kind: Literal["llm", "tool"]
    name: str
    started_at: Timestamp
    ended_at: Timestamp | None = omit_none()  # type: ignore[assignment]
    metadata_snapshot: MetadataEnvelope | None = omit_none()  # type: ignore[assignment]
    output_tokens: NonNegativeInt | None = omit_none()  # type: ignore[assignment]
    prompt_tokens: NonNegativeInt | None = omit_none()  # type: ignore[assignment]
    total_tokens: NonNegativeInt | None = omit_none()  # type: ignore[assignment]
    tool_call_count: NonNegativeInt | None = omit_none()  # type: ignore[assignment]
    model_name: str | None = omit_none()  # type: ignore[assignment]
    annotated_request: Any = omit_none()
    annotated_response: Any = omit_none()


class RunRecord(WireModel):
    """One agent run: the unit that NeMo Relay's learners consume. ``id`` is a UUID (v7)."""

    id: UuidStr
    agent_id: str
    calls: list[CallRecord]
    started_at: Timestamp
    ended_at: Timestamp | None = omit_none()  # type: ignore[assignment]


# --------------------------------------------------------------------------- plan


class ParallelGroup(WireModel):
    group_id: str
    tool_names: list[str]


class ExecutionPlan(WireModel):
    """The tool-parallelism plan of one agent, keyed by ``agent_id``."""

    agent_id: str
    parallel_groups: list[ParallelGroup]
    metadata_template: MetadataEnvelope


# --------------------------------------------------------------------------- trie


class Metrics(WireModel):
    sample_count: NonNegativeInt
    mean: float
    p50: float
    p90: float
    p95: float


class Prediction(WireModel):
    remaining_calls: Metrics
    interarrival_ms: Metrics
    output_tokens: Metrics
    latency_sensitivity: NonNegativeInt | None = None


class TrieNode(WireModel):
    name: str
    children: dict[str, TrieNode] = Field(default_factory=dict)
    predictions_by_call_index: dict[str, Prediction] = Field(default_factory=dict)
    predictions_any_index: Prediction | None = None


class TrieEnvelope(WireModel):
    """The prediction trie in NeMo Relay's "NAT wire format" (``version`` "1.0")."""

    version: str = "1.0"
    generated_at: Timestamp
    workflow_name: str
    root: TrieNode


# --------------------------------------------------------------------------- accumulators


class Centroid(WireModel):
    mean: float
    weight: float


class Digest(WireModel):
    """A t-digest as the Rust ``tdigest`` 0.2.3 crate serializes it (keys sorted).

    NaN (the empty digest's min and max) is written as ``0.0``, and ``null`` reads back as ``0.0``.
    """

    centroids: list[Centroid] = Field(default_factory=list)
    count: float = 0.0
    max: float = 0.0
    max_size: NonNegativeInt = 100
    min: float = 0.0
    sum: float = 0.0

    @field_validator("count", "max", "min", "sum", mode="before")
    @classmethod
    def _null_is_zero(cls, value: Any) -> Any:
        return 0.0 if value is None else value

    @field_serializer("count", "max", "min", "sum")
    def _nan_is_zero(self, value: float) -> float:
        return 0.0 if math.isnan(value) else value


class Stats(WireModel):
    """Welford running statistics (``count``, ``mean``, ``m2``) plus a t-digest."""

    count: NonNegativeInt = 0
    mean: float = 0.0
    m2: float = 0.0
    digest: Digest = Field(default_factory=Digest)


class NodeAccumulator(WireModel):
    """Statistics of one trie path; per-call-index maps are keyed by the index as a string."""

    remaining_calls: dict[str, Stats] = Field(default_factory=dict)
    interarrival_ms: dict[str, Stats] = Field(default_factory=dict)
    output_tokens: dict[str, Stats] = Field(default_factory=dict)
    sensitivity: dict[str, Stats] = Field(default_factory=dict)
    all_remaining_calls: Stats = Field(default_factory=Stats)
    all_interarrival_ms: Stats = Field(default_factory=Stats)
    all_output_tokens: Stats = Field(default_factory=Stats)
    all_sensitivity: Stats = Field(default_factory=Stats)


class AccumulatorState(WireModel):
    """Accumulators keyed by path joined with ``/``; the root's key is ``""``."""

    nodes: dict[str, NodeAccumulator] = Field(default_factory=dict)


# --------------------------------------------------------------------------- ACG

Role = Literal["system", "user", "assistant", "tool"]
ContentType = Literal["text", "tool_schema", "tool_result", "structured_output", "image"]
Provenance = Literal["system", "developer", "user", "tool", "retrieval", "memory"]
Sensitivity = Literal["public", "private", "restricted"]


class TokenMetadata(WireModel):
    model_family: str
    token_count: NonNegativeInt


class PromptBlock(WireModel):
    span_id: str
    sequence_index: NonNegativeInt
    role: Role
    content: str
    content_type: ContentType
    provenance: Provenance
    sensitivity: Sensitivity = "public"
    token_metadata: TokenMetadata | None = omit_none()  # type: ignore[assignment]


class ToolSchemaHash(WireModel):
    tool_name: str
    schema_hash: str


class PromptIR(WireModel):
    """One observed prompt, split into spans. ACG windows are stored as ``list[PromptIR]``."""

    ir_id: UuidStr
    blocks: list[PromptBlock]
    tool_schema_hashes: list[ToolSchemaHash] | None = omit_none()  # type: ignore[assignment]
    structured_output_schema_id: str | None = omit_none()  # type: ignore[assignment]
    source_request_hash: str | None = omit_none()  # type: ignore[assignment]
    created_at: Timestamp


class SpanScore(WireModel):
    span_id: str
    classification: Literal["stable", "semi_stable", "variable"]
    score: float
    confidence: float
    observation_count: NonNegativeInt


class StabilityAnalysisResult(WireModel):
    scores: list[SpanScore]
    stable_prefix_length: NonNegativeInt
    stable_prefix_fingerprint: str | None = omit_none()  # type: ignore[assignment]
    total_observations: NonNegativeInt


TrieNode.model_rebuild()
