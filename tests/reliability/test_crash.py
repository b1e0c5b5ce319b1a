"""Crash safety: SIGKILL a writer (and, for Redis, the server) at random moments.

The writer (``tests/reliability/writer.py``) appends outputs, saves checkpoints with CAS, stores
runs and increments accumulators, printing each id only once the call returned. After each kill
the test reopens the store and checks that every acknowledged write is readable, that no partial
record is visible (every listed record decodes, counts match listings, the CAS chain is whole)
and, for SQLite, that ``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

import relaystore
from relaystore.backends.sqlite import parse_url as sqlite_options
from tests.reliability.checks import Acks, verify_crashed_store
from tests.reliability.conftest import BACKENDS, CrashableRedis, Tally, fresh_url

ROOT = Path(__file__).resolve().parents[2]
KILLS = [pytest.param(5, id="ci"), pytest.param(20, id="soak", marks=pytest.mark.soak)]
MOST_ACKS_PER_LIFE = 40


def start_writer(url: str, life: int, stderr: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    with stderr.open("w") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.writer", url, str(life)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
            cwd=ROOT,
        )


def read_acks(writer: subprocess.Popen[str], count: int, acks: Acks) -> None:
    assert writer.stdout is not None
    for _ in range(count):
        line = writer.stdout.readline()
        if not line.endswith("\n"):
            return  # it died (its server was killed first); the rest is checked by the caller
        acks.add(line)


def finish(writer: subprocess.Popen[str], acks: Acks) -> int:
    """SIGKILL the writer if it still runs; count the acks it printed meanwhile; return its code."""
    if writer.poll() is None:
        writer.send_signal(signal.SIGKILL)
    rest, _ = writer.communicate(timeout=60)
    # a line cut short by the SIGKILL was never acknowledged: only whole lines count
    for line in rest.split("\n")[:-1]:
        acks.add(line)
    return writer.returncode


def final_exception(stderr: Path) -> str:
    """The ``module.Class: message`` line that ends a traceback (messages may span lines)."""
    lines = [line for line in stderr.read_text().splitlines() if re.match(r"[A-Za-z_][\w.]*: ", line)]
    assert lines, stderr.read_text()
    return lines[-1]


def assert_sqlite_intact(url: str) -> None:
    path = sqlite_options(url, {}).local_path
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def crash_lives(
    backend: str, url: str, kills: int, tmp_path: Path, tally: Tally, redis: CrashableRedis | None = None
) -> None:
    rng = random.Random()
    acks = Acks()
    errors: Counter[str] = Counter()
    lost = 0
    for life in range(kills):
        stderr = tmp_path / f"writer-{life}.err"
        writer = start_writer(url, life, stderr)
        server_first = redis is not None and life % 2 == 1
        read_acks(writer, rng.randint(1, MOST_ACKS_PER_LIFE), acks)
        time.sleep(rng.uniform(0, 0.02))  # land the kill anywhere inside the next write
        if server_first:
            redis.kill()  # the writer is mid-call: its reply must not have been sent before the AOF write
        code = finish(writer, acks)
        if redis is not None:
            redis.kill()
            redis.restart()
        if code != -signal.SIGKILL:  # it died on its own: only a relaystore error is acceptable
            last = final_exception(stderr)
            assert server_first and last.startswith("relaystore.errors.BackendUnavailable:"), last
            errors["BackendUnavailable"] += 1
        if backend == "sqlite":
            assert_sqlite_intact(url)
        async with relaystore.connect(url) as store:
            lost = await verify_crashed_store(store, acks, lives=life + 1)
        tally.add(backend, kills=1, lost=lost)
        assert lost == 0, f"{lost} acknowledged writes lost after kill {life + 1}"
    tally.add(backend, operations=acks.total, errors=errors)
    assert acks.outputs and acks.checkpoints and acks.runs and acks.increments


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kills", KILLS)
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "redis"])
async def test_acknowledged_writes_survive_sigkill_of_the_writer(
    backend: str,
    kills: int,
    store_url,
    tmp_path: Path,
    tally: Tally,  # type: ignore[no-untyped-def]
) -> None:
    async with store_url(backend) as url:
        await crash_lives(backend, url, kills, tmp_path, tally)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kills", KILLS)
async def test_acknowledged_writes_survive_sigkill_of_writer_and_redis_server(
    kills: int, crashable_redis: CrashableRedis, tmp_path: Path, tally: Tally
) -> None:
    """Redis with ``appendonly yes, appendfsync always`` on a private port: after the writer is
    killed the server is SIGKILLed too and restarted from its AOF (every other life the server
    dies first, under the running writer)."""
    async with fresh_url("redis", tmp_path, redis=crashable_redis.url) as url:
        await crash_lives("redis", url, kills, tmp_path, tally, redis=crashable_redis)
