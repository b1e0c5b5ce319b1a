"""Latency-sensitivity learning: call contexts, sensitivity scores, accumulators and the trie.

As NeMo Relay's ``LatencySensitivityLearner`` and ``trie/builder.rs``: every completed LLM call of a
run becomes one context; its remaining-call count, output tokens, inter-arrival gap and
normalized latency-sensitivity score are added (Welford mean/variance plus a t-digest) at the
root ``""`` and at every prefix of the call's path. The trie is then rebuilt from all
accumulators, and :func:`predict` looks a path up in it.

Times are integer nanoseconds (``timestamp_to_ns``) so durations are exact; NeMo Relay's
``ms()`` is whole milliseconds truncated toward zero.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from relaystore.learning.tdigest import TDigest
from relaystore.models.adaptive import (
    AccumulatorState,
    CallRecord,
    Metrics,
    Prediction,
    RunRecord,
    Stats,
    TrieEnvelope,
    TrieNode,
)
from relaystore.models.common import ns_to_rfc3339, timestamp_to_ns

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
METRICS = ("remaining_calls", "interarrival_ms", "output_tokens", "sensitivity")
# NeMo Relay's default sensitivity weights; the parallel weight is 0 (its slack is always 0).
W_CRITICAL, W_FANOUT, W_POSITION, W_PARALLEL = 0.5, 0.3, 0.2, 0.0
DEFAULT_SCALE = 5


# --------------------------------------------------------------------------- contexts


@dataclass
class CallContext:
    """One completed LLM call as the latency learner sees it (durations in seconds, spans in
    whole Unix seconds)."""

    path: tuple[str, ...]
    call_index: int  # 1-based, counted per call name
    remaining: int  # completed LLM calls after this one
    time_to_next_ms: float | None
    output_tokens: float
    duration_s: float
    span_start: int
    span_end: int
    sensitivity: float = 0.0


def whole_ms(start_ns: int, end_ns: int) -> int:
    """Whole milliseconds from start to end, truncated toward zero (chrono's num_milliseconds)."""
    delta = end_ns - start_ns
    return delta // NS_PER_MS if delta >= 0 else -((-delta) // NS_PER_MS)


def _workflow_seconds(run: RunRecord) -> float:
    start = timestamp_to_ns(run.started_at)
    if run.ended_at is not None:
        return whole_ms(start, timestamp_to_ns(run.ended_at)) / 1000.0
    ends = [c.ended_at for c in run.calls if c.ended_at is not None]
    return whole_ms(start, timestamp_to_ns(ends[-1])) / 1000.0 if ends else 0.0


def _next_llm_start(calls: Sequence[CallRecord], position: int) -> int | None:
    # The next LLM record counts even if it never finished, as in NeMo Relay.
    for call in calls[position + 1 :]:
        if call.kind == "llm":
            return timestamp_to_ns(call.started_at)
    return None


def call_contexts(run: RunRecord) -> list[CallContext]:
    """Contexts of the run's completed LLM calls in record order, sensitivity filled in."""
    completed = [(i, c) for i, c in enumerate(run.calls) if c.kind == "llm" and c.ended_at is not None]
    per_name: dict[str, int] = {}
    contexts = []
    for k, (position, call) in enumerate(completed):
        per_name[call.name] = per_name.get(call.name, 0) + 1
        start, end = timestamp_to_ns(call.started_at), timestamp_to_ns(call.ended_at)  # type: ignore[arg-type]
        next_start = _next_llm_start(run.calls, position)
        contexts.append(
            CallContext(
                path=(call.name,),
                call_index=per_name[call.name],
                remaining=len(completed) - k - 1,
                time_to_next_ms=None if next_start is None else float(whole_ms(end, next_start)),
                output_tokens=float(call.output_tokens or 0),
                duration_s=whole_ms(start, end) / 1000.0,
                span_start=start // NS_PER_S,
                span_end=end // NS_PER_S,
            )
        )
    score_sensitivity(contexts, _workflow_seconds(run))
    return contexts


# --------------------------------------------------------------------------- sensitivity


def _overlap_groups(contexts: list[CallContext]) -> list[list[CallContext]]:
    """Calls grouped by overlapping whole-second spans (same-second calls look sequential)."""
    groups: list[list[CallContext]] = []
    group_end = 0
    for ctx in sorted(contexts, key=lambda c: c.span_start):
        if groups and ctx.span_start < group_end:
            groups[-1].append(ctx)
            group_end = max(group_end, ctx.span_end)
        else:
            groups.append([ctx])
            group_end = ctx.span_end
    return groups


def _raw_score(ctx: CallContext, workflow_s: float, pos: int, n_groups: int, size: int) -> float:
    critical = 1.0 if workflow_s <= 0.0 else min(1.0, ctx.duration_s / workflow_s)
    rest = n_groups - 1
    fanout = (rest - pos) / rest if rest > 0 else 0.0
    if n_groups > 1:
        x = pos / (n_groups - 1)
        position = max(1.0 - x, x)
    else:
        position = 1.0
    parallel = (size - 1) / (2 * size) if size > 1 else 0.0
    return W_CRITICAL * critical + W_FANOUT * fanout + W_POSITION * position - W_PARALLEL * parallel


def score_sensitivity(contexts: list[CallContext], workflow_s: float) -> None:
    """Set each context's sensitivity: the raw weighted score, min-max normalized over the run
    (0.5 for all when every raw score is equal)."""
    groups = _overlap_groups(contexts)
    raw: dict[int, float] = {}
    for pos, group in enumerate(groups):
        for ctx in group:
            raw[id(ctx)] = _raw_score(ctx, workflow_s, pos, len(groups), len(group))
    if not raw:
        return
    low, high = min(raw.values()), max(raw.values())
    for ctx in contexts:
        ctx.sensitivity = 0.5 if high == low else (raw[id(ctx)] - low) / (high - low)


# --------------------------------------------------------------------------- accumulators


@dataclass
class RunningStats:
    """Welford count/mean/m2 plus a t-digest, as NeMo Relay's ``Stats``."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    digest: TDigest = field(default_factory=TDigest)

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        self.digest = self.digest.merge_unsorted([value])

    @classmethod
    def from_model(cls, stats: Stats) -> RunningStats:
        return cls(stats.count, stats.mean, stats.m2, TDigest.from_model(stats.digest))

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2, "digest": self.digest.to_dict()}


@dataclass
class NodeStats:
    """One path's statistics: per call index (keys are the index as a string) and over all."""

    by_index: dict[str, dict[str, RunningStats]] = field(default_factory=lambda: {m: {} for m in METRICS})
    overall: dict[str, RunningStats] = field(default_factory=lambda: {m: RunningStats() for m in METRICS})

    def add(self, metric: str, index: str, value: float) -> None:
        self.by_index[metric].setdefault(index, RunningStats()).add(value)
        self.overall[metric].add(value)


Accumulators = dict[str, NodeStats]


def accumulators_from_model(state: AccumulatorState | None) -> Accumulators:
    """Mutable working copy of stored accumulators (empty for None)."""
    if state is None:
        return {}
    nodes: Accumulators = {}
    for key, node in state.nodes.items():
        nodes[key] = NodeStats(
            by_index={
                m: {i: RunningStats.from_model(s) for i, s in getattr(node, m).items()} for m in METRICS
            },
            overall={m: RunningStats.from_model(getattr(node, f"all_{m}")) for m in METRICS},
        )
    return nodes


def accumulators_to_model(nodes: Accumulators) -> AccumulatorState:
    """The stored form of a working copy. (Validating plain data is faster here than
    ``model_construct``, which runs in Python for each of the thousands of centroids.)"""
    data: dict[str, Any] = {}
    for key, node in nodes.items():
        doc: dict[str, Any] = {m: {i: s.to_dict() for i, s in node.by_index[m].items()} for m in METRICS}
        doc.update({f"all_{m}": node.overall[m].to_dict() for m in METRICS})
        data[key] = doc
    return AccumulatorState.model_validate({"nodes": data})


def _prefix_keys(path: tuple[str, ...]) -> list[str]:
    return ["", *("/".join(path[:depth]) for depth in range(1, len(path) + 1))]


def add_run(nodes: Accumulators, run: RunRecord) -> int:
    """Add one run's contexts to ``nodes`` in place; return how many LLM calls were added."""
    contexts = call_contexts(run)
    for ctx in contexts:
        index = str(ctx.call_index)
        for key in _prefix_keys(ctx.path):
            node = nodes.setdefault(key, NodeStats())
            node.add("remaining_calls", index, float(ctx.remaining))
            if ctx.time_to_next_ms is not None:
                node.add("interarrival_ms", index, ctx.time_to_next_ms)
            node.add("output_tokens", index, ctx.output_tokens)
            node.add("sensitivity", index, ctx.sensitivity)
    return len(contexts)


def add_runs(state: AccumulatorState | None, runs: Iterable[RunRecord]) -> AccumulatorState:
    """Pure: the accumulators after adding ``runs`` in order to ``state`` (None = empty)."""
    nodes = accumulators_from_model(state)
    for run in runs:
        add_run(nodes, run)
    return accumulators_to_model(nodes)


# --------------------------------------------------------------------------- trie


def round_half_away(value: float) -> int:
    """Rust's ``f64::round``: halves go away from zero (Python's round() goes to even)."""
    whole = int(value // 1) if value >= 0 else -int(-value // 1)
    rest = abs(value - whole)
    if rest >= 0.5:
        whole += 1 if value >= 0 else -1
    return whole


def sensitivity_level(stats: RunningStats | None, scale: int = DEFAULT_SCALE) -> int | None:
    """Mean sensitivity mapped onto 1..scale; None without samples."""
    if stats is None or stats.count == 0:
        return None
    level = round_half_away(stats.mean * float(scale - 1)) + 1
    return min(max(level, 1), scale)


def _metrics(stats: RunningStats | None) -> Metrics:
    if stats is None:
        return Metrics(sample_count=0, mean=0.0, p50=0.0, p90=0.0, p95=0.0)
    d = stats.digest
    return Metrics(
        sample_count=stats.count,
        mean=stats.mean,
        p50=d.quantile(0.5),
        p90=d.quantile(0.9),
        p95=d.quantile(0.95),
    )


def _prediction(
    remaining: RunningStats | None,
    interarrival: RunningStats | None,
    tokens: RunningStats | None,
    sensitivity: RunningStats | None,
    scale: int,
) -> Prediction:
    return Prediction(
        remaining_calls=_metrics(remaining),
        interarrival_ms=_metrics(interarrival),
        output_tokens=_metrics(tokens),
        latency_sensitivity=sensitivity_level(sensitivity, scale),
    )


def _fill_node(trie_node: TrieNode, stats: NodeStats, scale: int) -> None:
    by = stats.by_index
    indices = dict.fromkeys([*by["remaining_calls"], *by["interarrival_ms"], *by["output_tokens"]])
    trie_node.predictions_by_call_index = {
        i: _prediction(
            by["remaining_calls"].get(i),
            by["interarrival_ms"].get(i),
            by["output_tokens"].get(i),
            by["sensitivity"].get(i),
            scale,
        )
        for i in indices
    }
    if stats.overall["remaining_calls"].count > 0:
        o = stats.overall
        trie_node.predictions_any_index = _prediction(
            o["remaining_calls"], o["interarrival_ms"], o["output_tokens"], o["sensitivity"], scale
        )


def rfc3339_now() -> str:
    """UTC now as chrono's ``to_rfc3339`` (the trie's ``generated_at``): ends in ``+00:00``."""
    return ns_to_rfc3339(time.time_ns(), "+00:00")


def build_trie(
    agent_id: str, nodes: Accumulators, *, scale: int = DEFAULT_SCALE, generated_at: str | None = None
) -> TrieEnvelope:
    """The prediction trie (NAT wire format "1.0") of every accumulator path under ``root``."""
    root = TrieNode(name="root")
    for key, stats in nodes.items():
        node = root
        for part in key.split("/") if key else []:
            node = node.children.setdefault(part, TrieNode(name=part))
        _fill_node(node, stats, scale)
    return TrieEnvelope(generated_at=generated_at or rfc3339_now(), workflow_name=agent_id, root=root)


# --------------------------------------------------------------------------- lookup


def predict(trie: TrieEnvelope, path: Sequence[str], call_index: int | None = None) -> Prediction | None:
    """The deepest prediction along ``path`` (as NeMo Relay's ``trie/lookup.rs`` ``find``).

    At each node from the root down, a prediction for ``call_index`` is preferred over the node's
    any-index prediction; the walk stops at the first missing child. None if no node has one.
    """
    best: Prediction | None = None
    node: TrieNode | None = trie.root
    remaining = list(path)
    while node is not None:
        hit = node.predictions_by_call_index.get(str(call_index)) if call_index is not None else None
        best = hit or node.predictions_any_index or best
        node = node.children.get(remaining.pop(0)) if remaining else None
    return best
