"""Pieces shared by the runtime adapters: opening a store lazily, JSON that always stores, the
import error that names the extra."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import relaystore
from relaystore.connect import _LoopThread
from relaystore.errors import CorruptRecord, InvalidInput
from relaystore.stores import Store

T = TypeVar("T")
LANGGRAPH_SEPARATOR = "\x1f"
"""RelaySaver's thread key is ``prefix + thread_id + SEPARATOR + checkpoint_ns`` (here, so that the
CLI can read it without LangGraph installed)."""
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_ASCII = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop, or None outside one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_blocking(
    loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, T], *, no_loop: str, own_loop: str
) -> T:
    """Run ``coro`` on ``loop`` (where a store lives) from another thread, blocking until done.

    Raises :class:`asyncio.InvalidStateError` with ``no_loop`` when that loop is not running in
    some thread, and with ``own_loop`` when called on that loop's own thread (it would deadlock),
    as LangGraph's async savers do.
    """
    problem = None
    if loop is None or loop.is_closed() or not loop.is_running():
        problem = no_loop
    elif running_loop() is loop:
        problem = own_loop
    if problem:
        coro.close()
        raise asyncio.InvalidStateError(problem)
    assert loop is not None
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def dump_json(value: Any, what: str) -> str:
    """Compact JSON text of ``value``; :class:`InvalidInput` if it is not JSON data.

    Text is kept as UTF-8 where it can be; a string holding a lone surrogate (which no backend
    stores as text) falls back to ``\\u`` escapes, so it still round-trips exactly.
    """
    try:
        text = _COMPACT.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not JSON data: {exc}") from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _ASCII.encode(value)
    return text


def load_json(data: bytes | str, where: str) -> Any:
    """Decode stored JSON; :class:`~relaystore.errors.CorruptRecord` naming ``where`` if it is not."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise CorruptRecord(where, f"not JSON: {exc}") from exc


class _Hub:
    """One event-loop thread for the process, holding the stores opened from URLs.

    A runtime may call a session from any event loop: ``Runner.run_sync`` makes a new one per
    call, and tests drive one session from several threads, each with its own loop. Connection
    pools belong to the loop that made them, so URL-opened stores live on this thread instead
    and every call is handed to it. Sessions on the same URL and options share one store.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._stores: dict[str, tuple[concurrent.futures.Future[Store], int]] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._runner is None:
                self._runner = _LoopThread()
            return self._runner.loop

    def acquire(self, key: str, url: str, options: dict[str, Any]) -> concurrent.futures.Future[Store]:
        loop = self.loop
        with self._lock:
            found = self._stores.get(key)
            if found is None or (found[0].done() and found[0].exception() is not None):
                found = (asyncio.run_coroutine_threadsafe(_open(url, options), loop), 0)
            self._stores[key] = (found[0], found[1] + 1)
            return found[0]

    def release(self, key: str) -> concurrent.futures.Future[None] | None:
        """Drop one user of the store; close it (on the hub loop) when it was the last."""
        with self._lock:
            found = self._stores.get(key)
            if found is None:
                return None
            opening, users = found
            if users > 1:
                self._stores[key] = (opening, users - 1)
                return None
            del self._stores[key]
        return asyncio.run_coroutine_threadsafe(_close_when_open(opening), self.loop)


async def _open(url: str, options: dict[str, Any]) -> Store:
    return await relaystore.connect(url, **options)


async def _close_when_open(opening: concurrent.futures.Future[Store]) -> None:
    try:
        store = await asyncio.wrap_future(opening)
    except Exception:
        return  # it never opened
    await store.close()


HUB = _Hub()


class StoreHandle:
    """A store given opened (used on the caller's loop), or a URL whose store lives on the hub.

    :meth:`run` runs ``work(store)`` where the store lives and returns its result.
    """

    def __init__(self, url_or_store: str | Store, options: dict[str, Any]) -> None:
        self._store: Store | None = None
        self._key: str | None = None
        self._opening: concurrent.futures.Future[Store] | None = None
        if isinstance(url_or_store, Store):
            if options:
                raise InvalidInput("backend options go with a URL, not with an opened Store")
            self._store = url_or_store
        elif isinstance(url_or_store, str):
            self._key = f"{url_or_store}\x00{sorted(options.items())!r}"
            self._opening = HUB.acquire(self._key, url_or_store, options)
        else:
            raise InvalidInput(
                f"expected a store URL or a relaystore Store, got {type(url_or_store).__name__}"
            )

    async def run(self, work: Callable[[Store], Awaitable[T]]) -> T:
        if self._store is not None:
            return await work(self._store)
        if self._opening is None:
            raise RuntimeError("the store was released")
        opening = self._opening

        async def on_hub() -> T:
            return await work(await asyncio.wrap_future(opening))

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_hub(), HUB.loop))

    def release(self) -> concurrent.futures.Future[None] | None:
        """Give up a URL-opened store (closed once its last user lets go); an opened Store stays
        the caller's. Returns the closing future, if this closed it."""
        if self._key is None or self._opening is None:
            return None
        self._opening = None
        return HUB.release(self._key)

    async def close(self) -> None:
        closing = self.release()
        if closing is not None:
            await asyncio.wrap_future(closing)
