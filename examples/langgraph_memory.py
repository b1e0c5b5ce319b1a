"""Long-term memory for a LangGraph graph: what one conversation learns, another recalls.

The graph has one node. It reads the user's memories from the store (``RelayStore``), answers,
and writes a new memory when the user says "remember ...". Two runs on two different threads
(two conversations) share the memories because they share the store, not the checkpoints.

    python examples/langgraph_memory.py --db /tmp/memory.db

prints, as JSON, the answer of each thread and the memories stored for the user.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from relaystore.integrations.langgraph import RelaySaver
from relaystore.integrations.langgraph_store import RelayStore


class Chat(TypedDict):
    message: str
    answer: str


def respond(state: Chat, config: RunnableConfig, *, store: BaseStore) -> dict[str, str]:
    """Remember facts ("remember I like tea"), or answer with everything known about the user."""
    user = config["configurable"]["user_id"]
    namespace = ("users", user, "memories")
    message = state["message"]
    if message.lower().startswith("remember "):
        fact = message[len("remember ") :]
        store.put(namespace, uuid.uuid4().hex, {"fact": fact, "kind": "preference"})
        return {"answer": f"noted: {fact}"}
    known = [item.value["fact"] for item in store.search(namespace, filter={"kind": "preference"})]
    return {"answer": "I know that " + "; ".join(sorted(known)) if known else "I know nothing yet"}


def build(saver: RelaySaver, store: BaseStore):  # type: ignore[no-untyped-def]
    graph = StateGraph(Chat)
    graph.add_node("respond", respond)
    graph.add_edge(START, "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=saver, store=store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="memory-example.db", help="SQLite file for checkpoints and memories")
    args = parser.parse_args()
    url = f"sqlite:///{args.db}"
    with RelaySaver.from_url_sync(url) as saver, RelayStore.from_url_sync(url) as store:
        app = build(saver, store)
        answers = {}
        for thread, message in [
            ("thread-1", "remember I like green tea"),
            ("thread-1", "remember I live in Lyon"),
            ("thread-2", "what do you know about me?"),
        ]:
            config: RunnableConfig = {"configurable": {"thread_id": thread, "user_id": "u1"}}
            answers[thread] = app.invoke({"message": message, "answer": ""}, config)["answer"]
        memories = [item.value for item in store.search(("users", "u1"), limit=100)]
    print(json.dumps({"answers": answers, "memories": memories}, indent=2))


if __name__ == "__main__":
    main()
