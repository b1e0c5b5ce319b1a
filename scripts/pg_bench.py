"""Throwaway PostgreSQL backend measurements (issue 3): read scaling and concurrent writers.

    .venv/bin/python scripts/pg_bench.py [--url postgresql://postgres@127.0.0.1:5432/test]

1. load_latest / list(limit=10) / list(newest_first, limit=10) on a thread of 100 and of 10,000
   checkpoints (5 other threads of the same size interleaved), with EXPLAIN ANALYZE at 10,000.
2. 8 concurrent writers × 250 saves of 2 KB through one store (pool of 8), against the same
   writers serialized behind one asyncio.Lock (what AsyncPostgresSaver does).
Every run uses its own schema and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

import relaystore
from relaystore.backends.postgres.checkpoints import LATEST_CHECKPOINT, list_checkpoints_query
from relaystore.models import CheckpointMetadata
from relaystore.stores import Store


async def admin(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def drop(url: str, schema: str) -> None:
    async with await admin(url) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def fill(url: str, schema: str, per_thread: int, threads: int = 6) -> None:
    """``threads`` threads of ``per_thread`` checkpoints each, rows interleaved across threads."""
    async with await admin(url) as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {}.checkpoints (thread_id, checkpoint_id, metadata, state) "
                "SELECT 't' || (i %% %s), 'c' || i, jsonb_build_object('id', 'c' || i, 'thread_id', "
                "'t' || (i %% %s), 'created_at', 1700000000, 'step', i), decode(repeat('ab', 1024), 'hex') "
                "FROM generate_series(1, %s) AS i"
            ).format(sql.Identifier(schema)),
            (threads, threads, per_thread * threads),
        )
        await conn.execute(sql.SQL("ANALYZE {}.checkpoints").format(sql.Identifier(schema)))


async def rate(n: int, op: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(ops/s, µs/op) of ``n`` sequential calls."""
    start = time.perf_counter()
    for _ in range(n):
        await op()
    elapsed = time.perf_counter() - start
    return n / elapsed, elapsed / n * 1e6


async def explain(url: str, schema: str) -> None:
    ident = sql.Identifier(schema)
    async with await admin(url) as conn:
        for title, template, params in (
            ("load_latest", LATEST_CHECKPOINT, ("t1",)),
            ("list(limit=10)", list_checkpoints_query(False, False), ("t1", 11)),
            ("list(limit=10) page 2", list_checkpoints_query(True, False), ("t1", 5000, 11)),
        ):
            query = sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) ") + sql.SQL(template).format(s=ident)  # type: ignore[arg-type]
            rows = await (await conn.execute(query, params)).fetchall()
            print(f"  EXPLAIN {title}:")
            for (line,) in rows:
                print("    " + line)


async def read_rates(store: Store, n: int = 2000) -> dict[str, tuple[float, float]]:
    cps = store.checkpoints
    return {
        "load_latest": await rate(n, lambda: cps.load_latest("t1")),
        "list(limit=10)": await rate(n, lambda: cps.list("t1", limit=10)),
        "list(newest_first, limit=10)": await rate(n, lambda: cps.list("t1", limit=10, newest_first=True)),
        "head": await rate(n, lambda: cps.head("t1")),
    }


async def scaling(url: str, check: bool) -> None:
    for per_thread in (100, 10_000):
        schema = f"rs_bench_{uuid.uuid4().hex}"
        try:
            async with relaystore.connect(url, schema=schema, check=check) as store:
                await fill(url, schema, per_thread)
                results = await read_rates(store)
                print(f"check={check} thread of {per_thread:>6} checkpoints (6 threads):")
                for name, (ops, us) in results.items():
                    print(f"  {name:<30} {ops:>8.0f} ops/s  {us:>7.0f} µs/op")
                if per_thread == 10_000 and check:
                    await explain(url, schema)
        finally:
            await drop(url, schema)


async def writers(store: Store, lock: asyncio.Lock | None, count: int = 8, each: int = 250) -> float:
    state = b"x" * 2048

    async def writer(w: int) -> None:
        for i in range(each):
            metadata = CheckpointMetadata(id=f"c{i}", thread_id=f"w{w}-{uuid.uuid4().hex[:6]}", step=i)
            call = store.checkpoints.save(metadata.thread_id, metadata, state)
            if lock is None:
                await call
            else:
                async with lock:
                    await call

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(count)))
    return count * each / (time.perf_counter() - start)


async def concurrency(url: str) -> None:
    schema = f"rs_bench_{uuid.uuid4().hex}"
    try:
        async with relaystore.connect(url, schema=schema, pool_min=8, pool_max=8) as store:
            await writers(store, None, each=50)  # warm the pool and the plans
            pooled, locked = [], []
            for _ in range(3):  # interleaved so background noise hits both alike
                pooled.append(await writers(store, None))
                locked.append(await writers(store, asyncio.Lock()))
        print("8 writers × 250 saves of 2 KB, one store, pool of 8 (3 runs):")
        for title, rates in (("concurrent", pooled), ("behind one Lock", locked)):
            runs = sorted(round(x) for x in rates)
            print(f"  {title:<18} median {statistics.median(rates):>6.0f} saves/s  {runs}")
        print(f"  ratio: {statistics.median(pooled) / statistics.median(locked):.2f}×")
    finally:
        await drop(url, schema)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    await scaling(args.url, check=True)
    await scaling(args.url, check=False)
    await concurrency(args.url)


if __name__ == "__main__":
    asyncio.run(main())
