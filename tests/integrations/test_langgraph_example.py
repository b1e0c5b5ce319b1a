"""examples/langgraph_resume.py: a graph interrupted in one process is resumed in another."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langgraph.graph")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langgraph_resume.py"


def run(*args: str) -> dict:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], check=True, capture_output=True, text=True, timeout=120
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_start_then_resume_in_separate_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "resume.db")
    started = run("--db", db, "start")
    assert started["log"] == ["plan", "draft"]
    assert started["interrupt"][0]["question"] == "approve this draft?"
    finished = run("--db", db, "--approver", "bob", "resume")
    assert finished["log"] == ["plan", "draft", "review", "publish"]
    assert finished["published"].endswith("approved by bob")


def test_demo_runs_both_steps(tmp_path: Path) -> None:
    steps = run("--db", str(tmp_path / "demo.db"), "demo")
    assert steps["resume"]["published"] == "STORAGE: WHY / STORAGE: HOW / STORAGE: NEXT -- approved by alice"


def test_resume_without_start_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--db", str(tmp_path / "empty.db"), "resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "run `start` first" in done.stderr
