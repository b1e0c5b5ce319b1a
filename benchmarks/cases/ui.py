"""Inspector cases (``/ui``): first paint of a 10,000-checkpoint thread and of a large trie, sqlite.

Two measures of the same paint. In process: the shell, then the view's HTML fragment, both
answered by the real app through ASGI (no sockets), which is the server's share. In chromium:
headless Debian chromium (through Playwright) opens the page on a real ``relaystore serve``, with
the token already in sessionStorage, and the paint ends when the view's content is in the DOM
(the timeline's table, the trie's tree); ``first-contentful-paint`` is recorded beside it. The
target is under 1 s per paint (issue 20), judged on the slowest paint of the timed batches. No
peer: the figure is absolute, so the case reports paints/s and the check reads the latencies.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

import relaystore
from benchmarks.browser import LAUNCH_ARGS, chromium_path
from benchmarks.cases.http import ADMIN as SERVER_ADMIN
from benchmarks.cases.http import _server
from benchmarks.harness import Contender, Context, Facts, Matchup, Op, case
from relaystore.models import CheckpointMetadata, Metrics, Prediction, TrieEnvelope, TrieNode
from relaystore.server.app import create_app
from relaystore.server.ui import views_adaptive

ADMIN = "bench-ui-admin-" + "a" * 32
CHECKPOINTS = 10_000
FAN_OUT, DEPTH = 12, 4  # a trie of 12 + 144 + 1,728 + 20,736 = 22,620 nodes
TARGET_MS = 1000.0
LABEL = "relaystore /ui"
BROWSER_LABEL = "relaystore /ui in chromium"
TOKEN_KEY = "relaystore.ui.token"  # the sessionStorage key of server/ui/static/ui.js
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


def browser_contender(ctx: Context, what: str) -> Contender:
    """Paints in headless chromium against ``relaystore serve`` on a filled sqlite file."""
    facts: dict[str, Any] = {}

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        from playwright.async_api import async_playwright

        url = f"sqlite:///{ctx.path('ui.db')}"
        if what == "thread":
            page_path, ready = f"/ui/thread?id={await fill_thread(url, ctx.fill_options)}", "#timeline"
        else:
            page_path, ready = f"/ui/adaptive?agent={await fill_trie(url, ctx.fill_options)}", "#trie"
        executable = await asyncio.to_thread(chromium_path)
        latencies: list[float] = []
        contentful: list[float] = []
        async with _server(ctx, "ui") as base, async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=LAUNCH_ARGS
            )
            context = await browser.new_context()
            await context.add_init_script(f"sessionStorage.setItem({TOKEN_KEY!r}, {SERVER_ADMIN!r})")

            async def paint(_i: int) -> None:
                page = await context.new_page()  # a fresh tab: nothing parsed or cached yet
                started = time.perf_counter()
                await page.goto(base + page_path, wait_until="commit")
                await page.wait_for_selector(ready, state="attached")
                latencies.append((time.perf_counter() - started) * 1000)
                fcp = await page.evaluate(FCP_SCRIPT)
                if fcp is not None:
                    contentful.append(float(fcp))
                await page.close()

            yield paint
            await browser.close()
        facts[SLOWEST] = round(max(latencies), 1)
        facts["median paint ms"] = round(sorted(latencies)[len(latencies) // 2], 1)
        if contentful:
            facts["median first-contentful-paint ms"] = round(sorted(contentful)[len(contentful) // 2], 1)

    return Contender(BROWSER_LABEL, setup, facts)


FCP_SCRIPT = "() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"


def no_browser() -> str | None:
    """Why the chromium cases can't run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (dev extra)"
    return None if chromium_path() else "no chromium: `apt-get install -y chromium` failed or needs root"


def under_target(facts: Facts) -> tuple[bool, str]:
    label = next(iter(facts))
    slowest = facts[label][SLOWEST]
    return slowest < TARGET_MS, f"slowest first paint {slowest:.0f} ms (target < {TARGET_MS:.0f} ms)"


THREAD = f"thread of {CHECKPOINTS:,} checkpoints"
TRIE = f"trie of {sum(FAN_OUT**d for d in range(1, DEPTH + 1)):,} nodes"
TRIE_COLD_PAINT = (
    "the slowest paint is the first: the server parses the whole 8.7 MB trie document "
    "(json alone takes about 0.46 s here, validation 0.65 s) while chromium opens its first "
    "tab; later paints reuse the parsed trie for 10 s (see the median)"
)


def paint_case(title: str, contender: Callable[[Context, str], Contender], what: str, **options: Any) -> None:
    """Register one first-paint case: ``contender(ctx, what)`` alone, judged by :func:`under_target`."""
    case(
        "ui",
        title,
        n=10,
        quick_n=3,
        repeats=3,
        quick_repeats=1,
        unit="paints/s",
        in_quick=False,
        check=under_target,
        **options,
    )(lambda ctx: Matchup(contender(ctx, what), []))


paint_case(
    f"first paint: {THREAD}",
    paint_contender,
    "thread",
    note="shell + timeline fragment (newest 100 checkpoints, selected one decoded), in-process ASGI",
)
paint_case(
    f"first paint: {TRIE}",
    paint_contender,
    "trie",
    note="shell + adaptive fragment (runs, plan, trie top level; deeper levels load on open)",
)
paint_case(
    f"first paint in chromium: {THREAD}",
    browser_contender,
    "thread",
    skip_if=no_browser,
    note="a fresh tab opens /ui/thread on relaystore serve (sqlite); done when #timeline is in the DOM",
)
paint_case(
    f"first paint in chromium: {TRIE}",
    browser_contender,
    "trie",
    skip_if=no_browser,
    note="a fresh tab opens /ui/adaptive on relaystore serve (sqlite); done when #trie is in the DOM",
    reasons={"check": TRIE_COLD_PAINT},
)
