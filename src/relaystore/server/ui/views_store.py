"""Overview, Threads, One thread and Diff: views over ``store.checkpoints`` (and store info).

LangGraph threads (ids ``thread_id + "\\x1f" + checkpoint_ns``, as :mod:`relaystore.integrations.
langgraph` writes them) are decoded through :class:`RelaySaver` itself, with its default serde
(no pickle): channel values, pending writes and the thread's other namespaces.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from relaystore.errors import InvalidInput, RelayStoreError
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.server.ui.context import Ctx, Fragment
from relaystore.server.ui.render import bars, decode_json_bytes, json_diff, plain
from relaystore.server.web import scrub_paths
from relaystore.stores import Store

SEPARATOR = "\x1f"  # relaystore.integrations.langgraph.SEPARATOR, without importing LangGraph
THREADS_PAGE = 50
TIMELINE_PAGE = 100
COUNT_CAP = 1000  # threads or agents counted on the overview before it says "1,000+"
RECENT = 10


# --------------------------------------------------------------------------- overview


async def overview(ctx: Ctx) -> Response:
    """Backend facts, counts, recent activity and health; an agent or memory token sees its scope."""
    started = time.perf_counter()
    info = {k: scrub_paths(str(v)) for k, v in (await ctx.store.info()).items() if k != "path"}
    answered_ms = (time.perf_counter() - started) * 1000
    if not ctx.principal.admin:  # store-wide facts (counts, URL) are the admin's
        scoped = {"backend": info.get("backend", "")}
        return ctx.page("overview.html", info=scoped, counts={}, recent=[], health_ms=answered_ms)
    counts = {
        "threads": await _capped(lambda cursor: ctx.store.checkpoints.list_threads(limit=500, cursor=cursor)),
        "agents": await _capped(lambda cursor: ctx.store.adaptive.list_agents(limit=500, cursor=cursor)),
        "memory items": await _item_count(ctx.store),
    }
    return ctx.page(
        "overview.html", info=info, counts=counts, recent=await _recent(ctx.store), health_ms=answered_ms
    )


async def _capped(pages: Any) -> str:
    """How many entries a paged listing has, counted up to :data:`COUNT_CAP`."""
    total, cursor = 0, None
    while total < COUNT_CAP:
        page = await pages(cursor)
        total += len(page)
        cursor = page.next_cursor
        if cursor is None:
            return f"{total:,}"
    return f"{COUNT_CAP:,}+"


async def _item_count(store: Store) -> str:
    try:
        return f"{await store.items.count():,}"
    except InvalidInput:  # a backend without items
        return "n/a"


async def _recent(store: Store) -> list[Any]:
    """The latest checkpoint of the first threads, newest first: what changed lately."""
    latest: list[CheckpointMetadata] = []
    for thread in await store.checkpoints.list_threads(limit=RECENT * 5):
        page = await store.checkpoints.list(thread, limit=1, newest_first=True)
        latest.extend(page)
    return sorted(latest, key=lambda m: m.created_at, reverse=True)[:RECENT]


# --------------------------------------------------------------------------- threads


def split_thread(thread: str) -> tuple[str, str] | None:
    """``(thread_id, checkpoint_ns)`` of a LangGraph thread, None for another thread."""
    if SEPARATOR not in thread:
        return None
    thread_id, _, namespace = thread.partition(SEPARATOR)
    return thread_id, namespace


async def threads(ctx: Ctx) -> Response:
    """Thread ids by prefix search, one cursor page at a time, with their checkpoint counts."""
    prefix = ctx.q("q")
    page = await ctx.store.checkpoints.list_threads(prefix=prefix, limit=THREADS_PAGE, cursor=ctx.q("cursor"))
    rows = [(t, split_thread(t), await ctx.store.checkpoints.count(t)) for t in page]
    return ctx.page("threads.html", rows=rows, prefix=prefix or "", next_cursor=page.next_cursor)


# --------------------------------------------------------------------------- one thread


async def thread(ctx: Ctx) -> Response:
    """The checkpoint timeline (newest first, paged) and the selected checkpoint, decoded."""
    thread_id = ctx.need("id")
    checkpoints = ctx.store.checkpoints
    page = await checkpoints.list(thread_id, limit=TIMELINE_PAGE, cursor=ctx.q("cursor"), newest_first=True)
    total = await checkpoints.count(thread_id)
    selected = ctx.q("cp") or (page[0].id if page else None)
    detail = await checkpoint_detail(ctx.store, thread_id, selected) if selected else None
    sizes = bars(
        [m.state_size for m in reversed(page)], [f"step {m.step}" for m in reversed(page)], width=600
    )
    return ctx.page(
        "thread.html",
        thread_id=thread_id,
        lg=split_thread(thread_id),
        namespaces=await _namespaces(ctx.store, thread_id),
        page=page,
        total=total,
        next_cursor=page.next_cursor,
        selected=selected,
        detail=detail,
        sizes=sizes,
    )


async def _namespaces(store: Store, thread_id: str) -> list[tuple[str, str]]:
    """Other namespaces of a LangGraph thread: ``(relaystore thread, checkpoint_ns)``."""
    parts = split_thread(thread_id)
    if parts is None:
        return []
    page = await store.checkpoints.list_threads(prefix=parts[0] + SEPARATOR, limit=100)
    return [(t, t.partition(SEPARATOR)[2] or "(root)") for t in page]


async def checkpoint_detail(store: Store, thread_id: str, checkpoint_id: str) -> dict[str, Any]:
    """One checkpoint for display: metadata, decoded state and, for LangGraph, pending writes.

    Raises :class:`~relaystore.errors.CheckpointNotFound` / ``ThreadNotFound`` for a bad id.
    """
    checkpoint = await store.checkpoints.load(thread_id, checkpoint_id)
    metadata = checkpoint.metadata.model_dump(mode="json", exclude={"attributes"})
    detail: dict[str, Any] = {"metadata": metadata, "attributes": checkpoint.metadata.attributes}
    decoded = await _langgraph_tuple(store, thread_id, checkpoint_id)
    if decoded is None:
        detail["state"] = decode_json_bytes(checkpoint.state)
        detail["writes"] = [
            {"task_id": w.task_id, "idx": w.idx, "channel": w.channel, "value": decode_json_bytes(w.value)}
            for w in await store.checkpoints.list_writes(thread_id, checkpoint_id)
        ]
    else:
        detail.update(decoded)
    return detail


async def _langgraph_tuple(store: Store, thread_id: str, checkpoint_id: str) -> dict[str, Any] | None:
    """Channel values and pending writes through RelaySaver, or None when the thread is not a
    LangGraph one (or LangGraph is not installed, or the state does not decode)."""
    parts = split_thread(thread_id)
    if parts is None:
        return None
    try:
        from relaystore.integrations.langgraph import RelaySaver
    except ImportError:
        return None
    config = {
        "configurable": {"thread_id": parts[0], "checkpoint_ns": parts[1], "checkpoint_id": checkpoint_id}
    }
    try:
        found = await RelaySaver(store).aget_tuple(config)  # type: ignore[arg-type]
    except (RelayStoreError, NotImplementedError, ValueError, TypeError):
        return None  # not written by RelaySaver: show the raw state instead
    if found is None:
        return None
    values = found.checkpoint.get("channel_values") or {}
    return {
        "state": plain(values),
        "channel_versions": plain(found.checkpoint.get("channel_versions") or {}),
        "writes": [{"task_id": t, "channel": c, "value": plain(v)} for t, c, v in found.pending_writes or []],
        "langgraph_metadata": plain(found.metadata),
    }


async def diff(ctx: Ctx) -> Response:
    """The JSON diff of the states of checkpoints ``a`` and ``b`` of thread ``id``."""
    thread_id = ctx.need("id")
    first, second = ctx.need("a"), ctx.need("b")
    old = await checkpoint_detail(ctx.store, thread_id, first)
    new = await checkpoint_detail(ctx.store, thread_id, second)
    changes = json_diff(old["state"], new["state"])
    return ctx.page("diff.html", thread_id=thread_id, a=old, b=new, changes=changes)


FRAGMENTS = {
    "overview": Fragment("any", overview),
    "threads": Fragment("admin", threads),
    "thread": Fragment("admin", thread),
    "diff": Fragment("admin", diff),
}
