"""LangGraph threads in the CLI: shown with their namespace, found by their plain id."""

from __future__ import annotations

import json
import operator
from pathlib import Path
from typing import Annotated, TypedDict

from typer.testing import CliRunner

from relaystore.cli import app

runner = CliRunner(env={"COLUMNS": "200", "RELAYSTORE_URL": None})


class Count(TypedDict):
    n: Annotated[int, operator.add]


def run_graph(url: str) -> None:
    from langgraph.graph import END, START, StateGraph

    from relaystore.integrations.langgraph import RelaySaver

    builder = StateGraph(Count)
    builder.add_node("step", lambda state: {"n": 1})
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    with RelaySaver.from_url_sync(url) as saver:
        builder.compile(checkpointer=saver).invoke({"n": 0}, {"configurable": {"thread_id": "t1"}})


def test_threads_show_the_namespace_and_checkpoints_take_the_plain_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lg.db'}"
    run_graph(url)
    shown = runner.invoke(app, ["threads", "--url", url])
    assert shown.exit_code == 0, shown.output
    assert 't1 (ns "")' in shown.stdout and "\x1f" not in shown.stdout
    listing = json.loads(runner.invoke(app, ["threads", "--url", url, "--json"]).stdout)
    assert listing["items"][0]["langgraph"] == {"thread_id": "t1", "checkpoint_ns": ""}
    assert listing["items"][0]["thread_id"] == "t1\x1f"
    for typed in ("t1", 't1 (ns "")', "t1\x1f"):
        found = runner.invoke(app, ["checkpoints", typed, "--url", url, "--json"])
        assert found.exit_code == 0, found.output
        assert len(json.loads(found.stdout)["items"]) == 3  # input, loop start, after "step"
    human = runner.invoke(app, ["checkpoints", "t1", "--url", url]).stdout
    assert 't1 (ns "")' in human
    missing = json.loads(runner.invoke(app, ["checkpoints", "t2", "--url", url, "--json"]).stdout)
    assert missing["items"] == []
