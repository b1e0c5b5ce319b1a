"""LangGraph long-term memory (``BaseStore``) over any relaystore backend: :class:`RelayStore`.

``graph.compile(store=RelayStore("sqlite:///memory.db"))`` gives nodes a persistent store.
Items go to the backend's item face (:mod:`relaystore.stores.items`); the mapping is direct:
a LangGraph namespace is an item namespace, a PutOp an :class:`ItemWrite`, a filter a list of
:class:`Condition`. Behaviour follows ``langgraph.store.base`` (4.3) and fixes what its
reference stores get wrong (``docs/langgraph.md``, "long-term memory"):

- every read of a batch sees the state from before the batch's writes; for the same key the
  last put wins; ``created_at`` survives updates;
- ``$gt``/``$gte``/``$lt``/``$lte`` compare numbers as numbers and strings as strings; an item
  whose value lacks the key, or holds another type, does not match (no error);
- TTL in minutes; an expired item is never returned nor refreshed back to life (upstream's
  ``omit_expired=True``, always); a sweeper runs by itself every ``sweep_interval_minutes``;
- namespaces left empty by deletes are not listed;
- semantic search: cosine similarity, scores as InMemoryStore's, exact on every backend: the
  engine's own vector search on sqlite (sqlite-vec) and postgres (pgvector) when available,
  numpy over the vectors of the items in scope elsewhere (O(items under the prefix)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

try:
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        IndexConfig,
        Item,
        ListNamespacesOp,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
        TTLConfig,
        ensure_embeddings,
        get_text_at_path,
        tokenize_path,
        validate_op_namespace,
    )
except ImportError as exc:  # without the extra: one line that names it
    from relaystore._extras import missing_extra

    raise missing_extra("relaystore.integrations.langgraph_store", "langgraph") from exc

from relaystore.backends import open_backend
from relaystore.connect import _LoopThread
from relaystore.errors import InvalidInput, RelayStoreError
from relaystore.integrations._shared import run_blocking, running_loop
from relaystore.stores import Store
from relaystore.stores.items import ItemStore, ItemWrite, Namespace, StoredItem, compile_filter

__all__ = ["RelayStore"]

log = logging.getLogger("relaystore")
_T = TypeVar("_T")
_ALL = 2**62  # "no limit" for the item face's listings
DEFAULT_SWEEP_MINUTES = 5.0


class RelayStore(BaseStore):
    """A LangGraph ``BaseStore`` on a relaystore backend, with TTL and semantic search.

    ``url_or_store``: a store URL (``"sqlite:///mem.db"``, ``"postgresql://…"``, ``"memory://"``,
    the default), which this object opens on a private event-loop thread and closes in
    :meth:`close`; or an opened :class:`~relaystore.stores.Store`, which it uses and never closes.

    The same instance serves sync and async code: with a URL, ``put``/``get``… block on the
    private loop from any thread (inside a running event loop too) and ``aput``/``aget``… await
    it from any loop. With an opened store, the store's own loop does the work: the ``a*``
    methods run on it directly, the sync ones block from other threads and raise
    :class:`asyncio.InvalidStateError` on that loop's thread (it would deadlock).

    ``index`` (LangGraph ``IndexConfig``: ``dims``, ``embed``, ``fields``) turns on semantic
    search; ``ttl`` (``TTLConfig``: ``default_ttl`` and ``sweep_interval_minutes`` in minutes,
    ``refresh_on_read``) turns on the defaults and the sweeper (which also starts by itself at the
    first put that carries a ttl). ``clock`` (seconds since the
    epoch) replaces the store's clock, for tests. Extra keywords are backend options.
    Raises :class:`~relaystore.errors.InvalidInput` for a bad URL or configuration and
    :class:`~relaystore.errors.BackendUnavailable` if the backend cannot be reached.
    """

    supports_ttl = True

    def __init__(
        self,
        url_or_store: str | Store = "memory://",
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        clock: Any = None,
        **options: Any,
    ) -> None:
        self._runner: _LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if isinstance(url_or_store, Store):
            if options:
                raise InvalidInput("backend options apply only when RelayStore opens a URL")
            self.store = url_or_store
            self._loop = running_loop()
        elif isinstance(url_or_store, str):
            self._runner = _LoopThread()
            try:
                self.store = self._runner.run(open_backend(url_or_store, **options))
            except BaseException:
                self._runner.stop()
                raise
            self._loop = self._runner.loop
        else:
            raise InvalidInput(f"RelayStore needs a store URL or a Store, got {type(url_or_store).__name__}")
        self.items: ItemStore = self.store.items
        if clock is not None:
            self.items.clock = clock
        self.ttl_config = ttl
        self.index_config, self.embeddings, self._fields = _index(index)
        self._sweeper: Any = None
        self._closed = False
        self._valid: set[tuple[str, ...]] = set()  # namespaces that passed validate_op_namespace
        # from_url: a second opening of the same URL on the caller's loop, so its a* calls skip
        # the hop to the private loop thread (see from_url); (loop, its item face) or None.
        self._local: tuple[asyncio.AbstractEventLoop, ItemStore] | None = None
        if self._loop is not None:
            self._start_sweeper()

    # ------------------------------------------------------------------ construction

    @classmethod
    @contextlib.asynccontextmanager
    async def from_url(
        cls, url: str, *, index: IndexConfig | None = None, ttl: TTLConfig | None = None, **options: Any
    ) -> AsyncIterator[RelayStore]:
        """``async with RelayStore.from_url(url) as store``: opened and closed off the caller's loop.

        Besides its private loop thread (sync calls, other loops), the store is opened a second
        time on the caller's loop, whose ``a*`` calls then go straight to the backend: both
        openings reach the same database, and this block's exit closes both. Not for a store whose
        data lives in this process alone (``Store.reopenable`` False: ``memory://``, SQLite
        ``:memory:``).
        """
        store = await asyncio.to_thread(lambda: cls(url, index=index, ttl=ttl, **options))
        local: Store | None = None
        try:
            if store.store.reopenable:
                local = await open_backend(url, **options)
                local.items.clock = store.items.clock
                store._local = (asyncio.get_running_loop(), local.items)
            yield store
        finally:
            store._local = None
            try:
                if local is not None:
                    await local.close()
            finally:
                await asyncio.to_thread(store.close)

    @classmethod
    @contextlib.contextmanager
    def from_url_sync(
        cls, url: str, *, index: IndexConfig | None = None, ttl: TTLConfig | None = None, **options: Any
    ) -> Iterator[RelayStore]:
        """``with RelayStore.from_url_sync(url) as store``: the same object, for scripts."""
        store = cls(url, index=index, ttl=ttl, **options)
        try:
            yield store
        finally:
            store.close()

    def close(self) -> None:
        """Stop the sweeper and, if this object opened the store, close it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._runner is not None:
            try:
                self._runner.run(self.store.close())
            finally:
                self._runner.stop()

    async def aclose(self) -> None:
        """:meth:`close` from async code."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> RelayStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the two entry points

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` (reads see the state before the batch's writes); results in input order."""
        ops = list(ops)
        done, results = self._inline(ops)
        return results if done else self._run_sync(self._batch(ops))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """:meth:`batch` from async code."""
        ops = list(ops)
        done, results = self._inline(ops)
        if done:
            return results
        local = self._local
        if local is not None and local[0] is running_loop() and not self._closed:
            return await self._batch(ops, local[1])
        return await self._run_async(self._batch(ops))

    def _inline(self, ops: list[Op]) -> tuple[bool, list[Result]]:
        """Run the batch on this thread when nothing in it can suspend (the memory backend with no
        embeddings): a hop to the store's loop thread would cost ~20x the work itself."""
        if not self.items.runs_inline or self.embeddings is not None or self._closed:
            return False, []
        coro = self._batch(ops)
        try:
            coro.send(None)
        except StopIteration as finished:
            return True, finished.value
        coro.close()  # it suspended before writing anything (only embeddings await): run it on the loop
        return False, []

    # ------------------------------------------------------------------ TTL maintenance

    def sweep_ttl(self) -> int:
        """Delete expired items now; return how many (the sweeper does this on its own)."""
        return self._run_sync(self.items.sweep())

    async def asweep_ttl(self) -> int:
        return await self._run_async(self.items.sweep())

    def _start_sweeper(self, *, needed: bool = False) -> None:
        """Start the sweeper if there is a TTL config, or ``needed`` (a put carried a ttl)."""
        if self._sweeper is not None or self._loop is None or self._closed:
            return
        if self.ttl_config is None and not needed:
            return
        minutes = (self.ttl_config or {}).get("sweep_interval_minutes") or DEFAULT_SWEEP_MINUTES
        if not isinstance(minutes, int | float) or isinstance(minutes, bool) or not minutes > 0:
            raise InvalidInput(f"sweep_interval_minutes must be a positive number, got {minutes!r}")
        coro = self._sweep_forever(float(minutes) * 60)
        if running_loop() is self._loop:
            self._sweeper = self._loop.create_task(coro)
        else:
            self._sweeper = asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _sweep_forever(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                removed = await self.items.sweep()
                if removed:
                    log.debug("RelayStore sweeper removed %d expired items", removed)
            except RelayStoreError as exc:  # a backend outage must not end the sweeper
                log.warning("RelayStore sweep failed: %s", exc)

    # ------------------------------------------------------------------ batches

    async def _batch(self, ops: list[Op], items: ItemStore | None = None) -> list[Result]:
        items = items or self.items
        if len(ops) == 1 and isinstance(ops[0], GetOp | PutOp):  # what get/put send: the short way
            return [await self._one(ops[0], items)]
        for op in ops:
            validate_op_namespace(op)
        results: list[Result] = [None] * len(ops)
        touch: list[tuple[Namespace, str]] = []
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        if gets:
            found = await items.get_many([(op.namespace, str(op.key)) for _, op in gets])
            for (i, op), stored in zip(gets, found, strict=True):
                results[i] = None if stored is None else _item(stored)
                if stored is not None and op.refresh_ttl and stored.ttl is not None:
                    touch.append((stored.namespace, stored.key))
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp):
                hits = await self._search(op, items)
                results[i] = [hit for hit, _ in hits]
                if op.refresh_ttl:
                    touch.extend((s.namespace, s.key) for _, s in hits if s.ttl is not None)
            elif isinstance(op, ListNamespacesOp):
                results[i] = await self._list_namespaces(op, items)
        puts = [op for op in ops if isinstance(op, PutOp)]
        writes = await self._writes(puts)
        if any(w.ttl is not None for w in writes):
            self._start_sweeper(needed=True)  # items will expire: someone must delete them
        if writes or touch:
            await items.write(writes, touch=touch)
        return results

    async def _one(self, op: GetOp | PutOp, items: ItemStore) -> Item | None:
        """A batch of one get or one put: the same steps as :meth:`_batch`, fewer of them."""
        namespace = op.namespace
        if type(namespace) is not tuple or namespace not in self._valid:
            validate_op_namespace(op)
            if type(namespace) is tuple and len(self._valid) < 4096:
                self._valid.add(namespace)  # str labels in a tuple: immutable, a pass holds for good
        if isinstance(op, GetOp):
            stored = await items.get(op.namespace, str(op.key))
            if stored is None:
                return None
            if op.refresh_ttl and stored.ttl is not None:
                await items.write((), touch=[(stored.namespace, stored.key)])
            return _item(stored)
        writes = await self._writes([op])
        if writes[0].ttl is not None:
            self._start_sweeper(needed=True)
        await items.write(writes)
        return None

    async def _writes(self, puts: list[PutOp]) -> list[ItemWrite]:
        last: dict[tuple[Namespace, str], PutOp] = {}
        for op in puts:
            last[(tuple(op.namespace), str(op.key))] = op
        ops = list(last.values())
        vectors = await self._embed_puts(ops)
        return [
            ItemWrite(
                tuple(op.namespace),
                str(op.key),
                op.value,
                _ttl_seconds(op.ttl) if op.value is not None else None,
                vectors.get(n),
            )
            for n, op in enumerate(ops)
        ]

    # ------------------------------------------------------------------ search

    async def _search(self, op: SearchOp, items: ItemStore) -> list[tuple[SearchItem, StoredItem]]:
        conditions = compile_filter(op.filter)
        prefix = tuple(op.namespace_prefix)
        if not (op.query and self.embeddings):
            found = await items.search(prefix, conditions=conditions, limit=op.limit, offset=op.offset)
            return [(_search_item(s, None), s) for s in found]
        if op.limit <= 0:
            return []
        query = await self.embeddings.aembed_query(op.query)
        ranked = await items.nearest(prefix, query, conditions=conditions, limit=op.limit, offset=op.offset)
        return [(_search_item(s, score), s) for score, s in ranked]

    async def _embed_puts(self, ops: Sequence[PutOp]) -> dict[int, dict[str, list[float]]]:
        """Vectors per put (by position): ``{field name: embedding}`` as InMemoryStore names them."""
        if self.embeddings is None:
            return {}
        wanted: list[tuple[int, str, str]] = []  # (op position, vector name, text)
        for n, op in enumerate(ops):
            if op.value is None or op.index is False:
                continue
            fields = self._fields if op.index is None else [(p, tokenize_path(p)) for p in op.index]
            for path, tokens in fields:
                texts = get_text_at_path(op.value, tokens)
                names = [path] if len(texts) == 1 else [f"{path}.{i}" for i in range(len(texts))]
                wanted.extend((n, name, text) for name, text in zip(names, texts, strict=True))
        if not wanted:
            return {}
        embedded = await self.embeddings.aembed_documents([text for _, _, text in wanted])
        vectors: dict[int, dict[str, list[float]]] = {}
        for (n, name, _), vector in zip(wanted, embedded, strict=True):
            vectors.setdefault(n, {})[name] = list(vector)
        return vectors

    # ------------------------------------------------------------------ namespaces

    async def _list_namespaces(self, op: ListNamespacesOp, items: ItemStore) -> list[tuple[str, ...]]:
        conditions = list(op.match_conditions or ())
        prefixes = [tuple(c.path) for c in conditions if c.match_type == "prefix"]
        suffixes = [tuple(c.path) for c in conditions if c.match_type == "suffix"]
        if any(c.match_type not in ("prefix", "suffix") for c in conditions):
            raise InvalidInput(f"unsupported match type in {conditions!r}")
        if len(prefixes) <= 1 and len(suffixes) <= 1:
            return await items.list_namespaces(
                prefix=prefixes[0] if prefixes else None,
                suffix=suffixes[0] if suffixes else None,
                max_depth=op.max_depth,
                limit=op.limit,
                offset=op.offset,
            )
        # Several conditions of a kind: the face takes one of each, so AND the others here.
        from relaystore.stores.items import namespace_matches

        every = await items.list_namespaces(limit=_ALL)
        kept = [
            ns
            for ns in every
            if all(namespace_matches(ns, p) for p in prefixes)
            and all(namespace_matches(ns, s, suffix=True) for s in suffixes)
        ]
        if op.max_depth is not None:
            kept = sorted({ns[: op.max_depth] for ns in kept})
        return kept[op.offset : op.offset + op.limit]

    # ------------------------------------------------------------------ loops

    def _run_sync(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise asyncio.InvalidStateError("this RelayStore is closed")
        return run_blocking(
            self._loop,
            coro,
            no_loop="RelayStore's sync methods need the store's event loop running in another thread; "
            "pass a URL (RelayStore(url)) for sync code, or use the a* methods",
            own_loop="synchronous RelayStore calls cannot run on the store's own event loop (it would "
            "deadlock): use the a* methods, or give RelayStore a URL so it runs its own loop",
        )

    async def _run_async(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise asyncio.InvalidStateError("this RelayStore is closed")
        if self._loop is None:  # an opened store, first used here: this is its loop
            self._loop = asyncio.get_running_loop()
            self._start_sweeper()
        if running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))


