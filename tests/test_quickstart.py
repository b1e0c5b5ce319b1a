"""``examples/quickstart.py`` (what ``make run`` runs) against a fresh SQLite file, twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_quickstart(url: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "RELAYSTORE_URL"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "error:" not in done.stderr
    return done.stdout


def test_quickstart_tours_the_store_and_reruns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relaystore.db'}"
    first = run_quickstart(url)
    assert "compare-and-set refused a stale write" in first
    for command in ("threads", "checkpoints", "outputs", "lineage", "runs", "plan", "trie"):
        assert f"$ relaystore {command}" in first
    # The planner's lineage tree: two researchers under it, the writer under each of them.
    tree = first[first.index("$ relaystore lineage") :]
    assert re.search(r"├── researcher\s+out-[0-9a-f]{32}", tree)
    assert re.search(r"└── researcher\s+out-[0-9a-f]{32}", tree)
    assert re.search(r"└── writer\s+out-[0-9a-f]{32}", tree)
    assert "see above" in tree
    assert "fanout:sha256:98257: fetch, search" in first

    second = run_quickstart(url)  # fresh ids: no conflict with the first run's data
    thread_ids = set(re.findall(r"support-chat-[0-9a-f]{8}", second))
    assert len(thread_ids) == 2
