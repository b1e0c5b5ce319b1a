"""Inspector cases (``/ui``): first paint of a 10,000-checkpoint thread and of a large trie, sqlite.

"First paint" is what the browser waits for before it can draw the page: the shell, then the
view's HTML fragment, both answered by the real app in process (ASGI, no sockets). The target is
under 1 s per paint (issue 20), judged on the slowest paint of the timed batches. No peer: the
figure is absolute, so the case reports paints/s and the check reads the recorded latencies.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

import relaystore
from benchmarks.harness import Contender, Context, Facts, Matchup, Op, case
from relaystore.models import CheckpointMetadata, Metrics, Prediction, TrieEnvelope, TrieNode
from relaystore.server.app import create_app
from relaystore.server.ui import views_adaptive

ADMIN = "bench-ui-admin-" + "a" * 32
CHECKPOINTS = 10_000
FAN_OUT, DEPTH = 12, 4  # a trie of 12 + 144 + 1,728 + 20,736 = 22,620 nodes
TARGET_MS = 1000.0
LABEL = "relaystore /ui"
SLOWEST = "slowest paint ms"


async def fill_thread(url: str, options: dict[str, str]) -> str:
    thread = "ui-bench-thread"
    async with relaystore.connect(url, **options) as store:
        head = None
        for step in range(CHECKPOINTS):
            metadata = CheckpointMetadata.new(thread, step, parent_id=head, label=f"step {step}")
            state = json.dumps({"messages": step, "note": "x" * 200}).encode()
            head = await store.checkpoints.save(thread, metadata, state)
    return thread


def _prediction(seed: int) -> Prediction:
    def metrics(mean: float) -> Metrics:
        return Metrics(sample_count=seed % 50 + 1, mean=mean, p50=mean, p90=mean * 1.3, p95=mean * 1.5)

    return Prediction(
        remaining_calls=metrics(seed % 7),
        interarrival_ms=metrics(100 + seed % 900),
        output_tokens=metrics(80),
    )


def large_trie(depth: int = DEPTH) -> TrieNode:
    counter = iter(range(10**9))

    def node(name: str, level: int) -> TrieNode:
        children = {} if level == depth else {f"llm-{i}": node(f"llm-{i}", level + 1) for i in range(FAN_OUT)}
        return TrieNode(
            name=name, children=children, predictions_by_call_index={"1": _prediction(next(counter))}
        )

    return node("root", 0)


async def fill_trie(url: str, options: dict[str, str]) -> str:
    agent = "ui-bench-agent"
    envelope = TrieEnvelope(generated_at="2026-01-01T00:00:00Z", workflow_name=agent, root=large_trie())
    async with relaystore.connect(url, **options) as store:
        await store.adaptive.store_trie(agent, envelope)
    return agent


def paint_contender(ctx: Context, what: str) -> Contender:
    facts: dict[str, Any] = {}
    url = ctx.store_url("relaystore")

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        if what == "thread":
            target = await fill_thread(url, ctx.fill_options)
            view, expected = f"/ui/f/thread?id={target}", f"{CHECKPOINTS:,} checkpoints"
        else:
            target = await fill_trie(url, ctx.fill_options)
            view, expected = f"/ui/f/adaptive?agent={target}", "llm-11"
        app = create_app(url, admin_token=ADMIN, signing_key="bench-ui-signing-" + "k" * 32)
        latencies: list[float] = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {ADMIN}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:

                async def paint(_i: int) -> None:
                    views_adaptive._tries.clear()  # a first paint: the trie is not parsed yet
                    started = time.perf_counter()
                    shell = await client.get("/ui/thread")
                    fragment = await client.get(view, headers=headers)
                    latencies.append((time.perf_counter() - started) * 1000)
                    assert shell.status_code == 200 and fragment.status_code == 200, fragment.text[:200]
                    assert expected in fragment.text

                yield paint
        facts[SLOWEST] = round(max(latencies), 1)
        facts["median paint ms"] = round(sorted(latencies)[len(latencies) // 2], 1)

    return Contender(LABEL, setup, facts)


def under_target(facts: Facts) -> tuple[bool, str]:
    slowest = facts[LABEL][SLOWEST]
    return slowest < TARGET_MS, f"slowest first paint {slowest:.0f} ms (target < {TARGET_MS:.0f} ms)"


@case(
    "ui",
    f"first paint: thread of {CHECKPOINTS:,} checkpoints",
    n=10,
    quick_n=3,
    repeats=3,
    quick_repeats=1,
    unit="paints/s",
    in_quick=False,
    check=under_target,
    note="shell + timeline fragment (newest 100 checkpoints, selected one decoded), in-process ASGI",
)
def thread_paint(ctx: Context) -> Matchup:
    return Matchup(paint_contender(ctx, "thread"), [])


@case(
    "ui",
    f"first paint: trie of {sum(FAN_OUT**d for d in range(1, DEPTH + 1)):,} nodes",
    n=10,
    quick_n=3,
    repeats=3,
    quick_repeats=1,
    unit="paints/s",
    in_quick=False,
    check=under_target,
    note="shell + adaptive fragment (runs, plan, trie top level; deeper levels load on open)",
)
def trie_paint(ctx: Context) -> Matchup:
    return Matchup(paint_contender(ctx, "trie"), [])
