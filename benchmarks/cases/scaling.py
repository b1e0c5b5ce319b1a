"""Scaling: each operation with 1,000, 10,000, 100,000 and 1,000,000 records already stored (full run only).

One case per (operation, backend); its contenders are the same operation on stores that differ
only in how many records they hold. The subject is the largest store, so a ratio is "ops/s at
1,000,000 ÷ ops/s at 1,000 (or 10,000, 100,000)": 1× means the operation does not slow down as the
store grows. docs/img/scaling.png draws the medians as curves (``report.plot_scaling``).
``RELAYSTORE_BENCH_SCALING_MAX`` caps the sizes, at 10,000 or more (``=100000`` for a quicker run).

Records: checkpoints of a ~0.3 KB msgpack state spread round-robin over 100 threads (10 to
10,000 per thread), and small ``final`` outputs over 100 (task, attempt 0) runs × 5 producers.

Prefill (untimed) writes the rows straight into relaystore's tables, as the public API would
have written them, because a million API calls would take ~10 minutes: on sqlite one
``executemany`` transaction per size into one file per record kind, copied at each size; on
postgres COPY into one schema per (record kind, size), then VACUUM ANALYZE; the fill is flushed
to disk (fsync, CHECKPOINT) so that its write-back does not land in the timings. Before that, one
record written through the API is read back raw and compared column by column (JSON keys
included) with the bulk row for it; if relaystore's layout has moved on, the fill falls back to
the public API (slow, but right). After every fill, ``count``, ``load_latest``, ``list``,
``list_for_attempt`` and ``get_latest_by_name_in_run`` must return the expected records, or the
case fails rather than time a store that is not what its label says.

The filled stores are shared by every case of the run that needs them: the read cases leave them
as they were, and the write cases delete the records they added once they are done.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, closing, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql

import relaystore
from benchmarks.harness import BACKENDS as HARNESS_BACKENDS
from benchmarks.harness import PG_URL, Contender, Context, Matchup, Op, case, unique_name
from benchmarks.payloads import encode_state
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.models.common import now_rfc3339
from relaystore.models.outputs import OutputRecord, OutputRef
from relaystore.stores.checkpoints import OMITTED_WHEN_EMPTY

SIZES: tuple[int, ...] = tuple(
    s
    for s in (1_000, 10_000, 100_000, 1_000_000)
    if s <= max(10_000, int(os.environ.get("RELAYSTORE_BENCH_SCALING_MAX", 1_000_000)))
)
THREADS = 100  # checkpoints: threads; outputs: (task, attempt 0) runs
PRODUCERS = 5
STATE = {"messages": [{"role": "user", "content": "x" * 200}], "step": 0}  # ~0.3 KB of msgpack
EVENT = {"type": "final", "ok": True, "content": {"kind": "inline", "value": {"summary": "y" * 100}}}
BACKENDS = ("sqlite", "postgres")
API_WRITERS = 10  # divides THREADS, so each thread / run is written by one writer, in order


def stored_label(size: int) -> str:
    """A contender's label; report.plot_scaling reads the size back from it."""
    return f"{size:,} stored"


# --------------------------------------------------------------------------- records via the API


async def save_checkpoint(store: relaystore.Store, i: int) -> None:
    thread = f"thread-{i % THREADS}"
    await store.checkpoints.save(thread, CheckpointMetadata.new(thread, step=i), encode_state(STATE, i))


async def append_output(store: relaystore.Store, i: int) -> None:
    await store.outputs.append(f"task-{i % THREADS}", 0, f"agent-{i % PRODUCERS}", EVENT)


WRITERS: dict[str, Callable[[relaystore.Store, int], Awaitable[None]]] = {
    "checkpoints": save_checkpoint,
    "outputs": append_output,
}


async def api_fill(url: str, kind: str, start: int, stop: int) -> None:
    """The slow path: records ``start … stop - 1`` through the public API, durability off."""
    write = WRITERS[kind]
    options = HARNESS_BACKENDS["sqlite" if url.startswith("sqlite") else "postgres"].fill_options
    async with relaystore.connect(url, **options) as store:

        async def loop(w: int) -> None:
            for i in range(start + w, stop, API_WRITERS):
                await write(store, i)

        await asyncio.gather(*(loop(w) for w in range(API_WRITERS)))


