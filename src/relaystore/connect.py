"""Opening a store from a URL, async and blocking."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any

from relaystore.backends import open_backend
from relaystore.stores import Store


class _Connecting:
    """What :func:`connect` returns: await it, or use it as ``async with``."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._store: Store | None = None

    def __await__(self) -> Generator[Any, None, Store]:
        return open_backend(self._url, **self._options).__await__()

    async def __aenter__(self) -> Store:
        self._store = await open_backend(self._url, **self._options)
        return self._store

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._store is not None:
            await self._store.close()


def connect(url: str, **options: Any) -> _Connecting:
    """Open the store at ``url``: ``store = await connect(url)`` or ``async with connect(url) as store``.

    URLs: ``memory://[NAME]``, ``sqlite:///path.db`` (``sqlite:////abs/path.db``), and the other
    backends' schemes when their extras are installed. Backend options may be given as keyword
    arguments or URL query parameters.

    Raises :class:`~relaystore.errors.InvalidInput` for a bad URL and
    :class:`~relaystore.errors.BackendUnavailable` when the backend cannot be reached.
    """
    return _Connecting(url, options)


class _SyncProxy:
    """Blocking view of an async object: coroutine methods run on the facade's loop thread."""

    def __init__(self, target: Any, runner: _LoopThread) -> None:
        self._target = target
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr) or not asyncio.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(attr(*args, **kwargs))

        return call


class _LoopThread:
    """An event loop on a daemon thread, fed coroutines from any other thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="relaystore-sync", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncStore:
    """Blocking facade over a :class:`Store`, for scripts: the same methods without ``await``.

    ``store.checkpoints.save(...)`` blocks until done. Close it with ``close()`` or ``with``.
    """

    def __init__(self, url: str, **options: Any) -> None:
        self._runner = _LoopThread()
        try:
            self._store: Store = self._runner.run(open_backend(url, **options))
        except BaseException:
            self._runner.stop()
            raise
        self.url = url
        self.backend = self._store.backend
        self.checkpoints: Any = _SyncProxy(self._store.checkpoints, self._runner)
        self.outputs: Any = _SyncProxy(self._store.outputs, self._runner)
        self.adaptive: Any = _SyncProxy(self._store.adaptive, self._runner)

    @property
    def store(self) -> Store:
        """The underlying async store (use it only from the facade's own loop)."""
        return self._store

    def info(self) -> dict[str, Any]:
        return self._runner.run(self._store.info())

    def close(self) -> None:
        if not self._store.closed:
            self._runner.run(self._store.close())
            self._runner.stop()

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def connect_sync(url: str, **options: Any) -> SyncStore:
    """Blocking :func:`connect` for scripts: ``with connect_sync(url) as store: ...``."""
    return SyncStore(url, **options)
