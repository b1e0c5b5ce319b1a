"""Outputs: records per task and attempt, the lineage graph of one output, blob previews.

An agent token sees only what the API lets it read (:meth:`Principal.may_read`: its task's
outputs and the refs it was handed); a blob is reached only through an output it may read, and
is served with the download headers of :mod:`relaystore.server.blob_rules`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from relaystore.errors import InvalidInput
from relaystore.models.outputs import OutputRecord
from relaystore.server.blob_rules import blob_headers, safe_mime
from relaystore.server.ui.context import Ctx, Fragment
from relaystore.server.ui.render import plain

OUTPUTS_PAGE = 100
LINEAGE_DEPTH = 6  # levels of ancestors and of descendants drawn around the selected output
LINEAGE_NODES = 60  # nodes per side at most, so a wide swarm still draws quickly
PREVIEW_BYTES = 64 * 1024  # of a text or JSON blob shown in the page
IMAGE_BYTES = 8 * 1024 * 1024  # an image preview is fetched whole, up to this
NODE_W, NODE_H, GAP_X, GAP_Y = 170, 44, 60, 16


async def outputs(ctx: Ctx) -> Response:
    """Records of one task (and attempt), or all of them for the admin, paged by cursor; with
    ``ref``, the lineage and content of that output."""
    principal = ctx.principal
    task = ctx.q("task") or (None if principal.admin else principal.task)
    attempt = ctx.integer("attempt")
    if attempt is not None and task is None:
        raise InvalidInput("an attempt needs a task")
    if not principal.admin:
        principal.require_task(task)
    found = ctx.store.outputs
    cursor = ctx.q("cursor")
    if task is not None and attempt is not None:
        page = await found.list_for_attempt(task, attempt, limit=OUTPUTS_PAGE, cursor=cursor)
    else:
        page = await found.list(task_id=task, limit=OUTPUTS_PAGE, cursor=cursor)
    groups: dict[tuple[str, int], list[OutputRecord]] = {}
    for record in page:
        groups.setdefault((record.task_id, record.attempt), []).append(record)
    ref = ctx.q("ref")
    lineage = await _lineage(ctx, ref) if ref else None
    return ctx.page(
        "outputs.html",
        task=task or "",
        attempt="" if attempt is None else attempt,
        groups=groups,
        next_cursor=page.next_cursor,
        lineage=lineage,
        summary=summary,
    )


def summary(record: OutputRecord) -> str:
    """One line for a record: its event type and name or stage."""
    event = record.event
    name = getattr(event, "name", None) or getattr(event, "stage", None) or ""
    ok = getattr(event, "ok", None)
    return f"{event.type} {name}".strip() + ("" if ok is None else (" ✓" if ok else " ✗"))


# --------------------------------------------------------------------------- lineage


@dataclass(frozen=True)
class Node:
    record: OutputRecord
    level: int
    x: float
    y: float
    selected: bool


@dataclass(frozen=True)
class Edge:
    x1: float
    y1: float
    x2: float
    y2: float


async def _lineage(ctx: Ctx, ref: str) -> dict[str, Any]:
    """The selected output, its ancestors and descendants laid out in levels, and its content."""
    store, principal = ctx.store.outputs, ctx.principal
    record = await store.get(ref)
    principal.require_read(record)
    ancestors = [r for r in await store.ancestors(ref, max_depth=LINEAGE_DEPTH) if principal.may_read(r)]
    descendants = [r for r in await store.descendants(ref, max_depth=LINEAGE_DEPTH) if principal.may_read(r)]
    drawn_up, drawn_down = ancestors[:LINEAGE_NODES], descendants[:LINEAGE_NODES]
    levels: dict[str, int] = {record.id: 0}
    up: dict[str, list[str]] = {r.id: list(r.parent_refs) for r in [record, *drawn_up]}
    _spread(levels, record.id, up, set(up), -1)
    children: dict[str, list[str]] = {}
    for child in drawn_down:
        for parent in child.parent_refs:
            children.setdefault(parent, []).append(child.id)
    _spread(levels, record.id, children, {r.id for r in drawn_down}, +1)
    records: dict[str, OutputRecord] = {r.id: r for r in [record, *drawn_up, *drawn_down] if r.id in levels}
    nodes, edges, width, height = layout(records, levels, record.id)
    return {
        "record": record,
        "event": plain(record.event.model_dump(mode="json")),
        "contents": await _contents(ctx, record),
        "nodes": nodes,
        "edges": edges,
        "width": width,
        "height": height,
        "counts": (len(ancestors), len(descendants)),
    }


def _spread(
    levels: dict[str, int], start: str, links: dict[str, list[str]], allowed: set[str], step: int
) -> None:
    """Breadth-first from ``start`` along ``links`` (parents, or children) within ``allowed``:
    each record reached gets its distance times ``step`` (ancestors negative, descendants positive)."""
    frontier = [start]
    while frontier:
        following = []
        for ref in frontier:
            for linked in links.get(ref, ()):
                if linked not in levels and linked in allowed:
                    levels[linked] = levels[ref] + step
                    following.append(linked)
        frontier = following


def layout(
    records: dict[str, OutputRecord], levels: dict[str, int], selected: str
) -> tuple[list[Node], list[Edge], float, float]:
    """Columns by level (ancestors left, descendants right), rows in store order; SVG units."""
    columns: dict[int, list[OutputRecord]] = {}
    for ref, level in sorted(levels.items(), key=lambda item: (item[1], records[item[0]].seq)):
        columns.setdefault(level, []).append(records[ref])
    low = min(columns)
    where: dict[str, Node] = {}
    for level, column in columns.items():
        for row, record in enumerate(column):
            x = (level - low) * (NODE_W + GAP_X) + 4
            y = row * (NODE_H + GAP_Y) + 4
            where[record.id] = Node(record, level, x, y, record.id == selected)
    edges = [
        Edge(where[p].x + NODE_W, where[p].y + NODE_H / 2, node.x, node.y + NODE_H / 2)
        for node in where.values()
        for p in node.record.parent_refs
        if p in where
    ]
    width = (max(columns) - low + 1) * (NODE_W + GAP_X) + 8
    height = max(len(c) for c in columns.values()) * (NODE_H + GAP_Y) + 8
    return list(where.values()), edges, width, height


# --------------------------------------------------------------------------- content and blobs


async def _contents(ctx: Ctx, record: OutputRecord) -> list[dict[str, Any]]:
    """Each content ref of the output (``content`` or ``chunk``) ready for a preview."""
    shown = []
    for part in ("content", "chunk"):
        content = getattr(record.event, part, None)
        if content is None:
            continue
        entry: dict[str, Any] = {"part": part, "kind": content.kind}
        if content.kind == "inline":
            entry["value"] = plain(content.value)
        elif content.kind == "blob":
            entry.update(await _blob_preview(ctx, content))
        else:
            entry["path"] = content.path
        shown.append(entry)
    return shown


async def _blob_preview(ctx: Ctx, content: Any) -> dict[str, Any]:
    mime = safe_mime(content.mime)
    essence = mime.split(";", 1)[0].strip().lower()
    entry: dict[str, Any] = {"sha256": content.sha256, "size": content.size, "mime": mime, "preview": None}
    if essence.startswith("image/") and essence in {"image/png", "image/jpeg", "image/gif", "image/webp"}:
        entry["preview"] = "image"
    elif essence in {"text/plain", "application/json"} or essence.startswith("text/"):
        head = b"".join(
            [chunk async for chunk in await ctx.store.blobs.read(content.sha256, 0, PREVIEW_BYTES)]
        )
        text = head.decode("utf-8", errors="replace")
        if essence == "application/json" and content.size <= PREVIEW_BYTES:
            with contextlib.suppress(ValueError):
                text = json.dumps(json.loads(head), indent=2, ensure_ascii=False)
        entry.update(preview="text", text=text, cut=content.size > PREVIEW_BYTES)
    return entry


async def blob(ctx: Ctx) -> Response:
    """The bytes of a blob carried by output ``ref`` (``part`` content or chunk), as the API
    serves downloads: its safe type, ``nosniff``, a sandbox CSP and its disposition."""
    record = await ctx.store.outputs.get(ctx.need("ref"))
    ctx.principal.require_read(record)
    content = getattr(record.event, ctx.q("part", "content") or "content", None)
    if content is None or content.kind != "blob":
        raise InvalidInput("that output part carries no blob")
    if content.size > IMAGE_BYTES:
        raise InvalidInput(f"the blob is over {IMAGE_BYTES:,} bytes: download it through the API")
    data = b"".join([chunk async for chunk in await ctx.store.blobs.read(content.sha256)])
    mime = safe_mime(content.mime)
    return Response(data, media_type=mime, headers=blob_headers(mime))


FRAGMENTS = {
    "outputs": Fragment("outputs", outputs),
    "blob": Fragment("outputs", blob),
}
