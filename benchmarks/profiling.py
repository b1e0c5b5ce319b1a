"""Where does a backend spend its time? Diagnostics, not benchmarks: no peer, no ratio, no target.

    python -m benchmarks --profile sqlite [--n 2000] [--top 12]
    python -m benchmarks --profile postgres [--n 2000]

sqlite prints (1) a cost breakdown in microseconds per checkpoint save or load, timing each layer
on its own, and (2) cProfile's top functions on the event-loop thread and, separately, on the
store's worker thread (cProfile follows one thread only, so a profiler is switched on inside the
worker). postgres prints µs per read (load_latest, list(limit=10) both ways, head) on a thread of
100 and of 10,000 checkpoints (6 threads of that size, rows interleaved), and EXPLAIN ANALYZE of
the read queries at 10,000; the timed comparison of the two lengths is the case
``checkpoints/load_latest long vs short thread [postgres]``.
"""

from __future__ import annotations

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

import psycopg
from psycopg import sql

import relaystore
from benchmarks.harness import PG_URL, drop_pg_schema, unique_name
from benchmarks.payloads import channel_values, encode_state, thread_of
from relaystore.backends.postgres.checkpoints import LATEST_CHECKPOINT, list_checkpoints_query
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


async def profile_sqlite(n: int, top: int) -> None:
    with tempfile.TemporaryDirectory(prefix="relaystore-prof-") as tmp:
        await breakdown(Path(tmp), n)
        await profiles(Path(tmp), n, top)


# --------------------------------------------------------------------------- postgres reads


async def _fill_pg(schema: str, per_thread: int, threads: int = 6) -> None:
    """``threads`` threads of ``per_thread`` 2 KB checkpoints each, rows interleaved across threads."""
    table = sql.Identifier(schema, "checkpoints")
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (thread_id, checkpoint_id, metadata, state) "
                "SELECT 't' || (i %% %s), 'c' || i, jsonb_build_object('id', 'c' || i, 'thread_id', "
                "'t' || (i %% %s), 'created_at', 1700000000, 'step', i), decode(repeat('ab', 1024), 'hex') "
                "FROM generate_series(1, %s) AS i"
            ).format(table),
            (threads, threads, per_thread * threads),
        )
        await conn.execute(sql.SQL("ANALYZE {}").format(table))


async def _explain(schema: str) -> None:
    ident = sql.Identifier(schema)
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        for title, template, params in (
            ("load_latest", LATEST_CHECKPOINT, ("t1",)),
            ("list(limit=10)", list_checkpoints_query(False, False), ("t1", 11)),
            ("list(limit=10) page 2", list_checkpoints_query(True, False), ("t1", 5000, 11)),
        ):
            query = sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) ") + sql.SQL(template).format(s=ident)  # type: ignore[arg-type]
            print(f"  EXPLAIN {title}:")
            for (line,) in await (await conn.execute(query, params)).fetchall():
                print("    " + line)


def _pg_reads(store: relaystore.Store) -> dict[str, Callable[[int], Awaitable[Any]]]:
    cps = store.checkpoints
    return {
        "load_latest": lambda _i: cps.load_latest("t1"),
        "list(limit=10)": lambda _i: cps.list("t1", limit=10),
        "list(newest_first, limit=10)": lambda _i: cps.list("t1", limit=10, newest_first=True),
        "head": lambda _i: cps.head("t1"),
    }


async def profile_postgres(n: int) -> None:
    for per_thread in (100, 10_000):
        schema = unique_name(f"profile-{per_thread}")
        try:
            async with relaystore.connect(f"{PG_URL}?schema={schema}") as store:
                await _fill_pg(schema, per_thread)
                print(f"\nthread of {per_thread:,} checkpoints (6 such threads), µs per call (n={n})")
                for label, op in _pg_reads(store).items():
                    print(f"  {label:<30} {await per_op_us(op, n):8.1f}")
                if per_thread == 10_000:
                    await _explain(schema)
        finally:
            await drop_pg_schema(schema)


def profile(backend: str, n: int, top: int) -> None:
    """Run the ``backend`` diagnostic ("sqlite" or "postgres") and print it."""
    asyncio.run(profile_sqlite(n, top) if backend == "sqlite" else profile_postgres(n))
