"""Read-only views: ``info``, ``threads``, ``checkpoints``, ``outputs``, ``lineage``, ``runs``,
``plan`` and ``trie``.

Each command opens the store through :func:`relaystore.connect`, reads through the public API and
prints a Rich table or tree, or with ``--json`` one JSON document built from the models' JSON.
Listings print at most ``--limit`` items and the cursor to continue from (``--cursor``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

import relaystore
from relaystore.cli._paging import collect
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
from relaystore.errors import NotFound
from relaystore.integrations._shared import LANGGRAPH_SEPARATOR
from relaystore.models.adaptive import ExecutionPlan, Metrics, Prediction, RunRecord, TrieEnvelope, TrieNode
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.models.common import timestamp_to_ns
from relaystore.models.outputs import OutputRecord
from relaystore.stores import Store

LimitOption = Annotated[
    int, typer.Option("--limit", min=0, help="Show at most this many items (0: all of them).")
]
CursorOption = Annotated[
    str | None, typer.Option("--cursor", help="Continue a listing where a previous one stopped.")
]
DEFAULT_LIMIT = 50


# --------------------------------------------------------------------------- shared output


def listing_json(items: Iterable[Any], next_cursor: str | None) -> dict[str, Any]:
    """The ``--json`` document of every listing: its items and where to continue."""
    return {"items": list(items), "next_cursor": next_cursor}


def print_listing(table: Table, count: int, next_cursor: str | None, empty: str) -> None:
    """Print a listing's table, or ``empty`` when it has no rows, then how to see more."""
    console.print(table if count else Text(empty, style="dim"))
    if next_cursor:
        console.print(Text(f"more: --cursor {next_cursor}", style="dim"))


def add_plain_row(table: Table, *cells: str) -> None:
    """Add a row shown verbatim: ids and names may hold [brackets] that Rich would take as markup."""
    table.add_row(*(Text(cell) for cell in cells))


def unix_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def short_id(value: str, keep: int = 12) -> str:
    """``out-1a2b3c4d…``: enough to tell ids apart in a column of references."""
    return value if len(value) <= keep + 1 else value[:keep] + "…"


