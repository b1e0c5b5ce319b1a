"""Payloads shared by the cases, shaped as python-anchors.md §3.1 describes them.

A checkpoint's state is a ``messages`` channel (a list of dicts with role, id and random-letter
content) plus an int ``step`` channel: 4 × 470 characters ≈ 2 KB of msgpack, or 100 × 2,000
≈ 200 KB. Every contender starts from this same Python object and serializes it with ormsgpack,
LangGraph's own encoder, so no side is handed pre-encoded bytes the other has to make.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from typing import Any

import ormsgpack

SIZES: dict[str, tuple[int, int]] = {"2 KB": (4, 470), "200 KB": (100, 2000)}
"""Payload label -> (number of messages, characters per message)."""


def messages(count: int, chars: int, seed: int = 7) -> list[dict[str, str]]:
    """A deterministic ``messages`` channel of ``count`` messages of ``chars`` letters each."""
    rng = random.Random(seed)
    return [
        {
            "role": "user" if k % 2 == 0 else "assistant",
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "content": "".join(rng.choices(string.ascii_letters, k=chars)),
        }
        for k in range(count)
    ]


def channel_values(size: str) -> dict[str, Any]:
    """The graph state of a checkpoint of ``size`` ("2 KB" or "200 KB")."""
    count, chars = SIZES[size]
    return {"messages": messages(count, chars), "step": 0}


def encode_state(values: dict[str, Any], step: int) -> bytes:
    """The state as a relaystore user would store it: msgpack of the channel values."""
    return ormsgpack.packb({**values, "step": step})


def decode_state(state: bytes) -> dict[str, Any]:
    return ormsgpack.unpackb(state)  # type: ignore[no-any-return]


def thread_of(i: int, threads: int = 20) -> str:
    """Operations are spread over ``threads`` threads round-robin, as in the anchors' bench."""
    return f"thread-{i % threads}"


def output_event(i: int) -> dict[str, Any]:
    """An artifact event with ~1 KB of inline text: a typical hand-off between swarm agents."""
    return {
        "type": "artifact",
        "name": f"report-{i % 7}",
        "content": {"kind": "inline", "value": "lorem ipsum dolor sit amet " * 38},
    }


def run_record(agent_id: str, i: int) -> dict[str, Any]:
    """A NeMo Relay run with three LLM/tool calls, as the adaptive runtime stores it."""
    started = f"2026-11-21T10:{i // 60 % 60:02d}:{i % 60:02d}.123456789Z"
    calls = [
        {
            "kind": "llm" if k != 1 else "tool",
            "name": ("planner", "search", "writer")[k],
            "started_at": started,
            "ended_at": started,
            "output_tokens": 120 + k,
            "prompt_tokens": 900 + k,
            "total_tokens": 1020 + 2 * k,
            "model_name": "demo-model",
        }
        for k in range(3)
    ]
    run_id = str(uuid.UUID(int=i + 1, version=4))  # unique per i (3.11 cannot build v7)
    return {"id": run_id, "agent_id": agent_id, "calls": calls, "started_at": started, "ended_at": started}


def accumulators_doc(
    paths: tuple[str, ...] = ("", "planner", "researcher", "writer"), centroids: int = 10
) -> str:
    """A NeMo Relay AccumulatorState (spec §1) of ~39 KB, shaped like the latency learner's after a
    few runs: per path, four per-call-index maps of Stats and four overall Stats, each with a
    t-digest. Built here rather than learned, so the update cases depend on no learner."""
    rng = random.Random(11)

    def stats(count: int) -> dict[str, Any]:
        values = sorted(rng.uniform(1, 500) for _ in range(centroids))
        return {
            "count": count,
            "mean": sum(values) / len(values),
            "m2": rng.uniform(0, 1e4),
            "digest": {
                "centroids": [{"mean": v, "weight": 1.0} for v in values],
                "count": float(centroids),
                "max": values[-1],
                "max_size": 100,
                "min": values[0],
                "sum": sum(values),
            },
        }

    def node() -> dict[str, Any]:
        by_index = {str(k): stats(12) for k in range(1, 4)}
        families = ("remaining_calls", "interarrival_ms", "output_tokens", "sensitivity")
        return {**{f: dict(by_index) for f in families}, **{f"all_{f}": stats(36) for f in families}}

    return json.dumps({"nodes": {path: node() for path in paths}}, separators=(",", ":"))
