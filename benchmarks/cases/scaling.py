"""Scaling: each operation with 1,000, 10,000 and 100,000 records already stored (full run only).

One case per (operation, backend); its contenders are the same operation on three stores that
differ only in how many records they hold. The subject is the largest store, so a ratio is
"ops/s at 100,000 ÷ ops/s at 1,000 (or 10,000)": 1× means the operation does not slow down as
the store grows. docs/img/scaling.png draws the medians as curves (``report.plot_scaling``).

Records: checkpoints of a ~0.3 KB msgpack state spread round-robin over 100 threads (10 to 1,000
per thread), and small ``final`` outputs over 100 (task, attempt 0) runs × 5 producers.
Prefill (untimed): on sqlite, one ladder per record kind is filled once per run through the public
API with ``synchronous=off`` and copied at each size, and every case copies the file it needs; on
postgres, every store is filled with COPY in relaystore's table layout (falling back to 16
concurrent public-API writers if the layout changed), then ANALYZEd.

1,000,000 records are left out of the default run: filling them through the public API on sqlite
(~7,000/s) and by COPY per store on postgres would take ~10 minutes of the 20-minute budget. Set
``RELAYSTORE_BENCH_SCALING_MAX=1000000`` to add that size.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql

import relaystore
from benchmarks.harness import PG_URL, Contender, Context, Matchup, Op, case
from benchmarks.payloads import encode_state
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.models.common import now_rfc3339
from relaystore.models.outputs import OutputRecord, OutputRef

SIZES: tuple[int, ...] = tuple(
    s
    for s in (1_000, 10_000, 100_000, 1_000_000)
    if s <= int(os.environ.get("RELAYSTORE_BENCH_SCALING_MAX", 100_000))
)
THREADS = 100  # checkpoints: threads; outputs: (task, attempt 0) runs
PRODUCERS = 5
STATE = {"messages": [{"role": "user", "content": "x" * 200}], "step": 0}  # ~0.3 KB of msgpack
EVENT = {"type": "final", "ok": True, "content": {"kind": "inline", "value": {"summary": "y" * 100}}}
BACKENDS = ("sqlite", "postgres")


def stored_label(size: int) -> str:
    """A contender's label; report.plot_scaling reads the size back from it."""
    return f"{size:,} stored"


# --------------------------------------------------------------------------- writing records


async def save_checkpoint(store: relaystore.Store, i: int) -> None:
    thread = f"thread-{i % THREADS}"
    await store.checkpoints.save(thread, CheckpointMetadata.new(thread, step=i), encode_state(STATE, i))


async def append_output(store: relaystore.Store, i: int) -> None:
    await store.outputs.append(f"task-{i % THREADS}", 0, f"agent-{i % PRODUCERS}", EVENT)


WRITERS: dict[str, Callable[[relaystore.Store, int], Awaitable[None]]] = {
    "checkpoints": save_checkpoint,
    "outputs": append_output,
}


# --------------------------------------------------------------------------- sqlite ladders


