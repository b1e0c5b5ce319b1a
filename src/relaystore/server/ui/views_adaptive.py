"""Adaptive: per agent, runs, the prediction trie (lazily expanded), plan, accumulators and the
ACG observation windows as small charts, all read through ``store.adaptive``.

A large trie is never rendered whole: a page shows the root's children, and each node's
children come as their own fragment (``/ui/f/trie?agent=…&path=[…]``) when it is opened.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

from starlette.responses import Response

from relaystore.errors import InvalidInput, NotFound
from relaystore.models.adaptive import Prediction, TrieEnvelope, TrieNode
from relaystore.server.ui.context import Ctx, Fragment
from relaystore.server.ui.render import bars
from relaystore.stores import Store

AGENTS_PAGE = 100
RUNS_PAGE = 50
CHILDREN_SHOWN = 200  # children of one trie node listed; the rest are counted
WINDOWS = 12  # observation windows charted on one page
TRIE_SECONDS = 10.0  # a parsed trie is reused this long, so opening its nodes does not reparse it
TRIES_KEPT = 4
_tries: OrderedDict[tuple[str, str], tuple[float, TrieEnvelope | None]] = OrderedDict()


async def load_trie(store: Store, agent: str) -> TrieEnvelope | None:
    """``store.adaptive.load_trie(agent)``, reused for :data:`TRIE_SECONDS`: validating a large
    trie is most of a page's time (about 0.5 s for 22,000 nodes), and each opened node asks again."""
    key = (store.url, agent)
    now = time.monotonic()
    cached = _tries.get(key)
    if cached is not None and now - cached[0] < TRIE_SECONDS:
        return cached[1]
    envelope = await store.adaptive.load_trie(agent)
    _tries[key] = (now, envelope)
    _tries.move_to_end(key)
    while len(_tries) > TRIES_KEPT:
        _tries.popitem(last=False)
    return envelope


async def adaptive(ctx: Ctx) -> Response:
    """The agent list, or with ``agent`` that agent's runs, trie, plan, accumulators and windows."""
    agent = ctx.q("agent")
    if agent is None:
        page = await ctx.store.adaptive.list_agents(limit=AGENTS_PAGE, cursor=ctx.q("cursor"))
        rows = [(a, await ctx.store.adaptive.count_runs(a)) for a in page]
        return ctx.page("agents.html", rows=rows, next_cursor=page.next_cursor)
    face = ctx.store.adaptive
    runs = await face.list_runs(agent, limit=RUNS_PAGE, cursor=ctx.q("cursor"))
    trie = await load_trie(ctx.store, agent)
    return ctx.page(
        "adaptive.html",
        agent=agent,
        runs=runs,
        run_count=await face.count_runs(agent),
        next_cursor=runs.next_cursor,
        plan=await face.load_plan(agent),
        trie=trie,
        root=node_view(trie.root, []) if trie else None,
        accumulators=await face.load_accumulators(agent),
        windows=await _windows(ctx, agent),
    )


def node_view(node: TrieNode, path: list[str]) -> dict[str, Any]:
    """A trie node for display: its name, path, predictions (counts, latencies) and children."""
    children = sorted(node.children.items())
    return {
        "name": node.name,
        "path": path,
        "path_json": json.dumps(path),
        "predictions": [
            (f"call {index}", _prediction(p)) for index, p in sorted(node.predictions_by_call_index.items())
        ]
        + ([("any call", _prediction(node.predictions_any_index))] if node.predictions_any_index else []),
        "children": [
            {
                "name": name,
                "path_json": json.dumps([*path, name]),
                "count": len(child.children),
                **_head(child),
            }
            for name, child in children[:CHILDREN_SHOWN]
        ],
        "more": max(0, len(children) - CHILDREN_SHOWN),
    }


def _head(node: TrieNode) -> dict[str, Any]:
    """The first prediction of a node, for its one-line summary."""
    first = node.predictions_any_index or next(iter(node.predictions_by_call_index.values()), None)
    return {"samples": first.remaining_calls.sample_count if first else 0, "gap": _ms(first)}


def _ms(prediction: Prediction | None) -> str:
    return "" if prediction is None else f"{prediction.interarrival_ms.mean:,.0f} ms"


def _prediction(p: Prediction) -> dict[str, Any]:
    metric = p.interarrival_ms
    return {
        "samples": p.remaining_calls.sample_count,
        "remaining": p.remaining_calls.mean,
        "gap_mean": metric.mean,
        "gap_p50": getattr(metric, "p50", None),
        "gap_p90": getattr(metric, "p90", None),
        "tokens": p.output_tokens.mean,
        "sensitivity": p.latency_sensitivity,
    }


async def trie(ctx: Ctx) -> Response:
    """The children of the trie node at ``path`` (a JSON list of names) of ``agent``."""
    agent = ctx.need("agent")
    try:
        path = json.loads(ctx.need("path"))
        assert isinstance(path, list) and all(isinstance(p, str) for p in path)
    except (ValueError, AssertionError):
        raise InvalidInput("path must be a JSON list of node names") from None
    envelope = await load_trie(ctx.store, agent)
    if envelope is None:
        raise NotFound(f"agent {agent!r} has no trie")
    node = envelope.root
    for name in path:
        if name not in node.children:
            raise NotFound(f"the trie has no node {'/'.join(path)!r}")
        node = node.children[name]
    return ctx.page("trie_node.html", agent=agent, node=node_view(node, path))


async def _windows(ctx: Ctx, agent: str) -> list[dict[str, Any]]:
    """ACG observation windows whose key names the agent: tokens per observation as bars, and
    the stability scores per span when an analysis is stored."""
    face = ctx.store.adaptive
    keys = [k for k in await face.list_keys("acg_observations", limit=1000) if agent in k][:WINDOWS]
    windows = []
    for key in keys:
        observations = await face.load_observations(key) or []
        tokens = [float(sum(_tokens(b) for b in o.blocks)) for o in observations]
        labels = [f"{o.created_at}: {t:.0f} tokens" for o, t in zip(observations, tokens, strict=True)]
        stability = await face.load_stability(key)
        scores = stability.scores if stability else []
        windows.append(
            {
                "key": key,
                "count": len(observations),
                "bars": bars(tokens, labels),
                "scores": bars(
                    [s.score for s in scores], [f"{s.span_id}: {s.classification}" for s in scores]
                ),
                "kinds": [s.classification for s in scores],
                "stable_prefix": stability.stable_prefix_length if stability else None,
            }
        )
    return windows


def _tokens(block: Any) -> int:
    meta = block.token_metadata
    return meta.token_count if meta is not None else len(block.content) // 4


FRAGMENTS = {
    "adaptive": Fragment("admin", adaptive),
    "trie": Fragment("admin", trie),
}
