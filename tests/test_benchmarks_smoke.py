"""Keeps the benchmark harness from rotting: one tiny case through the real API, no timing asserts."""

from __future__ import annotations

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

    return registry


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
    assert "| count | relaystore |" in page and "✔" in page

    doc = {"cases": [r.to_json() for r in results]}
    assert "count [sqlite] / dict lookup" in compare(doc, doc)
