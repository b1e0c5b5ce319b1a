"""``relaystore learn`` and ``relaystore predict``: run NeMo Relay's learners over stored runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from relaystore.cli.app import (
    DEFAULT_URL,
    JsonOption,
    UrlOption,
    app,
    console,
    open_existing,
    print_json,
    run,
)
from relaystore.connect import connect
from relaystore.errors import InvalidInput, NotFound
from relaystore.learning import learn, predict, relearn
from relaystore.learning.runtime import RELEARN_PAGE, LearnReport
from relaystore.models.adaptive import Metrics, RunRecord
from relaystore.stores import Store

AgentArg = Annotated[str, typer.Argument(help="Agent id (NeMo Relay's agent_id).")]


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]learning[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )


async def _has_learned_state(store: Store, agent_id: str) -> bool:
    adaptive = store.adaptive
    return any(
        [
            await adaptive.load_accumulators(agent_id) is not None,
            await adaptive.load_plan(agent_id) is not None,
            await adaptive.load_observations(agent_id) is not None,
        ]
    )


async def _runs_after(store: Store, agent_id: str, after: str | None) -> list[RunRecord]:
    """All stored runs, or those stored after run ``after``; :class:`NotFound` for an unknown id."""
    runs: list[RunRecord] = []
    cursor: str | None = None
    while True:
        page = await store.adaptive.list_runs(agent_id, limit=RELEARN_PAGE, cursor=cursor)
        runs.extend(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    if after is None:
        return runs
    ids = [r.id for r in runs]
    if after not in ids:
        raise NotFound(f"agent {agent_id!r} has no run {after}")
    return runs[ids.index(after) + 1 :]


async def _learn_incrementally(store: Store, agent_id: str, after: str | None, bar: Progress) -> LearnReport:
    if after is None and await _has_learned_state(store, agent_id):
        raise InvalidInput(
            f"agent {agent_id!r} already has learned state; pass --after RUN_ID to learn only newer "
            "runs, or --from-scratch to rebuild it from all stored runs"
        )
    runs = await _runs_after(store, agent_id, after)
    task = bar.add_task("learn", total=len(runs))
    total = LearnReport(agent_id)
    for start in range(0, len(runs), RELEARN_PAGE):
        part = await learn(store, agent_id, runs[start : start + RELEARN_PAGE])
        total.runs += part.runs
        total.llm_calls += part.llm_calls
        total.parallel_groups = part.parallel_groups or total.parallel_groups
        total.acg_keys = list(dict.fromkeys([*total.acg_keys, *part.acg_keys]))
        total.best_acg_key = part.best_acg_key or total.best_acg_key
        bar.update(task, completed=total.runs)
    return total


@app.command("learn")
def learn_command(
    agent_id: AgentArg,
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="Rebuild all learned state from every stored run.")
    ] = False,
    after: Annotated[
        str | None, typer.Option("--after", help="Learn only the runs stored after this run id.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Run the latency, tool-parallelism and ACG learners over the agent's stored runs.

    Without --from-scratch the runs are applied on top of the stored state, which is only
    allowed when the agent has none yet, or with --after naming the last run already learned.
    """
    if from_scratch and after is not None:
        raise typer.BadParameter("--after cannot be combined with --from-scratch")

    async def work() -> LearnReport:
        async with connect(url) as store:
            with _progress(not as_json) as bar:
                if not from_scratch:
                    return await _learn_incrementally(store, agent_id, after, bar)
                task = bar.add_task("relearn", total=None)
                return await relearn(
                    store,
                    agent_id,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )

    report = run(work)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(
        f"learned [bold]{report.runs}[/bold] runs ({report.llm_calls} LLM calls) for {agent_id!r}: "
        f"{report.parallel_groups} parallel group(s), {len(report.acg_keys)} ACG key(s)"
    )
    if report.best_acg_key:
        console.print(f"best ACG key: {report.best_acg_key}")


def _metrics_row(name: str, metrics: Metrics) -> list[str]:
    return [
        name,
        str(metrics.sample_count),
        *(f"{v:g}" for v in (metrics.mean, metrics.p50, metrics.p90, metrics.p95)),
    ]


@app.command("predict")
def predict_command(
    agent_id: AgentArg,
    path: Annotated[str, typer.Argument(help="Trie path: an LLM call name, or names joined by '/'.")],
    call_index: Annotated[
        int | None, typer.Option("--call-index", min=1, help="1-based call index of that name.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Look up the learned prediction for PATH (deepest match; per-index before any-index)."""

    async def work() -> Any:
        async with open_existing(url) as store:
            trie = await store.adaptive.load_trie(agent_id)
        if trie is None:
            raise NotFound(f"agent {agent_id!r} has no trie; run `relaystore learn {agent_id}` first")
        return predict(trie, [p for p in path.split("/") if p], call_index)

    prediction = run(work)
    if as_json:
        print_json(None if prediction is None else prediction.to_dict())
        return
    if prediction is None:
        console.print(f"no prediction for {path!r}")
        raise typer.Exit(1)
    table = Table("metric", "samples", "mean", "p50", "p90", "p95", title=f"{agent_id} {path}")
    table.add_row(*_metrics_row("remaining_calls", prediction.remaining_calls))
    table.add_row(*_metrics_row("interarrival_ms", prediction.interarrival_ms))
    table.add_row(*_metrics_row("output_tokens", prediction.output_tokens))
    console.print(table)
    console.print(f"latency sensitivity: {prediction.latency_sensitivity}")
