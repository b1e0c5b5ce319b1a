"""Learning throughput: runs per second through ``relaystore.learning`` on a memory store.

Run alone with ``python -m benchmarks --only extra/learning [--quick]``.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from relaystore import connect
from relaystore.learning import learn, relearn
from relaystore.models.adaptive import RunRecord

AGENT = "bench-agent"
MS = 1_000_000
SYSTEM = {"role": "system", "content": "You are a careful research planner. Always cite sources."}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Web search",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
FETCH = {
    "type": "function",
    "function": {
        "name": "fetch",
        "description": "Fetch a URL",
        "parameters": {"type": "object", "properties": {"url": {"type": "string"}}},
    },
}


def _stamp(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


class _RunWriter:
    """Builds one run's calls on a moving clock (integer nanoseconds)."""

    def __init__(self, start_ns: int) -> None:
        self.now = start_ns
        self.calls: list[dict[str, Any]] = []

    def llm(self, name: str, model: str, text: str, tokens: int, *, system: bool, tools: list[Any]) -> None:
        messages = [SYSTEM] if system else []
        request: dict[str, Any] = {"messages": [*messages, {"role": "user", "content": text}], "model": model}
        if tools:
            request["tools"] = tools
        self._call(
            "llm",
            name,
            20 * MS,
            output_tokens=tokens,
            prompt_tokens=42,
            total_tokens=42 + tokens,
            model_name=model,
            annotated_request=request,
        )

    def tools(self, names: list[str]) -> None:
        start = self.now
        for offset, name in enumerate(names):  # started together: they overlap
            self.calls.append(
                {
                    "kind": "tool",
                    "name": name,
                    "started_at": _stamp(start + offset * 100_000),
                    "ended_at": _stamp(start + 30 * MS),
                }
            )
        self.now = start + 31 * MS

    def _call(self, kind: str, name: str, duration: int, **extra: Any) -> None:
        self.calls.append(
            {
                "kind": kind,
                "name": name,
                "started_at": _stamp(self.now),
                "ended_at": _stamp(self.now + duration),
                **extra,
            }
        )
        self.now += duration + MS


def synthetic_runs(n_runs: int, seed: int = 0) -> list[RunRecord]:
    """Runs shaped like the NeMo Relay driver's ``varied`` workload: planner, 1-3 researcher calls
    with parallel or sequential tools, usually a writer; prompts with and without system/tools."""
    rng = random.Random(seed)
    runs = []
    for i in range(n_runs):
        start = 1_800_000_000 * 1_000_000_000 + i * 2_000 * MS
        w = _RunWriter(start)
        system = i % 3 != 2
        tools = [SEARCH, FETCH] if i % 2 == 0 else ([SEARCH] if i % 5 else [])
        w.llm("planner", "gpt-4.1-mini", f"Plan task {i}", rng.randint(5, 40), system=system, tools=tools)
        for k in range(1 + i % 3):
            w.llm(
                "researcher",
                "llama-3.1-8b",
                f"Research {i}.{k}",
                rng.randint(20, 120),
                system=False,
                tools=tools if k == 0 else [],
            )
            w.tools(["search", "fetch"] if rng.random() < 0.5 else ["search"])
        if i % 4 != 3:
            w.llm("writer", "claude-sonnet", f"Write up {i}", rng.randint(50, 300), system=system, tools=[])
        runs.append(
            RunRecord.model_validate(
                {
                    "id": str(uuid.uuid4()),
                    "agent_id": AGENT,
                    "calls": w.calls,
                    "started_at": _stamp(start),
                    "ended_at": _stamp(w.now),
                }
            )
        )
    return runs


async def bench_learning(n_runs: int, incremental_runs: int | None = None) -> dict[str, Any]:
    """Learn synthetic runs on ``memory://`` two ways and report runs per second.

    ``incremental``: one ``learn`` call per run (what a live agent does after each run), over the
    first ``incremental_runs`` runs (default ``n_runs``; it runs at ~10 runs/s, so a full
    benchmark uses fewer); ``from_scratch``: one ``relearn`` over all ``n_runs`` stored runs
    (``relaystore learn --from-scratch``).
    """
    runs = synthetic_runs(n_runs)
    incremental_runs = n_runs if incremental_runs is None else min(incremental_runs, n_runs)
    async with connect("memory://") as store:
        started = time.perf_counter()
        for run in runs[:incremental_runs]:
            await learn(store, AGENT, [run])
        incremental = time.perf_counter() - started
    async with connect("memory://") as store:
        for run in runs:
            await store.adaptive.store_run(run)
        started = time.perf_counter()
        report = await relearn(store, AGENT)
        scratch = time.perf_counter() - started
    return {
        "incremental_runs": incremental_runs,
        "incremental_seconds": round(incremental, 3),
        "incremental_runs_per_s": round(incremental_runs / incremental, 1),
        "from_scratch_runs": n_runs,
        "llm_calls": report.llm_calls,
        "from_scratch_seconds": round(scratch, 3),
        "from_scratch_runs_per_s": round(n_runs / scratch, 1),
    }
