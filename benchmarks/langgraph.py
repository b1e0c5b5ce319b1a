"""RelaySaver on sqlite against LangGraph's own AsyncSqliteSaver, measured in the same run.

``await bench_langgraph(quick)`` returns a dict: per operation the ops/s of each saver and the
ratio relay/peer (above 1 means RelaySaver is faster), plus the bytes each stores for 200
checkpoints that share one unchanged ~200 KB channel. Run alone with
``python -m benchmarks.langgraph [--quick]``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from benchmarks.payloads import channel_values
from benchmarks.peers.langgraph_savers import SaverDriver, UnchangedChannel
from relaystore.integrations.langgraph import RelaySaver

SaverFactory = Callable[[Path], Any]  # path -> async context manager yielding a saver


@asynccontextmanager
async def relay_saver_on_file(path: Path) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    async with RelaySaver.from_url(f"sqlite:///{path}") as saver:
        yield saver


@asynccontextmanager
async def sqlite_saver_on_file(path: Path) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield saver


SAVERS: dict[str, SaverFactory] = {
    "RelaySaver": relay_saver_on_file,
    "AsyncSqliteSaver": sqlite_saver_on_file,
}


async def _rate(n: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Operations per second of ``n`` sequential calls of ``op(i)``."""
    start = time.perf_counter()
    for i in range(n):
        await op(i)
    return n / (time.perf_counter() - start)


async def _puts(saver: BaseCheckpointSaver[Any], size: str, n: int, threads: int) -> float:
    driver = SaverDriver(saver, channel_values(size))
    return await _rate(n, lambda i: driver.put(f"put-{i % threads}", i))


async def _reads(saver: BaseCheckpointSaver[Any], n: int) -> float:
    driver = SaverDriver(saver, channel_values("2 KB"))
    for i in range(200):
        await driver.put(f"get-{i % 20}", i)
    return await _rate(n, lambda i: driver.get_latest(f"get-{i % 20}"))


async def _list_limit(saver: BaseCheckpointSaver[Any], length: int, calls: int) -> float:
    """Calls/s of ``alist(limit=10)`` on a thread of ``length`` 2 KB checkpoints."""
    driver = SaverDriver(saver, channel_values("2 KB"))
    thread = f"long-{length}"
    for i in range(length):
        await driver.put(thread, i)
    timings = []
    for _ in range(calls):
        start = time.perf_counter()
        assert len(await driver.list_latest(thread, 10)) == 10
        timings.append(time.perf_counter() - start)
    return 1 / statistics.median(timings)


async def _list_limit_step(length: int, saver: BaseCheckpointSaver[Any], _path: Path) -> float:
    return await _list_limit(saver, length, 50)


async def stored_bytes(factory: SaverFactory, path: Path, steps: int = 200) -> int:
    """Bytes on disk after ``steps`` checkpoints on one thread where only ``step`` changes and
    ``messages`` (~200 KB) keeps its version, as a graph whose big channel is untouched puts them.

    Measured after the saver is closed: an open SQLite store keeps its WAL file at its largest
    size (rewound, not truncated), which says nothing about what is stored.
    """
    async with factory(path) as saver:
        writer = UnchangedChannel(saver)
        for step in range(steps):
            await writer.put("dedup", step)
    return _database_bytes(path)


def _database_bytes(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def _measure(name: str, factory: SaverFactory, root: Path, quick: bool) -> dict[str, float]:
    """Every measurement for one saver, each on a fresh database file."""
    n2, n200, lengths = (200, 40, (1000,)) if quick else (2000, 200, (1000, 10_000))
    Step = Callable[[BaseCheckpointSaver[Any], Path], Awaitable[float]]
    plan: dict[str, Step] = {
        "aput 2 KB": lambda s, p: _puts(s, "2 KB", n2, 20),
        "aput 200 KB": lambda s, p: _puts(s, "200 KB", n200, 10),
        "aget_tuple latest 2 KB": lambda s, p: _reads(s, n2),
    }
    for length in lengths:
        plan[f"alist limit=10, thread of {length:,}"] = functools.partial(_list_limit_step, length)
    results: dict[str, float] = {}
    for label, run in plan.items():
        path = root / f"{name}-{len(results)}.db"
        async with factory(path) as saver:
            results[label] = await run(saver, path)
    unchanged = "bytes for 200 checkpoints, unchanged 200 KB channel"
    results[unchanged] = await stored_bytes(factory, root / f"{name}-unchanged.db")
    return results


async def bench_langgraph(quick: bool) -> dict[str, Any]:
    """Measure both savers; returns ``{"ops": {label: {saver: value, "ratio": relay/peer}}, ...}``.

    For the bytes row the ratio is peer/relay (how many times less RelaySaver stores).
    """
    with tempfile.TemporaryDirectory(prefix="bench-langgraph-") as directory:
        measured = {name: await _measure(name, f, Path(directory), quick) for name, f in SAVERS.items()}
    relay, peer = measured["RelaySaver"], measured["AsyncSqliteSaver"]
    rows = {}
    for label in relay:
        smaller_is_better = label.startswith("bytes")
        ratio = peer[label] / relay[label] if smaller_is_better else relay[label] / peer[label]
        rows[label] = {"RelaySaver": relay[label], "AsyncSqliteSaver": peer[label], "ratio": round(ratio, 2)}
    return {"quick": quick, "backend": "sqlite", "unit": "ops/s (bytes row: bytes)", "rows": rows}


def _print(result: dict[str, Any]) -> None:
    print(f"{'operation':55} {'RelaySaver':>14} {'AsyncSqliteSaver':>17} {'ratio':>7}")
    for label, row in result["rows"].items():
        print(
            f"{label:55} {row['RelaySaver']:>14,.0f} {row['AsyncSqliteSaver']:>17,.0f} {row['ratio']:>7.2f}"
        )


if __name__ == "__main__":
    outcome = asyncio.run(bench_langgraph("--quick" in sys.argv))
    _print(outcome)
    if "--json" in sys.argv:
        print(json.dumps(outcome, indent=2))
