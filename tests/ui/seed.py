"""Data for the inspector tests: ``examples/quickstart.py``'s tour, a LangGraph run through
RelaySaver, a blob-carrying output, ACG windows, accumulators and memory items."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import operator
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

import relaystore
from relaystore.integrations.langgraph import RelaySaver
from relaystore.models import ArtifactEvent, FinalEvent, inline

ROOT = Path(__file__).resolve().parents[2]
# A 1×1 red PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def _quickstart() -> Any:
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Seeded:
    thread: str
    task: str
    agent: str
    planner_ref: str
    writer_ref: str
    image_ref: str
    graph_thread: str  # the LangGraph thread_id
    nested_thread: str  # a LangGraph thread whose subgraph writes namespace "outer"


class State(TypedDict):
    messages: Annotated[list[str], operator.add]
    steps: int


async def langgraph_run(store: relaystore.Store, thread_id: str) -> None:
    """Two turns of a small think → act graph, then a turn whose parallel branch fails, which
    leaves the finished branch's writes pending on the checkpoint."""
    failing = {"on": False}

    def think(state: State) -> dict[str, Any]:
        return {"messages": [f"thought {state.get('steps', 0)}"], "steps": state.get("steps", 0) + 1}

    def act(state: State) -> dict[str, Any]:
        return {"messages": ["acted"]}

    def audit(state: State) -> dict[str, Any]:
        if failing["on"]:
            raise RuntimeError("audit is down")
        return {}

    builder = StateGraph(State)
    builder.add_node("think", think)
    builder.add_node("act", act)
    builder.add_node("audit", audit)
    builder.add_edge(START, "think")
    builder.add_edge("think", "act")
    builder.add_edge("think", "audit")
    builder.add_edge("act", END)
    builder.add_edge("audit", END)
    graph = builder.compile(checkpointer=RelaySaver(store))
    config = {"configurable": {"thread_id": thread_id}}
    await graph.ainvoke({"messages": ["hello"], "steps": 0}, config)
    await graph.ainvoke({"messages": ["again"]}, config)
    failing["on"] = True
    with contextlib.suppress(RuntimeError):
        await graph.ainvoke({"messages": ["third"]}, config)


async def nested_run(store: relaystore.Store, thread_id: str) -> None:
    """A graph whose one node is a subgraph with its own checkpoints (namespace ``outer``)."""
    inner = StateGraph(State)
    inner.add_node("inner", lambda state: {"messages": ["from the subgraph"]})
    inner.add_edge(START, "inner")
    inner.add_edge("inner", END)
    outer = StateGraph(State)
    outer.add_node("outer", inner.compile(checkpointer=True))
    outer.add_edge(START, "outer")
    outer.add_edge("outer", END)
    graph = outer.compile(checkpointer=RelaySaver(store))
    await graph.ainvoke({"messages": ["start"], "steps": 0}, {"configurable": {"thread_id": thread_id}})


async def seed(url: str) -> Seeded:
    """Write everything the inspector pages show into the store at ``url``."""
    quickstart = _quickstart()
    tour = quickstart.Tour()
    await quickstart.write_everything(url, tour)
    graph_thread = f"graph-{uuid.uuid4().hex[:8]}"
    async with relaystore.connect(url) as store:
        await langgraph_run(store, graph_thread)
        await nested_run(store, graph_thread + "-nested")
        image = await store.blobs.put(PNG, mime="image/png")
        chart = ArtifactEvent(name="chart", content=image)
        image_ref = await store.outputs.append(tour.task, 0, "writer", chart, parent_refs=[tour.writer_ref])
        data = await store.blobs.put(b'{"rows": [1, 2, 3]}', mime="application/json")
        await store.outputs.append(tour.task, 1, "writer", FinalEvent(content=data, ok=True))
        await store.outputs.append("other-task", 0, "spy", FinalEvent(content=inline("secret"), ok=True))
        await store.adaptive.store_observations(f"acg:{tour.agent}:planner", observations())
        await store.adaptive.store_accumulators(tour.agent, {"nodes": {"planner": {}}})
        await store.items.put(("users", "alice", "notes"), "n1", {"text": "likes tea", "kind": "note"})
        await store.items.put(("users", "alice", "notes"), "n2", {"text": "lives in Lyon", "kind": "fact"})
        await store.items.put(("users", "bob"), "profile", {"text": "bob's secret", "kind": "profile"})
    return Seeded(
        tour.thread,
        tour.task,
        tour.agent,
        tour.planner_ref,
        tour.writer_ref,
        image_ref,
        graph_thread,
        graph_thread + "-nested",
    )


def observations() -> list[dict[str, Any]]:
    """Three PromptIR observations of growing size (an ACG window)."""
    return [
        {
            "ir_id": str(uuid.uuid4()),
            "created_at": f"2026-01-0{i + 1}T00:00:00Z",
            "blocks": [
                {
                    "span_id": f"s{j}",
                    "sequence_index": j,
                    "role": "system" if j == 0 else "user",
                    "content": "x" * (40 * (i + 1)),
                    "content_type": "text",
                    "provenance": "developer",
                }
                for j in range(i + 2)
            ],
        }
        for i in range(3)
    ]
