"""Where does relaystore's SQLite backend spend a checkpoint save or load? A diagnostic, not a benchmark.

    python -m benchmarks.profile_sqlite [--n 2000] [--top 12]

Prints (1) a cost breakdown in microseconds per operation, timing each layer on its own, and
(2) cProfile's top functions on the event-loop thread and, separately, on the store's worker
thread (cProfile follows one thread only, so a profiler is switched on inside the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import relaystore
from benchmarks.payloads import channel_values, encode_state, thread_of
from relaystore.models.checkpoints import CheckpointMetadata

VALUES = channel_values("2 KB")


async def per_op_us(op: Callable[[int], Awaitable[Any]], n: int) -> float:
    began = time.perf_counter_ns()
    for i in range(n):
        await op(i)
    return (time.perf_counter_ns() - began) / n / 1000


def sql_only_save_us(path: Path, n: int) -> float:
    """The statements relaystore's save runs, on a bare connection on this thread."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE c (seq INTEGER PRIMARY KEY AUTOINCREMENT, thread_id TEXT, checkpoint_id TEXT,"
        " metadata TEXT, state BLOB, UNIQUE (thread_id, checkpoint_id))"
    )
    conn.execute("CREATE INDEX c_ts ON c (thread_id, seq)")
    state, doc = encode_state(VALUES, 0), CheckpointMetadata.new("t").model_dump_json()
    began = time.perf_counter_ns()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "SELECT checkpoint_id FROM c WHERE thread_id = ? ORDER BY seq DESC LIMIT 1", (thread_of(i),)
        )
        conn.execute("INSERT INTO c VALUES (NULL,?,?,?,?)", (thread_of(i), f"id-{i}", doc, state))
        conn.execute("COMMIT")
    conn.close()
    return (time.perf_counter_ns() - began) / n / 1000


async def breakdown(tmp: Path, n: int) -> None:
    loop = asyncio.get_running_loop()
    async with (
        relaystore.connect(f"sqlite:///{tmp / 'rs.db'}") as store,
        relaystore.connect("memory://") as mem,
    ):
        executor = store.checkpoints._db._executor  # type: ignore[attr-defined]  # diagnostic only

        async def hop(_i: int) -> None:
            await loop.run_in_executor(executor, int)

        async def save(i: int, s: relaystore.Store = store) -> None:
            md = CheckpointMetadata.new(thread_of(i), step=i)
            await s.checkpoints.save(thread_of(i), md, encode_state(VALUES, i))

        rows = {
            "executor round trip (no-op)": await per_op_us(hop, n),
            "save on memory:// (validation + model_copy)": await per_op_us(lambda i: save(i, mem), n),
            "metadata.model_dump_json()": await per_op_us(
                _sync(lambda i: CheckpointMetadata.new("t", step=i).model_dump_json()), n
            ),
            "encode_state (msgpack 2 KB)": await per_op_us(_sync(lambda i: encode_state(VALUES, i)), n),
            "save SQL alone (BEGIN IMMEDIATE…COMMIT), FULL": sql_only_save_us(tmp / "sql.db", n),
            "relaystore save, sqlite FULL": await per_op_us(save, n),
            "relaystore load_latest, sqlite": await per_op_us(
                lambda i: store.checkpoints.load_latest(thread_of(i)), n
            ),
            "load_latest on memory://": await per_op_us(
                lambda i: mem.checkpoints.load_latest(thread_of(i)), n
            ),
        }
    print(f"\nper-operation cost, µs (n={n}, 2 KB state)")
    for label, us in rows.items():
        print(f"  {label:<48} {us:8.1f}")


def _sync(fn: Callable[[int], Any]) -> Callable[[int], Awaitable[None]]:
    async def op(i: int) -> None:
        fn(i)

    return op


async def profiles(tmp: Path, n: int, top: int) -> None:
    async with relaystore.connect(f"sqlite:///{tmp / 'prof.db'}") as store:
        db = store.checkpoints._db  # type: ignore[attr-defined]  # diagnostic only
        for label, op in (
            (
                "save",
                lambda i: store.checkpoints.save(
                    thread_of(i), CheckpointMetadata.new(thread_of(i)), encode_state(VALUES, i)
                ),
            ),
            ("load_latest", lambda i: store.checkpoints.load_latest(thread_of(i))),
        ):
            main, worker = cProfile.Profile(), cProfile.Profile()
            await db.call(worker.enable)
            main.enable()
            await per_op_us(op, n)
            main.disable()
            await db.call(worker.disable)
            for where, prof in (("event-loop thread", main), ("worker thread", worker)):
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
                body = out.getvalue()
                print(f"\n===== {label}: {where} (tottime) =====")
                print(body[body.find("   ncalls") :].rstrip())


async def main(n: int, top: int) -> None:
    with tempfile.TemporaryDirectory(prefix="relaystore-prof-") as tmp:
        await breakdown(Path(tmp), n)
        await profiles(Path(tmp), n, top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_sqlite", description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.top))
