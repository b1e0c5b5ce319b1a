"""``make bench-quick`` as a test, so the benchmark harness and every quick case cannot rot.

CI runs only ``make test``: this runs ``python -m benchmarks --quick --no-docs`` in a subprocess
and checks that every quick case produced positive figures. No timing is asserted. Cases on the
shared Redis/PostgreSQL work in their own prefix/schema and delete it afterwards; the test checks
that no schema or key named with this run's token is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _quick_case_ids() -> list[str]:
    listed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    return [line for line in lines if "(extra" not in line]  # extras are not case rows


def _leftovers(token: str) -> list[str]:
    """PostgreSQL schemas and Redis keys named by the run with this token (none if a server is down).

    Every name the harness makes is ``bench<sep><label><sep><token><hex>``, so other engineers'
    concurrent runs on the shared servers are not counted.
    """
    found: list[str] = []
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"bench\\_%\\_{token}%",)
            ).fetchall()
            found += [f"schema {r[0]}" for r in rows]
    except Exception:  # the server is down: the cases were skipped
        pass
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
        try:
            found += [f"key {k!r}" for k in client.scan_iter(match=f"bench:*:{token}*", count=1000)]
        finally:
            client.close()
    except Exception:
        pass
    return found


def test_bench_quick_runs_every_quick_case(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-docs", "--json-out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    by_id = {c["id"]: c for c in doc["cases"]}
    expected = _quick_case_ids()
    assert expected, "no quick case is registered"
    assert sorted(by_id) == sorted(expected)
    for case_id in expected:
        result = by_id[case_id]
        if result["skipped"]:  # a backend whose server is down is skipped, with its reason
            assert isinstance(result["skipped"], str) and result["skipped"]
            continue
        assert result["error"] is None, f"{case_id}: {result['error']}"
        assert result["subject"]["median"] > 0, case_id
        assert all(x > 0 for x in result["subject"]["ops_per_s"]), case_id
        for peer, ratio in zip(result["peers"], result["ratios"], strict=True):
            assert peer["median"] > 0 and ratio["median"] > 0, f"{case_id} / {peer['label']}"
        if result["check"] is not None:
            assert isinstance(result["check"]["met"], bool), case_id
    assert doc["extras"]["seconds"] > 0
    assert doc["extras"]["learning"]["from_scratch_runs_per_s"] > 0  # the quick extra ran

    token = doc["extras"]["run_token"]
    assert len(token) == 6
    left = _leftovers(token)
    assert not left, f"the quick run left these on the shared servers: {left[:10]}"