# --------------------------------------------------------------------------- the same rows in bulk

BULK_COLUMNS = {
    "checkpoints": ("thread_id", "checkpoint_id", "metadata", "state"),
    "outputs": ("id", "task_id", "attempt", "producer_agent", "record"),
}
"""Per record kind (= table), the columns a bulk fill writes; ``seq`` is left to the database."""
JSON_COLUMN = {"checkpoints": "metadata", "outputs": "record"}
RANDOM = {"id", "checkpoint_id", "created_at"}  # columns / JSON keys that differ on every write


def json_format(model_json: str, **marks: str) -> Callable[..., str]:
    """``str.format`` of ``model_json`` with each mark (a unique value in it) made a field."""
    text = model_json.replace("{", "{{").replace("}", "}}")
    for field, mark in marks.items():
        if text.count(mark) != 1:
            raise ValueError(f"{mark!r} is not exactly once in {model_json}")
        text = text.replace(mark, "{" + field + "}")
    return text.format


def checkpoint_rows(start: int, stop: int, *, columns_hold_ids: bool = False) -> Iterator[tuple[Any, ...]]:
    # Pydantic writes the JSON once with marks for the varying fields; formatting a string per row
    # is 2× faster than a model per row, and the layout check compares the result with the API's.
    # ``columns_hold_ids``: the stored metadata leaves out id, thread_id and state_size (PostgreSQL).
    marks = {"id": "@id@", "thread": "@thread@", "step": "9090909091", "size": "8080808081"}
    model = CheckpointMetadata(id="@id@", thread_id="@thread@", step=9090909091, state_size=8080808081)
    empty = {name for name in OMITTED_WHEN_EMPTY if not getattr(model, name)}  # as the store writes it
    if columns_hold_ids:
        empty |= {"id", "thread_id", "state_size"}
        marks = {"step": marks["step"]}
    metadata = json_format(model.model_dump_json(exclude=empty), **marks)
    for i in range(start, stop):
        thread, state, checkpoint_id = f"thread-{i % THREADS}", encode_state(STATE, i), str(uuid.uuid4())
        fields = {"id": checkpoint_id, "thread": thread, "step": i, "size": len(state)}
        yield thread, checkpoint_id, metadata(**{k: v for k, v in fields.items() if k in marks}), state


def output_record(ref: str, task: str, agent: str) -> OutputRecord:
    """The record ``append_output`` stores, as a model."""
    event: Any = EVENT
    return OutputRecord(
        id=OutputRef(ref),
        task_id=task,
        attempt=0,
        producer_agent=agent,
        event=event,
        created_at=now_rfc3339(),
    )


def output_rows(start: int, stop: int) -> Iterator[tuple[Any, ...]]:
    marks = {"id": "out-" + "0123456789abcdef" * 2, "task": "@task@", "agent": "@agent@"}
    model = output_record(marks["id"], marks["task"], marks["agent"])
    record = json_format(model.model_dump_json(exclude={"seq"}), **marks)
    for i in range(start, stop):
        ref, task, agent = OutputRef.generate(), f"task-{i % THREADS}", f"agent-{i % PRODUCERS}"
        yield ref, task, 0, agent, record(id=ref, task=task, agent=agent)


BULK_ROWS: dict[str, Callable[[int, int], Iterator[tuple[Any, ...]]]] = {
    "checkpoints": checkpoint_rows,
    "outputs": output_rows,
}
PG_BULK_ROWS: dict[str, Callable[[int, int], Iterator[tuple[Any, ...]]]] = {
    "checkpoints": functools.partial(checkpoint_rows, columns_hold_ids=True),
    "outputs": output_rows,
}


def bulk_rows(url: str) -> dict[str, Callable[[int, int], Iterator[tuple[Any, ...]]]]:
    return PG_BULK_ROWS if url.startswith("postgresql") else BULK_ROWS


# --------------------------------------------------------------------------- raw SQL on a store


async def create_face_tables(store: relaystore.Store) -> None:
    """Use the outputs face once: its tables are created on its first call (checkpoints' at open),
    and the bulk fill writes into them with raw SQL."""
    await store.outputs.list(limit=1)


