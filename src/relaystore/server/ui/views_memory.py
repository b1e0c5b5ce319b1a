"""Long-term memory: the namespaces of ``store.items`` as a tree and the items under one, with
search (a key or value substring over a page, and an exact-match JSON filter in the store).

A memory token sees only namespaces under its prefixes, as on ``/v1/store/...``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from relaystore.errors import Forbidden, InvalidInput
from relaystore.server.ui.context import Ctx, Fragment
from relaystore.stores.items import compile_filter

NAMESPACES = 1000
ITEMS_PAGE = 50


def _namespace(ctx: Ctx) -> tuple[str, ...]:
    raw = ctx.q("ns")
    if raw is None:
        scopes = ctx.principal.namespaces
        return scopes[0] if scopes else ()
    try:
        labels = json.loads(raw)
        assert isinstance(labels, list) and all(isinstance(label, str) for label in labels)
    except (ValueError, AssertionError):
        raise InvalidInput("ns must be a JSON list of labels") from None
    return tuple(labels)


def _require(ctx: Ctx, namespace: tuple[str, ...]) -> None:
    scopes = ctx.principal.namespaces
    if not ctx.principal.admin and not any(namespace[: len(s)] == s for s in scopes or ()):
        raise Forbidden(f"the token may not use namespace {namespace!r}")


def tree(namespaces: list[tuple[str, ...]]) -> dict[str, Any]:
    """Nested ``{label: {"path": [...], "children": {...}}}`` of the namespaces."""
    root: dict[str, Any] = {}
    for namespace in namespaces:
        level = root
        for depth, label in enumerate(namespace):
            node = level.setdefault(label, {"path": json.dumps(list(namespace[: depth + 1])), "children": {}})
            level = node["children"]
    return root


async def memory(ctx: Ctx) -> Response:
    """The namespace tree and a page of items under ``ns`` matching ``q`` and ``filter``."""
    items = ctx.store.items
    namespace = _namespace(ctx)
    _require(ctx, namespace)
    scopes = [()] if ctx.principal.admin else list(ctx.principal.namespaces or ())
    found = sorted({n for s in scopes for n in await items.list_namespaces(prefix=s, limit=NAMESPACES)})
    raw_filter = ctx.q("filter")
    try:
        conditions = compile_filter(json.loads(raw_filter)) if raw_filter else []
    except ValueError:
        raise InvalidInput('filter must be a JSON object such as {"kind": "note"}') from None
    offset = ctx.integer("offset", 0) or 0
    page = await items.search(namespace, conditions=conditions, limit=ITEMS_PAGE, offset=offset)
    text = (ctx.q("q") or "").lower()
    shown = [
        (item, json.dumps(item.value, indent=2, ensure_ascii=False)[:4000])
        for item in page
        if not text or text in item.key.lower() or text in json.dumps(item.value, ensure_ascii=False).lower()
    ]
    return ctx.page(
        "memory.html",
        tree=tree(found),
        namespace=list(namespace),
        ns_json=json.dumps(list(namespace)),
        q=ctx.q("q") or "",
        filter=raw_filter or "",
        items=shown,
        offset=offset,
        more=len(page) == ITEMS_PAGE,
        page_size=ITEMS_PAGE,
    )


FRAGMENTS = {"memory": Fragment("memory", memory)}