# ---------------------------------------------------------------------- helpers


def _index(index: IndexConfig | None) -> tuple[IndexConfig | None, Any, list[tuple[str, Any]]]:
    """The index config, its embeddings object and its tokenized fields (``"$"``: whole value)."""
    if index is None:
        return None, None, []
    if not isinstance(index, dict) or "embed" not in index or "dims" not in index:
        raise InvalidInput("index needs at least 'dims' and 'embed' (see LangGraph's IndexConfig)")
    config: IndexConfig = dict(index)  # type: ignore[assignment]
    fields = [(p, p if p == "$" else tokenize_path(p)) for p in (config.get("fields") or ["$"])]
    return config, ensure_embeddings(config["embed"]), fields


def _ttl_seconds(minutes: Any) -> float | None:
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not minutes > 0:
        raise InvalidInput(f"ttl is a positive number of minutes or None, got {minutes!r}")
    return float(minutes) * 60


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _item(stored: StoredItem) -> Item:
    return Item(
        value=stored.value,
        key=stored.key,
        namespace=stored.namespace,
        created_at=_when(stored.created_at),
        updated_at=_when(stored.updated_at),
    )


def _search_item(stored: StoredItem, score: float | None) -> SearchItem:
    return SearchItem(
        stored.namespace, stored.key, stored.value, _when(stored.created_at), _when(stored.updated_at), score
    )
