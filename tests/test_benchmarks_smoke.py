"""Keeps the benchmark harness from rotting: one tiny case through the real API, no timing asserts."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from benchmarks.harness import Contender, Context, Matchup, Op, Registry, Target, run_all
from benchmarks.report import compare, environment, markdown

import relaystore


def _tiny_registry() -> Registry:
    registry = Registry()

    @registry.case(
        "smoke",
        "count",
        n=5,
        quick_n=3,
        repeats=2,
        quick_repeats=2,
        backends=("memory", "sqlite"),
        targets={"dict lookup": Target.at_least(0.0)},
    )
    def count(ctx: Context) -> Matchup:
        @asynccontextmanager
        async def subject() -> AsyncIterator[Op]:
            async with relaystore.connect(ctx.store_url("subject")) as store:
                yield lambda _i: store.checkpoints.count("t")

        @asynccontextmanager
        async def peer() -> AsyncIterator[Op]:
            threads: dict[str, int] = {}

            async def op(_i: int) -> int:
                return threads.get("t", 0)

            yield op

        return Matchup(Contender("relaystore", subject), [Contender("dict lookup", peer)])

    @registry.case(
        "smoke",
        "facts",
        n=4,
        repeats=2,
        quick_repeats=2,
        backends=("memory",),
        ops_per_call=3,
        check=lambda facts: (facts["counter"]["calls"] > 0, "the counter was called"),
    )
    def facts(ctx: Context) -> Matchup:
        recorded: dict[str, int] = {}

        @asynccontextmanager
        async def counter() -> AsyncIterator[Op]:
            calls = 0

            async def op(_i: int) -> None:
                nonlocal calls
                calls += 1

            yield op
            recorded["calls"] = calls  # after the timed part, as a lost-update count would be

        return Matchup(Contender("counter", counter, recorded), [])

    @registry.case("smoke", "broken", n=2, backends=("memory",))
    def broken(ctx: Context) -> Matchup:
        cleaned.append(False)
        ctx.defer(lambda: _mark(cleaned))
        raise RuntimeError("this case is broken on purpose")

    return registry


cleaned: list[bool] = []


async def _mark(flags: list[bool]) -> None:
    flags[-1] = True


async def test_harness_runs_a_case_and_writes_markdown(tmp_path: Path) -> None:
    cases = _tiny_registry().select(quick=True, only="count")
    assert [c.backend for c in cases] == ["memory", "sqlite"]

    results = await run_all(cases, quick=True, progress=lambda _line: None, tmp_root=tmp_path)

    for result in results:
        assert result.skipped is None
        assert result.subject is not None and result.subject.median > 0
        assert result.peers[0].median > 0
        assert result.ratios[0].met is True  # a target of ≥ 0× always holds
    page = markdown(
        environment(),
        results,
        mode="quick",
        command="pytest",
        extras={},
        plots=[],
        md_path=tmp_path / "benchmarks.md",
    )
    (tmp_path / "benchmarks.md").write_text(page)
    assert "| count [sqlite] | relaystore |" in page and "✔" in page

    doc = {"cases": [r.to_json() for r in results]}
    assert "count [sqlite] / dict lookup" in compare(doc, doc)


async def test_facts_checks_and_failures_are_reported(tmp_path: Path) -> None:
    cases = _tiny_registry().select(quick=True, only="smoke/[fb]*")
    facts, broken = await run_all(cases, quick=True, progress=lambda _line: None, tmp_root=tmp_path)

    assert facts.subject is not None and facts.subject.facts["calls"] > 0
    assert facts.check == {"met": True, "text": "the counter was called"}
    assert broken.error == "RuntimeError: this case is broken on purpose"
    assert cleaned == [True]  # deferred cleanups run even when the case fails
    page = markdown(
        environment(),
        [facts, broken],
        mode="quick",
        command="pytest",
        extras={},
        plots=[],
        md_path=tmp_path / "b.md",
    )
    assert "failed: RuntimeError" in page and "check: the counter was called ✔" in page


def test_console_table_explains_the_paired_ratio() -> None:
    """877 vs 1,046 ops/s beside "0.62×": the table says the ratio is paired per round and shows the
    round it comes from, whose two figures do give that ratio."""
    from benchmarks.harness import CaseResult, Measurement, Ratio, describe
    from rich.console import Console

    subject = Measurement("relaystore", "subject", [500.0, 877.0, 1400.0])
    peer = Measurement("peer", "peer", [1000.0, 1046.0, 1500.0])
    paired = [s / p for s, p in zip(subject.ops_per_s, peer.ops_per_s, strict=True)]
    result = CaseResult("c", "g", "case", "sqlite", "ops/s", 10, 3, subject=subject, peers=[peer])
    result.ratios = [Ratio("peer", paired)]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(describe(result))
    text = console.export_text()
    median = sorted(paired)[1]
    assert f"{median:.2f}×" in text and "within one round" in text
    rnd = paired.index(median)
    assert f"{subject.ops_per_s[rnd]:,.0f} / {peer.ops_per_s[rnd]:,.0f}" in text
