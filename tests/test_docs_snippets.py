"""Every Python block in README.md and docs/*.md runs as written, so no snippet can rot.

A block runs as its own program in a fresh directory. One preceded by
``<!-- run-with: server -->`` runs beside a ``relaystore serve`` (its ``http://127.0.0.1:8787``
is pointed at that server, and ``.relaystore/admin-token`` is the server's). One preceded by
``<!-- not-run: reason -->`` is skipped, for that reason; keep those few.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.relay_server import start_server

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- (not-run|run-with): ?([^>]*?) ?-->\n)?```python\n(.*?)```", re.S)
MAX_NOT_RUN = 3


@dataclass(frozen=True)
class Snippet:
    where: str
    code: str
    marker: str | None
    reason: str


def snippets() -> list[Snippet]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start(3)].count("\n")
            found.append(Snippet(f"{path.relative_to(ROOT)}:{line}", match[3], match[1], match[2] or ""))
    return found


SNIPPETS = snippets()


def run_program(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    (cwd / "snippet.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for name in ("RELAYSTORE_URL", "RELAYSTORE_TOKEN"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "snippet.py"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A ``relaystore serve``, and a directory whose ``.relaystore/admin-token`` is its token."""
    where = tmp_path_factory.mktemp("served")
    served = start_server(f"sqlite:///{where / 's.db'}", where)
    (where / ".relaystore").mkdir()
    (where / ".relaystore" / "admin-token").write_text(served.admin_token + "\n")
    try:
        yield where, served.url
    finally:
        served.stop()


def test_few_snippets_are_not_run() -> None:
    skipped = [s.where for s in SNIPPETS if s.marker == "not-run"]
    assert len(skipped) <= MAX_NOT_RUN, skipped
    assert all(s.reason for s in SNIPPETS if s.marker == "not-run")


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.where for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if snippet.marker == "not-run":
        pytest.skip(snippet.reason)
    code, cwd = snippet.code, tmp_path
    if snippet.marker == "run-with":
        assert snippet.reason == "server", snippet
        cwd, url = request.getfixturevalue("server")
        code = code.replace("http://127.0.0.1:8787", url)
    done = run_program(code, cwd)
    assert done.returncode == 0, f"{snippet.where}:\n{done.stderr}"


def test_readme_quickstart_runs_twice(tmp_path: Path) -> None:
    quickstart = next(s for s in SNIPPETS if s.where.startswith("README.md") and "checkpoints" in s.code)
    for _ in range(2):  # the second run builds on the first run's thread head, no Conflict
        done = run_program(quickstart.code, tmp_path)
        assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "2 b'...'"
