"""The read-only views, run in-process with Typer's CliRunner against a filled SQLite store."""

from __future__ import annotations

import json
import uuid
from typing import Any

from typer.testing import CliRunner

import relaystore
from relaystore.cli import app
from relaystore.models import CheckpointMetadata, ProgressEvent
from tests.cli.conftest import AGENT, RUN_IDS, Filled, sample_plan, sample_trie

# Wide enough that no table cell is cut, so the tests can look for whole ids.
runner = CliRunner(env={"COLUMNS": "200", "RELAYSTORE_URL": None})


def invoke(filled: Filled, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--url", filled.url])
    assert result.exit_code == 0, result.output
    return result


def as_json(filled: Filled, *args: str) -> Any:
    return json.loads(invoke(filled, *args, "--json").stdout)


def test_info_names_the_backend_and_file(filled: Filled) -> None:
    facts = as_json(filled, "info")
    assert facts["backend"] == "sqlite"
    assert facts["path"] == str(filled.path)
    assert filled.path.name in invoke(filled, "info").stdout


def test_threads_lists_counts_and_heads(filled: Filled) -> None:
    listing = as_json(filled, "threads")
    assert listing == {
        "items": [
            {"thread_id": "thread-a", "checkpoints": 3, "head": filled.heads["thread-a"]},
            {"thread_id": "thread-b", "checkpoints": 2, "head": listing["items"][1]["head"]},
        ],
        "next_cursor": None,
    }
    assert filled.heads["thread-a"] in invoke(filled, "threads").stdout


def test_listing_pages_through_cursors(filled: Filled) -> None:
    first = as_json(filled, "threads", "--limit", "1")
    assert [t["thread_id"] for t in first["items"]] == ["thread-a"]
    assert first["next_cursor"]
    second = as_json(filled, "threads", "--limit", "1", "--cursor", first["next_cursor"])
    assert [t["thread_id"] for t in second["items"]] == ["thread-b"]
    assert second["next_cursor"] is None
    human = invoke(filled, "threads", "--limit", "1").stdout
    assert f"--cursor {first['next_cursor']}" in human


def test_checkpoints_in_store_order_and_reversed(filled: Filled) -> None:
    items = as_json(filled, "checkpoints", "thread-a")["items"]
    assert [m["label"] for m in items] == ["plan", "research", "draft"]
    assert items[1]["parent_id"] == items[0]["id"]
    assert items[2]["custom"] == {"model": "nemotron"}
    newest = as_json(filled, "checkpoints", "thread-a", "--newest-first", "--limit", "0")["items"]
    assert [m["label"] for m in newest] == ["draft", "research", "plan"]
    table = invoke(filled, "checkpoints", "thread-a").stdout
    assert "research" in table and items[0]["id"] in table


def test_unknown_thread_is_an_empty_listing(filled: Filled) -> None:
    assert as_json(filled, "checkpoints", "nope") == {"items": [], "next_cursor": None}
    assert "no checkpoints in thread 'nope'" in invoke(filled, "checkpoints", "nope").stdout


def test_outputs_of_one_attempt(filled: Filled) -> None:
    items = as_json(filled, "outputs", "task-1", "0")["items"]
    assert len(items) == 7
    assert [r["seq"] for r in items] == sorted(r["seq"] for r in items)
    assert items[-1]["id"] == filled.refs["writer"]
    assert [r["id"] for r in as_json(filled, "outputs", "task-1", "1")["items"]] == [filled.refs["retry"]]
    table = invoke(filled, "outputs", "task-1", "0").stdout
    assert "artifact notes-2: file /tmp/n2.md" in table
    assert "final ok: blob abababababab (2048 B)" in table


def test_lineage_tree_of_descendants(filled: Filled) -> None:
    out = invoke(filled, "lineage", filled.refs["planner"]).stdout
    lines = out.splitlines()
    root = next(i for i, line in enumerate(lines) if line.startswith("planner"))
    tree = "\n".join(lines[root:])
    # Both researchers hang under the planner, the writer under each researcher (once in full).
    assert tree.count("├── researcher") == 1 and tree.count("└── researcher") == 1
    assert tree.count(filled.refs["writer"]) == 2
    assert "see above" in tree
    assert "no ancestors" in out


def test_lineage_lists_ancestors_by_generation(filled: Filled) -> None:
    doc = as_json(filled, "lineage", filled.refs["writer"])
    assert doc["record"]["id"] == filled.refs["writer"]
    assert [r["id"] for r in doc["ancestors"]] == [
        filled.refs["researcher1"],
        filled.refs["researcher2"],
        filled.refs["planner"],
    ]
    assert doc["descendants"] == []
    shallow = as_json(filled, "lineage", filled.refs["writer"], "--depth", "1")
    assert len(shallow["ancestors"]) == 2
    out = invoke(filled, "lineage", filled.refs["writer"]).stdout
    planner_row = next(line for line in out.splitlines() if filled.refs["planner"] in line)
    assert planner_row.split()[0] == "-2"


def test_runs_with_calls_and_tokens(filled: Filled) -> None:
    items = as_json(filled, "runs", AGENT)["items"]
    assert [r["id"] for r in items] == list(RUN_IDS)
    assert items[0]["calls"][0]["annotated_request"]["messages"][0]["content"] == "Research topic 0"
    table = invoke(filled, "runs", AGENT).stdout
    assert "planner → search → fetch → writer" in table
    assert "479" in table and "1.25s" in table


def test_plan_tree_and_json(filled: Filled) -> None:
    assert as_json(filled, "plan", AGENT) == sample_plan().to_dict()
    out = invoke(filled, "plan", AGENT).stdout
    assert "fanout:sha256:98257: fetch, search" in out
    assert "search → fanout:sha256:98257 (learned)" in out


def test_trie_tree_shows_predictions(filled: Filled) -> None:
    assert as_json(filled, "trie", AGENT) == sample_trie().to_dict()
    out = invoke(filled, "trie", AGENT).stdout
    planner_row = next(line for line in out.splitlines() if "610 / 610 / 915" in line)
    assert "17 / 17 / 21" in planner_row and planner_row.split()[-1] == "3"
    assert "120 / 120 / 124" in out
    assert out.index("planner") < out.index("writer")


def test_url_comes_from_the_environment(filled: Filled) -> None:
    result = runner.invoke(app, ["threads", "--json"], env={"RELAYSTORE_URL": filled.url})
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["items"]) == 2


