"""A LangGraph graph that stops for human approval and resumes in another process.

The graph (deterministic, no LLM, no network) plans an article, drafts it, asks a human to
approve the draft with ``interrupt()``, then publishes. Its checkpoints live in SQLite through
relaystore's ``RelaySaver``, so the process that started it can exit and a new one resumes::

    python examples/langgraph_resume.py --db /tmp/lg.db start     # runs until the approval
    python examples/langgraph_resume.py --db /tmp/lg.db resume    # approves, finishes
    python examples/langgraph_resume.py --db /tmp/lg.db demo      # both, as two subprocesses
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from relaystore.integrations.langgraph import RelaySaver

THREAD: RunnableConfig = {"configurable": {"thread_id": "article-1"}}


class Article(TypedDict, total=False):
    topic: str
    outline: list[str]
    draft: str
    approved_by: str
    published: str
    log: list[str]


def plan(state: Article) -> Article:
    outline = [f"{state['topic']}: why", f"{state['topic']}: how", f"{state['topic']}: next"]
    return {"outline": outline, "log": [*state.get("log", []), "plan"]}


def draft(state: Article) -> Article:
    body = " / ".join(section.upper() for section in state["outline"])
    return {"draft": body, "log": [*state["log"], "draft"]}


def review(state: Article) -> Article:
    # Stops the run here; the value passed with Command(resume=...) becomes interrupt()'s result,
    # in whatever process resumes the thread.
    decision = interrupt({"question": "approve this draft?", "draft": state["draft"]})
    return {"approved_by": decision["by"], "log": [*state["log"], "review"]}


def publish(state: Article) -> Article:
    return {
        "published": f"{state['draft']} -- approved by {state['approved_by']}",
        "log": [*state["log"], "publish"],
    }


def build() -> StateGraph:
    graph = StateGraph(Article)
    for node in (plan, draft, review, publish):
        graph.add_node(node.__name__, node)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "draft")
    graph.add_edge("draft", "review")
    graph.add_edge("review", "publish")
    graph.add_edge("publish", END)
    return graph


async def start(db: Path) -> dict[str, Any]:
    """Run the graph from the beginning until it asks for approval; return what it asked."""
    async with RelaySaver.from_url(f"sqlite:///{db}") as saver:
        app = build().compile(checkpointer=saver)
        result = await app.ainvoke(Article(topic="storage"), THREAD)
        return {"interrupt": [i.value for i in result["__interrupt__"]], "log": result["log"]}


async def resume(db: Path, approver: str) -> dict[str, Any]:
    """Resume the interrupted thread from its last checkpoint and run it to the end."""
    async with RelaySaver.from_url(f"sqlite:///{db}") as saver:
        app = build().compile(checkpointer=saver)
        pending = await app.aget_state(THREAD)
        if not pending.next:
            raise SystemExit("nothing to resume: run `start` first")
        result = await app.ainvoke(Command(resume={"by": approver}), THREAD)  # type: ignore[call-overload]
        return {"published": result["published"], "log": result["log"]}


def demo(db: Path) -> dict[str, Any]:
    """Run ``start`` and ``resume`` as two separate processes, as a crash or deploy would."""
    steps = {}
    for command in ("start", "resume"):
        done = subprocess.run(
            [sys.executable, __file__, "--db", str(db), command],
            check=True,
            capture_output=True,
            text=True,
        )
        steps[command] = json.loads(done.stdout)
    return steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, default=Path("langgraph_resume.db"), help="SQLite file")
    parser.add_argument("--approver", default="alice", help="who approves the draft on resume")
    parser.add_argument("command", choices=("start", "resume", "demo"))
    args = parser.parse_args(argv)
    if args.command == "start":
        output = asyncio.run(start(args.db))
    elif args.command == "resume":
        output = asyncio.run(resume(args.db, args.approver))
    else:
        output = demo(args.db)
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
