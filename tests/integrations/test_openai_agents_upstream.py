"""The OpenAI Agents SDK's own session tests (from its source distribution) against RelaySession.

``make upstream-tests`` (``scripts/fetch-upstream-tests.sh``) unpacks ``openai-agents`` 0.24.0
into ``.cache/upstream/``; ``RELAYSTORE_AGENTS_SDIST`` may point elsewhere. Without it these
tests skip. Each backend runs ``tests/memory/test_session.py`` and ``test_session_limit.py`` in a
pytest subprocess with ``agents_upstream_plugin`` swapping ``SQLiteSession`` for RelaySession.

The deselected tests are about SQLiteSession's internals (see docs/integrations.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("agents")

ROOT = Path(__file__).resolve().parents[2]
SDIST = Path(os.environ.get("RELAYSTORE_AGENTS_SDIST", ROOT / ".cache/upstream/openai_agents-0.24.0"))
FILES = ["tests/memory/test_session.py", "tests/memory/test_session_limit.py"]
# SQLiteSession internals: its worker-thread connections, rows corrupted with sqlite3, its file
# lock, rollback and lock release after injected driver failures, post-commit cancellation, and
# the exact text of its closed-session error.
SQLITE_INTERNALS = [
    "worker_thread",
    "retired_connections",
    "reaps_connections",
    "corrupt",
    "file_lock",
    "releases_write_lock",
    "rolls_back",
    "rollback_failure",
    "quarantined",
    "post_commit",
    "closed_rejects",
]
pytestmark = pytest.mark.slow  # four pytest subprocesses, about 80 s
EXPECTED_PASSED = 53
EXPECTED_DESELECTED = 18


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis", "memory"])
def test_upstream_session_tests_pass(backend: str, request: pytest.FixtureRequest) -> None:
    if not (SDIST / "tests/memory/test_session.py").exists():
        pytest.skip(f"no Agents sdist at {SDIST}: run `make upstream-tests` to fetch it")
    if backend in ("postgres", "redis"):
        request.getfixturevalue(f"{backend}_url")  # starts the service or skips
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(Path(__file__).parent)]),
        "RELAYSTORE_UPSTREAM_BACKEND": backend,
    }
    selection = " and ".join(f"not {name}" for name in SQLITE_INTERNALS)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "agents_upstream_plugin"]
    command += ["-o", "timeout=60", "-k", selection, *FILES]
    done = subprocess.run(command, cwd=SDIST, env=env, capture_output=True, text=True, timeout=300)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    deselected = re.search(r"(\d+) deselected", summary)
    assert passed and int(passed.group(1)) == EXPECTED_PASSED, summary
    assert deselected and int(deselected.group(1)) == EXPECTED_DESELECTED, summary