def sqlite_path(url: str) -> str:
    return urlsplit(url).path[1:]


def pg_schema(url: str) -> str:
    return parse_qs(urlsplit(url).query)["schema"][0]


async def raw_sql(url: str, statement: str, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``statement`` (``{table}`` names one of relaystore's tables) beside relaystore, in
    autocommit: the result's column names and rows."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(sqlite_path(url), isolation_level=None)) as lite:
            cursor = lite.execute(statement.format(table=f'"{table}"'))
            return [d[0] for d in cursor.description or ()], cursor.fetchall()
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        cur = await conn.execute(sql.SQL(statement).format(table=sql.Identifier(pg_schema(url), table)))
        rows = await cur.fetchall() if cur.description else []
        return [d.name for d in cur.description or ()], rows


async def max_seq(url: str, kind: str) -> int:
    return int((await raw_sql(url, "SELECT COALESCE(MAX(seq), 0) FROM {table}", kind))[1][0][0])


async def delete_after(url: str, kind: str, seq: int) -> None:
    """Remove the records a write case added after ``seq``, so the store holds its size again."""
    await raw_sql(url, f"DELETE FROM {{table}} WHERE seq > {int(seq)}", kind)
    if not url.startswith("sqlite"):
        await raw_sql(url, "VACUUM ANALYZE {table}", kind)  # so the dead rows cost the next case nothing


def sqlite_insert(path: Path, kind: str, start: int, stop: int) -> None:
    columns = BULK_COLUMNS[kind]
    insert = f"INSERT INTO {kind} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    lite = sqlite3.connect(path, isolation_level=None)
    try:
        # No journal: one transaction into a file nobody else has open; relaystore turns WAL
        # back on when it opens the file.
        lite.execute("PRAGMA journal_mode = OFF")
        lite.execute("PRAGMA synchronous = OFF")
        lite.execute("PRAGMA cache_size = -262144")  # 256 MB: the random-id indexes stay in memory
        lite.execute("BEGIN")
        lite.executemany(insert, BULK_ROWS[kind](start, stop))
        lite.execute("COMMIT")
    finally:
        lite.close()


def flush_to_disk(path: Path) -> None:
    """fsync ``path`` now, so that the kernel does not write a fill back while cases are timed."""
    with path.open("rb") as file:
        os.fsync(file.fileno())


async def pg_copy(url: str, kind: str, start: int, stop: int) -> None:
    table = sql.Identifier(pg_schema(url), kind)
    columns = sql.SQL(", ").join(map(sql.Identifier, BULK_COLUMNS[kind]))
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)
        async with conn.cursor() as cur, cur.copy(copy) as sink:
            for row in PG_BULK_ROWS[kind](start, stop):
                await sink.write_row(row)
        await conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
        # Flush the fill's dirty pages now: left to the checkpointer, they were written while the
        # cases were timed, and halved the appends' ops/s in a trial run. Needs superuser or
        # pg_checkpoint; without, the timings are only noisier.
        with suppress(psycopg.errors.InsufficientPrivilege):
            await conn.execute("CHECKPOINT")


# --------------------------------------------------------------------------- checking the layout


def comparable(row: dict[str, Any], kind: str) -> dict[str, Any]:
    """``row`` without seq and the per-write random values, its JSON document parsed."""
    out: dict[str, Any] = {}
    for column, value in row.items():
        if column == "seq" or column in RANDOM:
            continue
        if column == JSON_COLUMN[kind]:
            doc = json.loads(value) if isinstance(value, str | bytes) else value
            value = {k: v for k, v in doc.items() if k not in RANDOM}
        out[column] = bytes(value) if isinstance(value, memoryview) else value
    return out


async def layout_drift(scratch_url: str, kind: str) -> str | None:
    """Why a bulk row would differ from the one the API writes into ``scratch_url``, or None."""
    async with relaystore.connect(scratch_url) as store:
        await WRITERS[kind](store, 0)
    columns, rows = await raw_sql(scratch_url, "SELECT * FROM {table}", kind)
    if set(columns) != {"seq", *BULK_COLUMNS[kind]}:
        return f"{kind} has columns {columns}, the bulk fill writes {BULK_COLUMNS[kind]}"
    try:
        bulk = dict(zip(BULK_COLUMNS[kind], next(bulk_rows(scratch_url)[kind](0, 1)), strict=True))
    except ValueError as exc:  # a mark went missing from the model's JSON
        return str(exc)
    api, ours = comparable(dict(zip(columns, rows[0], strict=True)), kind), comparable(bulk, kind)
    column = JSON_COLUMN[kind]
    api_doc, our_doc = api[column], ours[column]
    differ = [c for c in api if c != column and api[c] != ours[c]]
    differ += [f"{column}.{k}" for k in api_doc.keys() | our_doc.keys() if api_doc.get(k) != our_doc.get(k)]
    return f"the bulk row differs from the API's in {', '.join(sorted(differ))}" if differ else None


async def verify(url: str, kind: str, size: int) -> None:
    """Read the filled store back through the public API; raise if it is not what was meant."""
    last = size - 1
    async with relaystore.connect(url) as store:
        problems = [] if (await store.info())[kind] == size else [f"info() counts {kind} ≠ {size:,}"]
        if kind == "checkpoints":
            problems += await checkpoint_problems(store, last)
        else:
            problems += await output_problems(store, last)
    if problems:
        raise AssertionError(f"bulk-filled {kind} store of {size:,} ({url}): " + "; ".join(problems))


async def checkpoint_problems(store: relaystore.Store, last: int) -> list[str]:
    thread = f"thread-{last % THREADS}"
    steps = list(range(last, -1, -THREADS))
    latest = await store.checkpoints.load_latest(thread)
    page = await store.checkpoints.list(thread, limit=10, newest_first=True)
    checks = {
        "count": await store.checkpoints.count(thread) == len(steps),
        "load_latest step": latest.metadata.step == last,
        "load_latest state": latest.state == encode_state(STATE, last),
        "state_size": latest.metadata.state_size == len(latest.state),
        "list(limit=10) steps": [m.step for m in page] == steps[:10],
    }
    return [f"{thread}: {what} wrong" for what, ok in checks.items() if not ok]


async def output_problems(store: relaystore.Store, last: int) -> list[str]:
    task, agent = f"task-{last % THREADS}", f"agent-{last % PRODUCERS}"
    run = await store.outputs.list_for_attempt(task, 0)
    latest = await store.outputs.get_latest_by_name_in_run(task, 0, agent)
    checks = {
        "list_for_attempt count": len(run) == len(range(last % THREADS, last + 1, THREADS)),
        "get_latest_by_name_in_run": bool(run) and latest.id == run[-1].id and latest.seq == run[-1].seq,
        "event": latest.event == output_record(latest.id, task, agent).event,
    }
    return [f"{task}/{agent}: {what} wrong" for what, ok in checks.items() if not ok]


# --------------------------------------------------------------------------- shared filled stores


class SqliteStores:
    """Per record kind, one file filled up the ladder of SIZES and copied at each size.

    Only one kind's files are kept (cases are registered kind by kind): starting the other kind
    deletes them, which costs a refill only if a later case needs them again.
    """

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._lock: asyncio.Lock | None = None
        self._ready: dict[str, dict[int, str]] = {}

    def _root(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="relaystore-bench-ladder-"))
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir

    async def url(self, kind: str, size: int) -> str:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if kind not in self._ready:
                for other in list(self._ready):
                    for path in self._root().glob(f"{other}-*"):
                        path.unlink()
                    del self._ready[other]
                self._ready[kind] = await self._build(kind)
        return self._ready[kind][size]

    async def _build(self, kind: str) -> dict[int, str]:
        root, began = self._root(), time.monotonic()
        for leftover in root.glob(f"{kind}-*"):  # of a build that failed
            leftover.unlink()
        drift = await layout_drift(f"sqlite:///{root / f'{kind}-probe.db'}", kind)
        if drift:
            print(f"  sqlite {kind}: layout changed ({drift}); filling through the API")
        work = root / f"{kind}-work.db"
        async with relaystore.connect(f"sqlite:///{work}") as store:
            await create_face_tables(store)
        done, urls = 0, {}
        for size in SIZES:
            if drift:
                await api_fill(f"sqlite:///{work}", kind, done, size)
            else:
                await asyncio.to_thread(sqlite_insert, work, kind, done, size)
            done = size
            target = root / f"{kind}-{size}.db"
            if size == SIZES[-1]:
                work.rename(target)
            else:
                shutil.copyfile(work, target)
            await asyncio.to_thread(flush_to_disk, target)
            urls[size] = f"sqlite:///{target}"
            await verify(urls[size], kind, size)
        sizes = ", ".join(f"{s:,}" for s in SIZES)
        print(f"  sqlite {kind}: filled {sizes} in {time.monotonic() - began:.1f} s")
        return urls


