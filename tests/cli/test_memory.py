"""``relaystore memory``, run in-process with Typer's CliRunner against a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from relaystore.cli import app

runner = CliRunner(env={"COLUMNS": "200", "RELAYSTORE_URL": None})


def invoke(url: str, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["memory", *args, "--url", url])
    assert result.exit_code == code, result.output
    return result


def test_put_ls_search_get_rm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mem.db'}"
    invoke(url, "put", "users.u1.memories", "m1", '{"fact": "likes tea", "n": 5}')
    invoke(url, "put", "users.u1.memories", "m2", '{"fact": "lives in Lyon", "n": 50}')
    invoke(url, "put", "users.u2", "m3", '{"fact": "other"}', "--ttl", "5")
    tree = invoke(url, "ls").stdout
    assert "users" in tree and "memories  2 items" in tree and "u2  1 item" in tree
    listed = json.loads(invoke(url, "ls", "users.u1", "--json").stdout)
    assert listed == {"namespaces": [{"namespace": ["users", "u1", "memories"], "items": 2}]}
    found = json.loads(invoke(url, "search", "users", "--filter", '{"n": {"$gt": 9}}', "--json").stdout)
    assert [i["key"] for i in found["items"]] == ["m2"]  # 50 > 9 as numbers
    got = json.loads(invoke(url, "get", "users.u2", "m3", "--json").stdout)
    assert got["value"] == {"fact": "other"} and got["expires_at"] > got["updated_at"]
    assert "deleted users.u2 / m3" in invoke(url, "rm", "users.u2", "m3").stdout
    assert json.loads(invoke(url, "ls", "--json").stdout)["namespaces"][-1]["namespace"] == [
        "users",
        "u1",
        "memories",
    ]


def test_errors_are_one_line_naming_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mem.db'}"
    invoke(url, "put", "users.u1", "k0", "{}")  # reading commands need the database to exist
    missing = invoke(url, "get", "users.u1", "nope", code=1)
    assert "relaystore memory search" in missing.output and len(missing.output.strip().splitlines()) == 1
    bad = invoke(url, "put", "users.u1", "k", "not json", code=1)
    assert "must be a JSON object" in bad.output
    empty_label = invoke(url, "put", "users..u1", "k", "{}", code=1)
    assert "InvalidInput" in empty_label.output
    bad_filter = invoke(url, "search", "--filter", '{"n": {"$in": [1]}}', code=1)
    assert "Unsupported operator" in bad_filter.output
