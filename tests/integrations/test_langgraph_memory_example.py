"""examples/langgraph_memory.py: what one thread learns, another thread of the same user recalls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langgraph.graph")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langgraph_memory.py"


def test_memories_cross_threads(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--db", str(tmp_path / "memory.db")],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(done.stdout)
    assert result["answers"]["thread-1"] == "noted: I live in Lyon"
    assert result["answers"]["thread-2"] == "I know that I like green tea; I live in Lyon"
    assert sorted(m["fact"] for m in result["memories"]) == ["I like green tea", "I live in Lyon"]