class SqliteLadder:
    """Per record kind, one file filled once per run and copied at every size in SIZES."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._ready: dict[str, dict[int, Path]] = {}

    def _root(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="relaystore-bench-ladder-"))
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir

    async def template(self, kind: str, size: int) -> Path:
        lock = self._locks.setdefault(kind, asyncio.Lock())
        async with lock:
            if kind not in self._ready:
                self._ready[kind] = await self._build(kind)
        return self._ready[kind][size]

    async def _build(self, kind: str) -> dict[int, Path]:
        root = self._root()
        work = root / f"{kind}-work.db"
        done, templates = 0, {}
        write = WRITERS[kind]
        for size in SIZES:
            async with relaystore.connect(f"sqlite:///{work}", synchronous="off") as store:
                for i in range(done, size):
                    await write(store, i)
            done = size
            templates[size] = copy_database(work, root / f"{kind}-{size}.db")
        return templates


def copy_database(source: Path, target: Path) -> Path:
    """Copy a closed SQLite database (and a leftover WAL, if any) to ``target``."""
    for suffix in ("", "-wal"):
        if (source.parent / (source.name + suffix)).exists():
            shutil.copyfile(source.parent / (source.name + suffix), target.parent / (target.name + suffix))
    return target


LADDER = SqliteLadder()


# --------------------------------------------------------------------------- postgres fills


async def copy_fill_postgres(url: str, kind: str, count: int) -> None:
    """COPY ``count`` records of ``kind`` into the relaystore schema at ``url``, then ANALYZE."""
    schema = parse_qs(urlsplit(url).query)["schema"][0]
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        if kind == "checkpoints":
            table = sql.Identifier(schema, "checkpoints")
            columns = sql.SQL("(thread_id, checkpoint_id, metadata, state)")
        else:
            table = sql.Identifier(schema, "outputs")
            columns = sql.SQL("(id, task_id, attempt, producer_agent, record)")
        copy = sql.SQL("COPY {} {} FROM STDIN").format(table, columns)
        template = OutputRecord(
            id=OutputRef.generate(),
            task_id="task-0",
            attempt=0,
            producer_agent="agent-0",
            event=EVENT,  # type: ignore[arg-type]
            created_at=now_rfc3339(),
        )
        async with conn.cursor() as cur, cur.copy(copy) as sink:
            for i in range(count):
                if kind == "checkpoints":
                    thread = f"thread-{i % THREADS}"
                    state = encode_state(STATE, i)
                    meta = CheckpointMetadata.new(thread, step=i).model_copy(
                        update={"state_size": len(state)}
                    )
                    await sink.write_row((thread, meta.id, meta.model_dump_json(), state))
                else:
                    task, agent = f"task-{i % THREADS}", f"agent-{i % PRODUCERS}"
                    record = template.model_copy(
                        update={"id": OutputRef.generate(), "task_id": task, "producer_agent": agent}
                    )
                    await sink.write_row((record.id, task, 0, agent, record.model_dump_json(exclude={"seq"})))
        await conn.execute(sql.SQL("ANALYZE {}").format(table))


async def api_fill(url: str, kind: str, count: int, writers: int = 16) -> None:
    """The slow path: ``writers`` concurrent loops through the public API."""
    write = WRITERS[kind]
    async with relaystore.connect(url, pool_max=writers) as store:

        async def loop(w: int) -> None:
            for i in range(w, count, writers):
                await write(store, i)

        await asyncio.gather(*(loop(w) for w in range(writers)))


async def fill_postgres(url: str, kind: str, count: int) -> None:
    async with relaystore.connect(url) as store:  # creates the schema and its tables
        probe_ok = True
        try:
            await copy_fill_postgres(url, kind, min(count, 10))
        except Exception:
            probe_ok = False
        if probe_ok:  # check that the store reads what COPY wrote (the layout may have moved on)
            try:
                if kind == "checkpoints":
                    await store.checkpoints.load_latest("thread-0")
                else:
                    await store.outputs.get_latest_by_name_in_run("task-0", 0, "agent-0")
            except Exception:
                probe_ok = False
    if probe_ok:
        await copy_fill_postgres(url, kind, count - min(count, 10))
    else:
        print(f"  COPY into relaystore's {kind} layout failed; filling through the API")
        await api_fill(url, kind, count - min(count, 10))


# --------------------------------------------------------------------------- contenders


OPS: dict[str, Callable[[relaystore.Store], Op]] = {
    "save": lambda store: lambda i: save_checkpoint(store, 10_000_000 + i),
    "load_latest": lambda store: lambda i: store.checkpoints.load_latest(f"thread-{i % THREADS}"),
    "list(limit=10)": lambda store: (
        lambda i: store.checkpoints.list(f"thread-{i % THREADS}", limit=10, newest_first=True)
    ),
    "output append": lambda store: lambda i: append_output(store, i),
    "get_latest_by_name_in_run": lambda store: (
        lambda i: store.outputs.get_latest_by_name_in_run(f"task-{i % THREADS}", 0, f"agent-{i % PRODUCERS}")
    ),
}
KIND = {
    "save": "checkpoints",
    "load_latest": "checkpoints",
    "list(limit=10)": "checkpoints",
    "output append": "outputs",
    "get_latest_by_name_in_run": "outputs",
}


def sized_contender(ctx: Context, op: str, size: int) -> Contender:
    kind = KIND[op]

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        if ctx.backend == "sqlite":
            path = copy_database(await LADDER.template(kind, size), ctx.path(f"{kind}-{size}.db"))
            url = f"sqlite:///{path}"
        else:
            url = ctx.store_url(f"scale-{size}")
            await fill_postgres(url, kind, size)
        async with relaystore.connect(url) as store:
            yield OPS[op](store)

    return Contender(stored_label(size), setup)


def _register(op: str, n: int, note: str) -> None:
    @case(
        "scaling",
        op,
        n=n,
        repeats=5,
        backends=BACKENDS,
        in_quick=False,
        n_scale={"postgres": 0.5},
        note=f"{note}; ratio = ops/s at {SIZES[-1]:,} ÷ at fewer records (1× = flat)",
    )
    def build(ctx: Context) -> Matchup:
        largest, *smaller = sorted(SIZES, reverse=True)
        return Matchup(
            sized_contender(ctx, op, largest), [sized_contender(ctx, op, s) for s in sorted(smaller)]
        )


_register(
    "save",
    200,
    f"checkpoint save (~0.3 KB state) on one of {THREADS} threads; the timed saves add up to ~1,000 records",
)
_register("load_latest", 2000, f"latest checkpoint of one of {THREADS} threads, state not decoded")
_register("list(limit=10)", 1000, f"newest 10 checkpoints' metadata of one of {THREADS} threads")
_register(
    "output append", 200, f"a small `final` output into one of {THREADS} runs; adds up to ~1,000 records"
)
_register(
    "get_latest_by_name_in_run",
    1000,
    f"newest output of one of {PRODUCERS} producers within one of {THREADS} (task, attempt) runs",
)
