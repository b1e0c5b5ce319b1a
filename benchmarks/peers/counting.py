"""Counting what a LangGraph saver costs per call: saver calls, SQL statements, round trips.

``async with counting(saver) as tally:`` wraps the saver's async methods (``aput``,
``aput_writes``, ``aget_tuple``, ``alist``, …) and, while the block runs, hooks the database
drivers, so every statement is charged to the saver call that issued it:

- **PostgreSQL** (psycopg 3): the cursor's send functions and the pipeline's sync and flush are
  wrapped (class-wide, undone on exit). A statement is one query the server executes (BEGIN and
  COMMIT included; a server-side PREPARE is not). A round trip is one time the client waits for
  the server: each statement outside a pipeline (a PREPARE outside a pipeline too), each
  pipeline sync, and each pipeline flush that is not right after a sync.
- **SQLite** (``sqlite3``, and aiosqlite for AsyncSqliteSaver): the connections reachable from
  the saver's attributes get a ``set_trace_callback``; a statement is one traced statement
  (trigger sub-statements, traced as ``-- TRIGGER``, are not counted). The "round trips" figure
  is the number of hops to a database worker thread (an aiosqlite request, a
  ``ThreadPoolExecutor.submit`` of the store's worker): SQLite has no network.

Charging follows a :class:`contextvars.ContextVar` set by the wrapped saver method, so calls
running concurrently on one event loop (eight graph threads) are told apart; work handed to a
worker thread carries the caller's context along. A call made inside another counted call (the
base class's ``aget_delta_channel_history`` calling ``aget_tuple``) is charged to the inner one.
Statements outside any saver call (pool housekeeping) go to :data:`OUTSIDE`. Each call's wall
time is summed too (``OpCost.seconds``): where a saver waits (a lock, a retry) shows there.

Counting is exact and deterministic for a given sequence of calls, but it adds overhead: count
on an untimed run, not on a timed one. The psycopg hooks are process-wide while active, so do
not count two savers at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sqlite3
import threading
import time
import types
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

SAVER_METHODS = (
    "aput",
    "aput_writes",
    "aget_tuple",
    "alist",
    "aget_delta_channel_history",
    "adelete_thread",
    "adelete_for_runs",
    "acopy_thread",
    "aprune",
)
"""The async saver methods counted (the ones a saver does not define are skipped)."""

OUTSIDE = "(outside saver calls)"
"""The op name statements are charged to when no counted saver call is running."""

_CURRENT_OP: contextvars.ContextVar[str] = contextvars.ContextVar("bench_saver_op", default=OUTSIDE)


@dataclass
class OpCost:
    """What one saver method cost in total: calls, statements, round trips."""

    calls: int = 0
    statements: int = 0
    round_trips: int = 0
    seconds: float = field(default=0.0, compare=False)  # wall time inside the calls, summed

    def per_call(self) -> tuple[float, float]:
        """(statements, round trips) per call; the totals if there were no calls."""
        calls = max(self.calls, 1)
        return self.statements / calls, self.round_trips / calls


@dataclass
class Tally:
    """Per saver method (or :data:`OUTSIDE`), its :class:`OpCost`. Safe to add to from threads."""

    ops: dict[str, OpCost] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self, op: str, *, calls: int = 0, statements: int = 0, round_trips: int = 0, seconds: float = 0.0
    ) -> None:
        with self._lock:
            cost = self.ops.setdefault(op, OpCost())
            cost.calls += calls
            cost.statements += statements
            cost.round_trips += round_trips
            cost.seconds += seconds

    def charge(self, *, statements: int = 0, round_trips: int = 0) -> None:
        """Add to the saver call running in this context (or :data:`OUTSIDE`)."""
        self.add(_CURRENT_OP.get(), statements=statements, round_trips=round_trips)

    def __getitem__(self, op: str) -> OpCost:
        return self.ops.get(op, OpCost())

    @property
    def statements(self) -> int:
        return sum(c.statements for c in self.ops.values())

    @property
    def round_trips(self) -> int:
        return sum(c.round_trips for c in self.ops.values())

    def calls_text(self) -> str:
        """``aput 208, aput_writes 200, …``: calls per method, in :data:`SAVER_METHODS` order."""
        return ", ".join(f"{op} {self[op].calls:,}" for op in self._called())

    def per_call_text(self) -> str:
        """``aput 3.0/1.0, …``: statements / round trips per call of each method."""
        parts = []
        for op in self._called():
            statements, trips = self[op].per_call()
            parts.append(f"{op} {statements:.1f}/{trips:.1f}")
        return ", ".join(parts)

    def latency_text(self) -> str:
        """``aput 2.1, …``: mean milliseconds inside one call of each method (waits included;
        a call made inside another counts in both)."""
        return ", ".join(f"{op} {1000 * self[op].seconds / self[op].calls:.1f}" for op in self._called())

    def _called(self) -> list[str]:
        return [op for op in SAVER_METHODS if self[op].calls]


@asynccontextmanager
async def counting(saver: Any) -> AsyncIterator[Tally]:
    """Count ``saver``'s calls and, on PostgreSQL and SQLite, its statements and round trips."""
    tally = Tally()
    async with AsyncExitStack() as stack:
        stack.enter_context(count_saver_calls(saver, tally))
        stack.enter_context(count_psycopg(tally))
        await stack.enter_async_context(count_sqlite(saver, tally))
        yield tally