def clip(text: str, width: int = 40) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``width`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_content(content: Any) -> str:
    """One-line summary of an inline value, a file reference or a blob."""
    if content.kind == "inline":
        value = content.value
        return clip(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    if content.kind == "file_ref":
        return f"file {content.path}"
    return f"blob {content.sha256[:12]} ({content.size} B)"


def describe_event(event: Any) -> str:
    """One-line summary of an output event, by its type."""
    if event.type == "progress":
        return f"progress {event.stage}" + (f": {clip(event.note)}" if event.note else "")
    if event.type == "partial":
        return f"partial: {describe_content(event.chunk)}"
    if event.type == "artifact":
        return f"artifact {event.name}: {describe_content(event.content)}"
    return f"final {'ok' if event.ok else 'failed'}: {describe_content(event.content)}"


def langgraph_parts(thread_id: str) -> dict[str, Any]:
    """For a LangGraph thread key, the ``--json`` field that splits it: ``{"langgraph": {...}}``."""
    thread, separator, namespace = thread_id.partition(LANGGRAPH_SEPARATOR)
    return {"langgraph": {"thread_id": thread, "checkpoint_ns": namespace}} if separator else {}


def shown_thread(thread_id: str) -> str:
    """A LangGraph thread key (``t1`` + ``\\x1f`` + namespace) as ``t1 (ns "")``; others as they are."""
    thread, separator, namespace = thread_id.partition(LANGGRAPH_SEPARATOR)
    return f"{thread} (ns {json.dumps(namespace, ensure_ascii=False)})" if separator else thread_id


async def stored_thread(store: Store, thread: str) -> str:
    """The thread id as stored, for one typed by hand: ``t1 (ns "x")`` as ``threads`` shows it, or a
    plain ``t1`` that holds nothing itself but is a LangGraph thread (namespace ``""``)."""
    shown = _SHOWN_THREAD.match(thread)
    if shown:
        return shown.group(1) + LANGGRAPH_SEPARATOR + json.loads(shown.group(2))
    if LANGGRAPH_SEPARATOR in thread or await store.checkpoints.count(thread):
        return thread
    langgraph = thread + LANGGRAPH_SEPARATOR
    return langgraph if await store.checkpoints.count(langgraph) else thread


_SHOWN_THREAD = re.compile(r'^(.*) \(ns ("(?:[^"\\]|\\.)*")\)$')


# --------------------------------------------------------------------------- info


@app.command()
def info(url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Show which backend the URL opens and its facts (path, schema version, …)."""

    async def work() -> dict[str, Any]:
        async with open_existing(url) as store:
            return {"relaystore_version": relaystore.__version__, **await store.info()}

    facts = run(work)
    if as_json:
        print_json(facts)
        return
    table = Table(box=box.SIMPLE, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in facts.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
        add_plain_row(table, key, "–" if value is None else shown)
    console.print(table)


# --------------------------------------------------------------------------- checkpoints


@app.command()
def threads(
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
) -> None:
    """List the threads that hold checkpoints, with their checkpoint count and head."""

    async def work() -> tuple[list[dict[str, Any]], str | None]:
        async with open_existing(url) as store:
            ids, next_cursor = await collect(store.checkpoints.list_threads, limit, cursor)
            rows = [
                {
                    "thread_id": thread_id,
                    "checkpoints": await store.checkpoints.count(thread_id),
                    "head": await store.checkpoints.head(thread_id),
                    **langgraph_parts(thread_id),
                }
                for thread_id in ids
            ]
            return rows, next_cursor

    rows, next_cursor = run(work)
    if as_json:
        print_json(listing_json(rows, next_cursor))
        return
    table = Table("thread", "checkpoints", "head", box=box.SIMPLE_HEAD)
    for row in rows:
        add_plain_row(table, shown_thread(row["thread_id"]), str(row["checkpoints"]), row["head"] or "–")
    print_listing(table, len(rows), next_cursor, "no threads")


@app.command()
def checkpoints(
    thread: Annotated[str, typer.Argument(help="Thread id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
    newest_first: Annotated[bool, typer.Option("--newest-first", help="Newest checkpoint first.")] = False,
) -> None:
    """List a thread's checkpoints in store order (metadata only; the state stays in the store)."""

    async def work() -> tuple[str, list[CheckpointMetadata], str | None]:
        async with open_existing(url) as store:
            stored = await stored_thread(store, thread)
            listed = partial(store.checkpoints.list, stored, newest_first=newest_first)
            return stored, *await collect(listed, limit, cursor)

    stored, items, next_cursor = run(work)
    if as_json:
        print_json(listing_json((m.model_dump(mode="json") for m in items), next_cursor))
        return
    table = Table("id", "step", "label #tags", "parent", "bytes", "created (UTC)", box=box.SIMPLE_HEAD)
    table.title = Text(shown_thread(stored))
    table.columns[0].no_wrap = True  # ids are copied from here: keep them whole
    for meta in items:
        add_plain_row(
            table,
            meta.id,
            str(meta.step),
            " ".join([meta.label or "", *(f"#{tag}" for tag in meta.tags)]).strip(),
            short_id(meta.parent_id, 8) if meta.parent_id else "",
            str(meta.state_size),
            unix_time(meta.created_at),
        )
    print_listing(table, len(items), next_cursor, f"no checkpoints in thread {thread!r}")


# --------------------------------------------------------------------------- outputs


@app.command()
def outputs(
    task: Annotated[str, typer.Argument(help="Task id.")],
    attempt: Annotated[int, typer.Argument(min=0, help="Attempt number.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
) -> None:
    """List the outputs of one task attempt in store order, with their parents."""

    async def work() -> tuple[list[OutputRecord], str | None]:
        async with open_existing(url) as store:
            return await collect(partial(store.outputs.list_for_attempt, task, attempt), limit, cursor)

    items, next_cursor = run(work)
    if as_json:
        print_json(listing_json((r.model_dump(mode="json") for r in items), next_cursor))
        return
    table = Table(
        "seq", "ref", "producer", "event", "parents", box=box.SIMPLE_HEAD, title=Text(f"{task} #{attempt}")
    )
    table.columns[1].no_wrap = True
    for record in items:
        parents = "\n".join(short_id(p) for p in record.parent_refs)
        add_plain_row(
            table, str(record.seq), record.id, record.producer_agent, describe_event(record.event), parents
        )
    print_listing(table, len(items), next_cursor, f"no outputs for task {task!r} attempt {attempt}")


def record_label(record: OutputRecord, root: OutputRecord | None = None, *, repeated: bool = False) -> Text:
    """``producer  ref  event`` for one node of the lineage tree.

    The task and attempt are shown on the root, and on other nodes only where they differ from
    the root's, to keep lines short; a repeated node says so right after its ref.
    """
    label = Text()
    label.append(record.producer_agent, style="bold" if root else "bold magenta")
    label.append(f"  {record.id}", style="cyan")
    if repeated:
        label.append("  ↑ see above", style="dim italic")
        return label
    label.append(f"  {describe_event(record.event)}")
    if root is None or (record.task_id, record.attempt) != (root.task_id, root.attempt):
        label.append(f"  ({record.task_id} #{record.attempt})", style="dim")
    return label


def generations(start: OutputRecord, ancestors: list[OutputRecord]) -> dict[str, int]:
    """How many parent hops each ancestor is from ``start`` (its shortest path)."""
    by_ref = {r.id: r for r in ancestors}
    depth: dict[str, int] = {}
    frontier, hops = [start], 0
    while frontier:
        hops += 1
        parents = [by_ref[p] for r in frontier for p in r.parent_refs if p in by_ref and p not in depth]
        for parent in parents:
            depth.setdefault(parent.id, hops)
        frontier = list({p.id: p for p in parents}.values())
    return depth


def descendant_tree(start: OutputRecord, descendants: list[OutputRecord]) -> Tree:
    """A tree rooted at ``start``: each record under each of its parents, children in store order.

    A record with several parents (a join) is drawn in full under the first and marked as
    "see above" under the others, so a diamond does not repeat a whole subtree.
    """
    children: dict[str, list[OutputRecord]] = {}
    for record in sorted(descendants, key=lambda r: r.seq):
        for parent in dict.fromkeys(record.parent_refs):
            children.setdefault(parent, []).append(record)
    drawn: set[str] = set()

    def grow(branch: Tree, record: OutputRecord) -> None:
        drawn.add(record.id)
        for child in children.get(record.id, []):
            if child.id in drawn:
                branch.add(record_label(child, start, repeated=True))
            else:
                grow(branch.add(record_label(child, start)), child)

    tree = Tree(record_label(start), guide_style="dim")
    grow(tree, start)
    return tree


def ancestor_table(start: OutputRecord, ancestors: list[OutputRecord]) -> Table:
    depth = generations(start, ancestors)
    table = Table("gen", "producer", "ref", "event", box=box.SIMPLE_HEAD, title="ancestors (nearest first)")
    table.columns[2].no_wrap = True
    for record in ancestors:
        add_plain_row(
            table,
            f"-{depth.get(record.id, '?')}",
            record.producer_agent,
            record.id,
            describe_event(record.event),
        )
    return table


@app.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="Output ref (out-…).")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
    depth: Annotated[
        int | None, typer.Option("--depth", min=0, help="Follow at most this many hops each way.")
    ] = None,
) -> None:
    """Show an output's ancestors (what it was built from) and a tree of its descendants."""

    async def work() -> tuple[OutputRecord, list[OutputRecord], list[OutputRecord]]:
        async with open_existing(url) as store:
            record = await store.outputs.get(ref)
            return (
                record,
                await store.outputs.ancestors(ref, max_depth=depth),
                await store.outputs.descendants(ref, max_depth=depth),
            )

    record, ancestors, descendants = run(work)
    if as_json:
        print_json(
            {
                "record": record.model_dump(mode="json"),
                "ancestors": [r.model_dump(mode="json") for r in ancestors],
                "descendants": [r.model_dump(mode="json") for r in descendants],
            }
        )
        return
    parts: list[RenderableType] = []
    if ancestors:
        parts.append(ancestor_table(record, ancestors))
    else:
        parts.append(Text("no ancestors: this output was not built from stored outputs", style="dim"))
    parts.append(Text(f"descendants ({len(descendants)})", style="italic"))
    parts.append(descendant_tree(record, descendants))
    console.print(Group(*parts))


# --------------------------------------------------------------------------- adaptive


def duration(run_record: RunRecord) -> str:
    if run_record.ended_at is None:
        return "running"
    nanos = timestamp_to_ns(run_record.ended_at) - timestamp_to_ns(run_record.started_at)
    return f"{nanos / 1e9:.2f}s"


def call_summary(run_record: RunRecord) -> str:
    """``llm/tool`` call counts, e.g. ``2/2``."""
    llm = sum(call.kind == "llm" for call in run_record.calls)
    return f"{llm}/{len(run_record.calls) - llm}"


def seconds_precision(timestamp: str) -> str:
    """``2026-11-21 10:17:12`` from an RFC 3339 timestamp (the table has no room for nanoseconds)."""
    return timestamp[:19].replace("T", " ")


@app.command()
def runs(
    agent: Annotated[str, typer.Argument(help="Agent id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
    limit: LimitOption = DEFAULT_LIMIT,
    cursor: CursorOption = None,
) -> None:
    """List an agent's recorded runs, oldest first: duration, calls and tokens."""

    async def work() -> tuple[list[RunRecord], str | None]:
        async with open_existing(url) as store:
            return await collect(partial(store.adaptive.list_runs, agent), limit, cursor)

    items, next_cursor = run(work)
    if as_json:
        print_json(listing_json((r.to_dict() for r in items), next_cursor))
        return
    table = Table(
        "run", "started", "took", "llm/tool", "tokens", "calls", box=box.SIMPLE_HEAD, title=Text(agent)
    )
    table.columns[0].no_wrap = True
    for item in items:
        tokens = sum(call.total_tokens or 0 for call in item.calls)
        sequence = " → ".join(call.name for call in item.calls)
        started = seconds_precision(item.started_at)
        add_plain_row(table, item.id, started, duration(item), call_summary(item), str(tokens), sequence)
    print_listing(table, len(items), next_cursor, f"no runs for agent {agent!r}")


def plan_tree(plan: ExecutionPlan) -> Tree:
    tree = Tree(Text.assemble("plan of ", (plan.agent_id, "bold")), guide_style="dim")
    groups = tree.add(Text(f"parallel groups ({len(plan.parallel_groups)})"))
    for group in plan.parallel_groups:
        groups.add(Text.assemble((group.group_id, "cyan"), f": {', '.join(group.tool_names)}"))
    template = plan.metadata_template
    meta = tree.add(Text(f"metadata template (run {template.run_id})"))
    for hint in template.parallel_hints:
        kind = "explicit" if hint.explicit else "learned"
        meta.add(Text.assemble((hint.tool_name, "bold"), f" → {hint.group_id} ({kind})"))
    if template.extensions:
        meta.add(Text(f"extensions: {json.dumps(template.extensions, sort_keys=True)}"))
    return tree


@app.command()
def plan(
    agent: Annotated[str, typer.Argument(help="Agent id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Show an agent's execution plan: which tools run in parallel."""
    show_document(url, agent, "plan", plan_tree, as_json)


def show_document(url: str, agent: str, kind: str, render: Callable[[Any], Tree], as_json: bool) -> None:
    """Load the agent's ``kind`` document (``store.adaptive.load_<kind>``) and print it."""

    async def work() -> Any:
        async with open_existing(url) as store:
            found = await getattr(store.adaptive, f"load_{kind}")(agent)
        if found is None:
            raise NotFound(f"agent {agent!r} has no {kind}")
        return found

    found = run(work)
    if as_json:
        print_json(found.to_dict())
    else:
        console.print(render(found))


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def spread(metrics: Metrics) -> str:
    """``mean / p50 / p90`` of one metric."""
    return f"{number(metrics.mean)} / {number(metrics.p50)} / {number(metrics.p90)}"


def prediction_table(node: TrieNode) -> Table | None:
    """A node's predictions, one row per call index plus ``any``; None if it has none."""
    rows: list[tuple[str, Prediction]] = sorted(
        node.predictions_by_call_index.items(), key=lambda kv: (len(kv[0]), kv[0])
    )
    if node.predictions_any_index is not None:
        rows.append(("any", node.predictions_any_index))
    if not rows:
        return None
    table = Table(
        "call", "n", "remaining", "gap ms", "out tokens", "sens", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for index, pred in rows:
        samples = pred.remaining_calls.sample_count
        gap = spread(pred.interarrival_ms)
        if pred.interarrival_ms.sample_count != samples:
            gap += f" (n={pred.interarrival_ms.sample_count})"
        sensitivity = "–" if pred.latency_sensitivity is None else str(pred.latency_sensitivity)
        add_plain_row(
            table,
            index,
            str(samples),
            spread(pred.remaining_calls),
            gap,
            spread(pred.output_tokens),
            sensitivity,
        )
    return table


def trie_tree(envelope: TrieEnvelope) -> Tree:
    head = Text.assemble(
        ("trie ", "bold"),
        (envelope.workflow_name, "bold"),
        f"  version {envelope.version}, generated {envelope.generated_at}\n",
        ("each cell: mean / p50 / p90; n: samples (gap ms shows its own n when it differs)", "dim"),
    )
    tree = Tree(head, guide_style="dim")

    def grow(branch: Tree, node: TrieNode) -> None:
        table = prediction_table(node)
        label: RenderableType = Text(node.name, style="bold cyan")
        if table is not None:
            label = Group(label, table)
        child_branch = branch.add(label)
        for name in sorted(node.children):
            grow(child_branch, node.children[name])

    grow(tree, envelope.root)
    return tree


@app.command()
def trie(
    agent: Annotated[str, typer.Argument(help="Agent id.")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Show an agent's prediction trie with each node's predictions."""
    show_document(url, agent, "trie", trie_tree, as_json)
