"""Synthetic NeMo Relay runs for tests that do not need the real runtime."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from relaystore.models.adaptive import RunRecord

SYSTEM = {"role": "system", "content": "You are a careful research planner."}
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
LLM_CALLS_PER_RUN = 3


def stamp(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _call(kind: str, name: str, start: int, end: int, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "name": name, "started_at": stamp(start), "ended_at": stamp(end), **extra}


def _llm(name: str, start: int, end: int, text: str, tokens: int) -> dict[str, Any]:
    request = {"messages": [SYSTEM, {"role": "user", "content": text}], "model": "m1", "tools": [SEARCH]}
    return _call("llm", name, start, end, output_tokens=tokens, annotated_request=request)


def make_run(agent: str, i: int, start_ns: int = 1_800_000_000_000_000_000) -> RunRecord:
    """planner, two overlapping tools, researcher, writer: 3 completed LLM calls, 40 ms apart."""
    ms = 1_000_000
    t = start_ns + i * 1000 * ms
    calls = [
        _llm("planner", t, t + 30 * ms, f"plan {i}", 10 + i % 7),
        _call("tool", "search", t + 40 * ms, t + 70 * ms),
        _call("tool", "fetch", t + 41 * ms, t + 69 * ms),
        _llm("researcher", t + 80 * ms, t + 110 * ms, f"research {i}", 50 + i % 11),
        _llm("writer", t + 120 * ms, t + 150 * ms, f"write {i}", 100 + i % 13),
    ]
    return RunRecord.model_validate(
        {
            "id": str(uuid.uuid4()),
            "agent_id": agent,
            "calls": calls,
            "started_at": stamp(t),
            "ended_at": stamp(t + 160 * ms),
        }
    )