class PostgresStores:
    """One schema per (record kind, size), filled on first use and dropped at exit.

    As on sqlite, only one kind's schemas are kept at a time.
    """

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._urls: dict[tuple[str, int], str] = {}  # filled and checked
        self._made: set[str] = set()  # every schema made, to drop at exit
        self._drift: dict[str, str | None] = {}
        atexit.register(self._drop_all_now)

    async def url(self, kind: str, size: int) -> str:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if (kind, size) not in self._urls:
                for other in [key for key in self._urls if key[0] != kind]:
                    await drop_schema(self._urls.pop(other))  # stays in _made: IF EXISTS at exit
                self._urls[kind, size] = await self._fill(kind, size)
        return self._urls[kind, size]

    async def _fill(self, kind: str, size: int) -> str:
        began = time.monotonic()
        if kind not in self._drift:
            scratch = f"{PG_URL}?schema={unique_name('scale-probe')}"
            try:
                self._drift[kind] = await layout_drift(scratch, kind)
            finally:
                await drop_schema(scratch)
            if self._drift[kind]:
                print(f"  postgres {kind}: layout changed ({self._drift[kind]}); filling through the API")
        url = f"{PG_URL}?schema={unique_name(f'scale-{kind}-{size}')}"
        self._made.add(url)
        async with relaystore.connect(url) as store:  # creates the schema and its tables
            await create_face_tables(store)
        if self._drift[kind]:
            await api_fill(url, kind, 0, size)
        else:
            await pg_copy(url, kind, 0, size)
        await verify(url, kind, size)
        print(f"  postgres {kind}: filled {size:,} in {time.monotonic() - began:.1f} s")
        return url

    def _drop_all_now(self) -> None:
        if not self._made:
            return
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for url in self._made:
                conn.execute(drop_statement(url))


