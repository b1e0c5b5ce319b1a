"""The three contracts and :class:`Store`, which holds one of each for a backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from relaystore.errors import NotSupported
from relaystore.stores._common import ANY
from relaystore.stores.adaptive import DOC_KINDS, AdaptiveStore, DocKind, UpdateQueues
from relaystore.stores.blobs import BlobNotFound, BlobStore
from relaystore.stores.checkpoints import CheckpointStore
from relaystore.stores.doctor import CounterCheck
from relaystore.stores.items import ItemStore
from relaystore.stores.outputs import OutputFilter, OutputStore


class Store:
    """One opened backend with its three faces: ``checkpoints``, ``outputs`` and ``adaptive``.

    Close it with ``await store.close()`` or use it as ``async with``.
    """

    def __init__(
        self,
        url: str,
        backend: str,
        checkpoints: CheckpointStore,
        outputs: OutputStore,
        adaptive: AdaptiveStore,
        *,
        blobs: BlobStore | None = None,
        items: ItemStore | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
        info: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        counters: Callable[[bool], Awaitable[list[CounterCheck]]] | None = None,
        concurrent_calls: bool = False,
        reopenable: bool = True,
        compress_below: int = 0,
    ) -> None:
        self.url = url
        self.compress_below = compress_below
        """Bytes: values shorter than this reach the disk as given, uncompressed. A caller storing
        large compressible values (RelaySaver's channel values and pending writes) does better to
        compress those below it itself: ``sys.maxsize`` on SQLite and files (nothing is
        compressed there), 2,000 on PostgreSQL (TOAST compresses rows over ~2 KB itself), 0 in
        memory and on Redis (speed first: compress nothing)."""
        self.concurrent_calls = concurrent_calls
        """True when each call waits on a network round trip and calls may run side by side (a
        connection pool, an HTTP client): independent reads are then worth sending together.
        False when calls are answered in this process (memory, files, sqlite: on its few threads)."""
        self.reopenable = reopenable
        """True when opening the same URL again reaches the same data through a second connection
        (a file, a server). False for data that lives in this process alone (``memory://``, a
        private SQLite ``:memory:`` database): callers then share this Store instead."""
        self.backend = backend
        self.checkpoints = checkpoints
        self.outputs = outputs
        self.adaptive = adaptive
        self.update_queues = UpdateQueues()
        """Who is updating which adaptive document now: updates through this store take turns."""
        adaptive.use_update_queues(self.update_queues)
        self._blobs = blobs
        self._items = items
        self._close = close
        self._info = info
        self._counters = counters
        self.closed = False

    @property
    def blobs(self) -> BlobStore:
        """Content-addressed blobs (see :mod:`relaystore.stores.blobs`)."""
        if self._blobs is None:
            raise NotSupported(self.backend, "blobs")
        return self._blobs

    @property
    def items(self) -> ItemStore:
        """Namespaced JSON items with expiry (see :mod:`relaystore.stores.items`)."""
        if self._items is None:
            raise NotSupported(self.backend, "items")
        return self._items

    async def info(self) -> dict[str, Any]:
        """Backend facts for display: the backend name, the URL (no password) and more."""
        details = await self._info() if self._info else {}
        return {"backend": self.backend, "url": redact(self.url), **details}

    async def check_counters(self, *, repair: bool = False) -> list[CounterCheck]:
        """The counters the backend keeps beside its data, each checked against the data; with
        ``repair`` an untrusted one is rebuilt from it. Empty where the database itself hands
        out the numbers. See :mod:`relaystore.stores.doctor`."""
        return await self._counters(repair) if self._counters else []

    async def close(self) -> None:
        """Release connections and threads. Calling it twice is harmless."""
        if not self.closed:
            self.closed = True
            if self._close:
                await self._close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Store {self.backend} {redact(self.url)}>"


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


__all__ = [
    "ANY",
    "DOC_KINDS",
    "AdaptiveStore",
    "BlobNotFound",
    "BlobStore",
    "CheckpointStore",
    "CounterCheck",
    "DocKind",
    "ItemStore",
    "OutputFilter",
    "OutputStore",
    "Store",
    "redact",
]