# --------------------------------------------------------------------------- saver calls


@contextmanager
def count_saver_calls(saver: Any, tally: Tally) -> Iterator[Tally]:
    """Wrap ``saver``'s async methods (on the instance) so each call is counted and sets the op
    that its statements are charged to; the instance is restored on exit."""
    replaced: dict[str, Any] = {}
    for name in SAVER_METHODS:
        original = getattr(saver, name, None)
        if original is None:
            continue
        if name in vars(saver):
            replaced[name] = vars(saver)[name]
        wrap = _wrap_generator if name == "alist" else _wrap_coroutine
        setattr(saver, name, wrap(name, original, tally))
    try:
        yield tally
    finally:
        for name in SAVER_METHODS:
            if name in replaced:
                setattr(saver, name, replaced[name])
            else:
                vars(saver).pop(name, None)


def _wrap_coroutine(name: str, method: Callable[..., Any], tally: Tally) -> Callable[..., Any]:
    @functools.wraps(method)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        token = _CURRENT_OP.set(name)
        try:
            return await method(*args, **kwargs)
        finally:
            _CURRENT_OP.reset(token)
            tally.add(name, calls=1, seconds=time.perf_counter() - began)

    return counted


def _wrap_generator(name: str, method: Callable[..., Any], tally: Tally) -> Callable[..., Any]:
    @functools.wraps(method)
    async def counted(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        tally.add(name, calls=1)
        inner = method(*args, **kwargs)
        try:
            while True:
                # Set around each step only: between steps the consumer's own code runs.
                began = time.perf_counter()
                token = _CURRENT_OP.set(name)
                try:
                    item = await inner.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    _CURRENT_OP.reset(token)
                    tally.add(name, seconds=time.perf_counter() - began)
                yield item
        finally:
            await inner.aclose()

    return counted


# --------------------------------------------------------------------------- psycopg


@contextmanager
def count_psycopg(tally: Tally) -> Iterator[None]:
    """Charge psycopg's statements and round trips to ``tally`` while the block runs.

    Wraps private psycopg 3 internals (``BaseCursor._execute_send`` …); if they move, this
    raises at once rather than counting zero.
    """
    try:
        from psycopg import _connection_base, _cursor_base, _pipeline_base
    except ImportError:  # no psycopg: nothing can issue PostgreSQL statements
        yield
        return
    synced: weakref.WeakSet[Any] = weakref.WeakSet()  # pipelines whose last act was a sync
    cursor, conn, pipe = _cursor_base.BaseCursor, _connection_base.BaseConnection, _pipeline_base.BasePipeline

    def statement(pipeline: Any) -> None:
        if pipeline is None:
            tally.charge(statements=1, round_trips=1)
        else:
            synced.discard(pipeline)
            tally.charge(statements=1)

    def on_cursor_send(self: Any, *_: Any, **__: Any) -> None:
        statement(self._conn._pipeline)

    def on_prepare(self: Any, *_: Any, **__: Any) -> None:
        if self._conn._pipeline is None:
            tally.charge(round_trips=1)

    def on_command(self: Any, *_: Any, **__: Any) -> None:
        statement(self._pipeline)

    def on_sync(self: Any, *_: Any, **__: Any) -> None:
        synced.add(self)
        tally.charge(round_trips=1)

    def on_fetch(self: Any, *_: Any, flush: bool = False, **__: Any) -> None:
        if flush and self.result_queue and self not in synced:
            tally.charge(round_trips=1)
        synced.discard(self)

    hooks = [
        (cursor, "_execute_send", on_cursor_send),
        (cursor, "_send_query_prepared", on_cursor_send),
        (cursor, "_send_prepare", on_prepare),
        (conn, "_exec_command", on_command),
        (pipe, "_enqueue_sync", on_sync),
        (pipe, "_fetch_gen", on_fetch),
    ]
    with _patched(hooks):
        yield


@contextmanager
def _patched(hooks: list[tuple[type, str, Callable[..., None]]]) -> Iterator[None]:
    """Run each ``before(self, *args)`` ahead of ``cls.name``; restore the classes on exit."""
    saved = []
    try:
        for cls, name, before in hooks:
            original = cls.__dict__[name]  # KeyError: psycopg moved it; fix the hook list
            saved.append((cls, name, original))
            setattr(cls, name, _prefixed(original, before))
        yield
    finally:
        for cls, name, original in reversed(saved):
            setattr(cls, name, original)


def _prefixed(original: Callable[..., Any], before: Callable[..., None]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        before(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    return method


# --------------------------------------------------------------------------- sqlite


@asynccontextmanager
async def count_sqlite(saver: Any, tally: Tally) -> AsyncIterator[None]:
    """Trace the SQLite connections reachable from ``saver`` and count hops to their workers."""
    found = _reachable(saver)
    # relaystore's SQLite store opens its read threads' connections later: it traces them itself
    databases = [
        obj for obj in found if callable(getattr(obj, "trace", None)) and hasattr(obj, "_read_conns")
    ]
    plain = [obj for obj in found if isinstance(obj, sqlite3.Connection)]
    wrapped = [obj for obj in found if _is_aiosqlite(obj)]
    executors = [obj for obj in found if isinstance(obj, ThreadPoolExecutor)]

    def trace(sql: str) -> None:
        if not sql.startswith("--"):  # "-- TRIGGER x": a trigger's statement, not one sent
            tally.charge(statements=1)

    for conn in plain:
        conn.set_trace_callback(trace)
    for database in databases:
        database.trace(trace)
    for aconn in wrapped:
        await aconn.set_trace_callback(trace)
        _carry_context(aconn, "_execute", tally)
    for executor in executors:
        _carry_context(executor, "submit", tally)
    try:
        yield
    finally:
        for conn in plain:
            conn.set_trace_callback(None)
        for database in databases:
            database.trace(None)
        for aconn in wrapped:
            vars(aconn).pop("_execute", None)
            if getattr(aconn, "_connection", None) is not None:
                await aconn.set_trace_callback(None)
        for executor in executors:
            vars(executor).pop("submit", None)


def _carry_context(obj: Any, name: str, tally: Tally) -> None:
    """Make ``obj.name(fn, *args)`` (a hop to a worker thread) count one hop and run ``fn`` in a
    copy of the caller's context, so the trace callback there knows which saver call it serves."""
    original = getattr(obj, name)

    def hop(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        tally.charge(round_trips=1)
        return original(contextvars.copy_context().run, fn, *args, **kwargs)

    setattr(obj, name, hop)


def _traces_itself(obj: Any) -> bool:
    """relaystore's SQLite database object: ``trace(callback)`` covers connections it opens later."""
    return type(obj).__name__ == "SqliteDatabase" and callable(getattr(obj, "trace", None))


def _is_aiosqlite(obj: Any) -> bool:
    module = type(obj).__module__
    return module.startswith("aiosqlite") and hasattr(obj, "set_trace_callback")


_SCALARS = (str, bytes, bytearray, int, float, bool, type(None))


def _reachable(root: Any, limit: int = 20_000) -> list[Any]:
    """Connections and executors reachable from ``root`` through attributes and containers.

    A bounded breadth-first walk, so it keeps working when the saver's internals are
    reorganised; it does not look inside an aiosqlite connection (its sqlite3 connection
    belongs to its worker thread) nor inside modules, classes, functions or event loops.
    """
    seen: set[int] = set()
    found: list[Any] = []
    queue = [root]
    while queue and len(seen) < limit:
        obj = queue.pop(0)
        if id(obj) in seen or isinstance(obj, _SCALARS) or _opaque(obj):
            continue
        seen.add(id(obj))
        if isinstance(obj, sqlite3.Connection | ThreadPoolExecutor) or _is_aiosqlite(obj):
            found.append(obj)
            continue
        if _traces_itself(obj):
            found.append(obj)
        queue.extend(_children(obj))
    return found


_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    asyncio.AbstractEventLoop,
    threading.Thread,
)


def _opaque(obj: Any) -> bool:
    return isinstance(obj, _OPAQUE)


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    children = list(getattr(obj, "__dict__", {}).values())
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot):
                children.append(getattr(obj, slot))
    return children
