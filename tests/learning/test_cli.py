"""``relaystore learn`` and ``relaystore predict`` end to end on a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from relaystore.cli import app
from relaystore.connect import connect_sync
from tests.learning.factories import LLM_CALLS_PER_RUN, make_run


def test_learn_then_predict(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    runs = [make_run("cli-agent", i) for i in range(4)]
    with connect_sync(url) as store:
        for run in runs:
            store.adaptive.store_run(run)
    cli = CliRunner()

    first = cli.invoke(app, ["learn", "cli-agent", "--url", url, "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["llm_calls"] == 4 * LLM_CALLS_PER_RUN

    again = cli.invoke(app, ["learn", "cli-agent", "--url", url])  # would count the runs twice
    assert again.exit_code == 1

    newer = cli.invoke(app, ["learn", "cli-agent", "--url", url, "--after", runs[2].id, "--json"])
    assert json.loads(newer.stdout)["runs"] == 1

    scratch = cli.invoke(app, ["learn", "cli-agent", "--from-scratch", "--url", url, "--json"])
    assert json.loads(scratch.stdout)["runs"] == 4

    shown = cli.invoke(app, ["predict", "cli-agent", "writer", "--call-index", "1", "--url", url, "--json"])
    prediction = json.loads(shown.stdout)
    assert prediction["remaining_calls"]["sample_count"] == 4  # from scratch: not 5
    assert prediction["latency_sensitivity"] == 1

    table = cli.invoke(app, ["predict", "cli-agent", "planner", "--url", url])
    assert table.exit_code == 0 and "output_tokens" in table.stdout
    missing = cli.invoke(app, ["predict", "nobody", "planner", "--url", url])
    assert missing.exit_code == 1