def test_errors_are_one_clear_line(filled: Filled) -> None:
    cases = {
        ("plan", "nobody"): "NotFound: agent 'nobody' has no plan",
        ("trie", "nobody"): "NotFound: agent 'nobody' has no trie",
        ("lineage", "out-0123456789abcdef"): "OutputNotFound",
        ("lineage", "nope"): "InvalidInput: not an output ref",
        ("threads", "--cursor", "xyz"): "malformed cursor",
    }
    for args, message in cases.items():
        result = runner.invoke(app, [*args, "--url", filled.url])
        assert result.exit_code == 1, args
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.output
    bad_url = runner.invoke(app, ["info", "--url", "nonsense"])
    assert bad_url.exit_code == 1 and "not a store URL" in bad_url.stderr


def test_ids_with_brackets_are_shown_verbatim() -> None:
    """Rich would read ``[bold]`` as markup and fail on ``[/]``; ids must print as they are."""
    url = f"memory://views-{uuid.uuid4().hex}"
    thread = "[bold]chat[/]"
    with relaystore.connect_sync(url) as store:
        store.checkpoints.save(thread, CheckpointMetadata(id="[/]cp", thread_id=thread), b"x")
        store.outputs.append("[task]", 0, "[/]agent", ProgressEvent(stage="[red]"))
    expected = {
        ("threads",): thread,
        ("checkpoints", thread): "[/]cp",
        ("outputs", "[task]", "0"): "[/]agent progress [red]",
    }
    for args, shown in expected.items():
        result = runner.invoke(app, [*args, "--url", url])
        assert result.exit_code == 0, result.output
        assert shown in " ".join(result.stdout.split()), result.stdout
