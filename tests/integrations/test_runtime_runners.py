"""A real ``agents.Runner.run`` and a real ADK ``Runner``, each with an offline fake model, run
twice in two processes on one SQLite file: the second run's model sees the first run's turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("runtime_runs.py")


def turn(runtime: str, url: str, message: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENAI_AGENTS_DISABLE_TRACING": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), runtime, url, message],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("runtime", ["agents", "adk"])
def test_second_process_sees_the_first_runs_history(runtime: str, tmp_path: Path) -> None:
    pytest.importorskip("agents" if runtime == "agents" else "google.adk")
    url = f"sqlite:///{tmp_path}/{runtime}.db"
    first = turn(runtime, url, "my name is Ada")
    assert first == {"seen": ["my name is Ada"], "reply": "echo: my name is Ada"}
    second = turn(runtime, url, "what is my name?")
    assert second["seen"] == ["my name is Ada", "echo: my name is Ada", "what is my name?"]
    assert second["reply"] == "echo: what is my name?"