async def drop_schema(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        await conn.execute(drop_statement(url))


def drop_statement(url: str) -> sql.Composed:
    return sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(pg_schema(url)))


STORES: dict[str, SqliteStores | PostgresStores] = {"sqlite": SqliteStores(), "postgres": PostgresStores()}


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
WRITES = {"save", "output append"}


def sized_contender(ctx: Context, op: str, size: int) -> Contender:
    kind = KIND[op]

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        url = await STORES[ctx.backend].url(kind, size)
        before = await max_seq(url, kind) if op in WRITES else 0
        try:
            async with relaystore.connect(url) as store:
                yield OPS[op](store)
        finally:
            if op in WRITES:
                await delete_after(url, kind, before)

    return Contender(stored_label(size), setup)


def _register(op: str, n: int, note: str) -> None:
    @case(
        "scaling",
        op,
        n=n,
        repeats=7,  # the write cases share the disk with the other helpers' fsyncs: noisy
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
    f"checkpoint save (~0.3 KB state) on one of {THREADS} threads; the timed saves (≤ 1,420) are "
    "deleted afterwards",
)
_register("load_latest", 2000, f"latest checkpoint of one of {THREADS} threads, state not decoded")
_register("list(limit=10)", 1000, f"newest 10 checkpoints' metadata of one of {THREADS} threads")
_register(
    "output append",
    200,
    f"a small `final` output into one of {THREADS} runs; the timed appends (≤ 1,420) are deleted afterwards",
)
_register(
    "get_latest_by_name_in_run",
    1000,
    f"newest output of one of {PRODUCERS} producers within one of {THREADS} (task, attempt) runs",
)
