"""RelaySaver: LangGraph's ``BaseCheckpointSaver`` on a relaystore Store (see the package doc)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

import relaystore
from relaystore.connect import _LoopThread
from relaystore.errors import Conflict, InvalidInput
from relaystore.integrations._shared import running_loop
from relaystore.integrations.langgraph.history import DeltaHistory
from relaystore.integrations.langgraph.records import (
    _LIST_PAGE,
    _PAGE,
    INLINE,
    SEPARATOR,
    _config,
    _is_legacy,
    _is_primitive,
    _json_safe,
    _merge_newest_first,
    _metadata_of,
    attachment_key,
    pack,
    pack_write,
    unpack,
    unpack_write,
)
from relaystore.integrations.langgraph.retention import Retention
from relaystore.integrations.langgraph.sync import SyncTwins
from relaystore.models.checkpoints import CheckpointBundle, PendingWrite
from relaystore.models.checkpoints import CheckpointMetadata as RelayMetadata
from relaystore.stores import Store


class RelaySaver(DeltaHistory, Retention, SyncTwins, BaseCheckpointSaver[str]):
    """LangGraph checkpointer storing into a relaystore :class:`~relaystore.stores.Store`.

    ``thread_prefix`` namespaces every thread this saver writes (``"tenant-a/"``), so several
    applications can share one store; ``list(None)``, ``delete_for_runs`` and the like only see
    threads under it. ``serde`` is any LangGraph ``SerializerProtocol``
    (``JsonPlusSerializer`` by default; ``EncryptedSerializer`` works).

    The ``a*`` methods are the native implementation. The sync twins run them on the event loop
    the store lives on: from another thread they block until done; on that loop's own thread
    they raise :class:`asyncio.InvalidStateError` (it would deadlock), as LangGraph's async
    savers do. ``from_url_sync`` gives a saver whose store lives on a private loop thread.
    """

    def __init__(
        self, store: Store, serde: SerializerProtocol | None = None, *, thread_prefix: str = ""
    ) -> None:
        super().__init__(serde=serde)
        if not isinstance(thread_prefix, str) or "\x00" in thread_prefix:
            raise InvalidInput("thread_prefix must be a string without NUL")
        self.store = store
        self.thread_prefix = thread_prefix
        # Channel values and writes of 512 bytes or more go zlib-compressed when the store would
        # keep them as given (all on SQLite; on PostgreSQL those too small for TOAST to compress).
        self._compress = store.compress_below
        self._loop: asyncio.AbstractEventLoop | None = running_loop()

    # ------------------------------------------------------------------ construction

    @classmethod
    @asynccontextmanager
    async def from_url(
        cls,
        url: str,
        serde: SerializerProtocol | None = None,
        *,
        thread_prefix: str = "",
        **options: Any,
    ) -> AsyncIterator[RelaySaver]:
        """``async with RelaySaver.from_url("sqlite:///x.db") as saver``: opens and closes the store."""
        async with relaystore.connect(url, **options) as store:
            yield cls(store, serde, thread_prefix=thread_prefix)

    @classmethod
    @contextmanager
    def from_url_sync(
        cls,
        url: str,
        serde: SerializerProtocol | None = None,
        *,
        thread_prefix: str = "",
        **options: Any,
    ) -> Iterator[RelaySaver]:
        """``with RelaySaver.from_url_sync(url) as saver``: for sync graphs (``graph.invoke``).

        The store runs on a private event-loop thread; the saver's sync methods block on it.
        Its ``a*`` methods must not be used from another loop.
        """

        async def open_store() -> Store:
            return await relaystore.connect(url, **options)

        runner = _LoopThread()
        try:
            store: Store = runner.run(open_store())
        except BaseException:
            runner.stop()
            raise
        saver = cls(store, serde, thread_prefix=thread_prefix)
        saver._loop = runner.loop
        try:
            yield saver
        finally:
            try:
                runner.run(store.close())
            finally:
                runner.stop()

    # ------------------------------------------------------------------ addressing

    def _thread_key(self, thread_id: Any, checkpoint_ns: str) -> str:
        """The relaystore thread of one LangGraph ``(thread_id, checkpoint_ns)``."""
        thread = str(thread_id)
        if SEPARATOR in thread or SEPARATOR in checkpoint_ns:
            name, value = ("thread_id", thread) if SEPARATOR in thread else ("checkpoint_ns", checkpoint_ns)
            raise InvalidInput(f"{name} must not contain the unit separator \\x1f: {value!r}")
        return f"{self.thread_prefix}{thread}{SEPARATOR}{checkpoint_ns}"

    def _split_key(self, key: str) -> tuple[str, str]:
        """``(thread_id, checkpoint_ns)`` of a relaystore thread made by :meth:`_thread_key`."""
        thread, _, namespace = key[len(self.thread_prefix) :].partition(SEPARATOR)
        return thread, namespace

    def _thread_prefix_of(self, thread_id: Any) -> str:
        """Prefix shared by every namespace of one LangGraph thread."""
        return self._thread_key(thread_id, "")

    async def _threads(self, prefix: str | None) -> list[str]:
        """Every relaystore thread starting with ``prefix`` that this saver could have written."""
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.store.checkpoints.list_threads(
                prefix=prefix or None, limit=_PAGE, cursor=cursor
            )
            start = len(self.thread_prefix)
            found.extend(t for t in page if t.startswith(self.thread_prefix) and SEPARATOR in t[start:])
            cursor = page.next_cursor
            if cursor is None:
                return found

    async def _namespaces(self, thread_id: Any) -> list[str]:
        """The relaystore threads of every namespace of a LangGraph thread."""
        return await self._threads(self._thread_prefix_of(thread_id))

    # ------------------------------------------------------------------ put

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint with its changed channel values as attachments, in one save.

        Primitive values (None, booleans, numbers, short strings: branch markers, counters) stay
        inline in the checkpoint's state, as LangGraph's PostgresSaver keeps them in its
        checkpoint row: an attachment row and its index entry cost more than such a value.
        """
        self._bind_loop()
        configurable = config["configurable"]
        thread_id, namespace = str(configurable["thread_id"]), configurable.get("checkpoint_ns", "")
        key = self._thread_key(thread_id, namespace)
        stripped: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = stripped.pop("channel_values", None) or {}
        inline = {c: v for c, v in values.items() if _is_primitive(v)}
        blobs = {
            attachment_key(channel, version): pack(self.serde.dumps_typed(values[channel]), self._compress)
            for channel, version in new_versions.items()
            if channel in values and channel not in inline
        }
        record = self._record(key, config, stripped, metadata, values, inline)
        stripped["channel_values"] = inline
        await self._save(key, record, pack(self.serde.dumps_typed(stripped), self._compress), blobs)
        return _config(thread_id, namespace, checkpoint["id"])

    def _record(
        self,
        key: str,
        config: RunnableConfig,
        checkpoint: dict[str, Any],
        metadata: CheckpointMetadata,
        values: Mapping[str, Any],
        inline: Mapping[str, Any],
    ) -> RelayMetadata:
        """relaystore metadata of a checkpoint: ids, parent, step, LangGraph metadata as JSON
        attributes, and as refs the attachment keys of the channels that have a value (a
        DeltaChannel between snapshots has none: its value is rebuilt from ancestors' writes);
        a value kept inline in the state is named with the :data:`INLINE` mark before its key,
        so lineage walks know the channel has a value there without reading the state."""
        merged = get_checkpoint_metadata(config, metadata)
        step = merged.get("step")
        versions = checkpoint.get("channel_versions") or {}
        return RelayMetadata.model_construct(
            id=checkpoint["id"],
            thread_id=key,
            created_at=int(time.time()),
            parent_id=get_checkpoint_id(config),
            # relaystore steps are >= 0; LangGraph's input checkpoint is step -1
            step=step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else 0,
            label=None,
            tags=[],
            state_size=0,
            custom={},
            attributes=_json_safe(merged),
            refs=[
                (INLINE if c in inline else "") + attachment_key(c, v)
                for c, v in versions.items()
                if c in values
            ],
        )

    async def _save(self, key: str, record: RelayMetadata, state: bytes, blobs: dict[str, bytes]) -> None:
        """Save with the channel values (one transaction where the backend has one, else values
        first, so a reader that sees the checkpoint finds everything it references).

        A checkpoint id put again replaces the old one, as LangGraph's savers upsert. The
        contract has no in-place update, so the old record is deleted and saved anew with its
        pending writes carried over (it becomes the newest in store order). The Conflict wrote
        nothing, the blobs included, so the second save carries them again.
        """
        try:
            await self.store.checkpoints.save(key, record, state, attachments=blobs)
        except Conflict:
            writes = await self.store.checkpoints.list_writes(key, record.id)
            await self.store.checkpoints.delete(key, record.id)
            await self.store.checkpoints.save(key, record, state, attachments=blobs)
            if writes:
                await self.store.checkpoints.put_writes(key, record.id, writes, replace=True)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Attach a task's writes to the checkpoint in ``config``.

        Special channels (error, interrupt, ...) have fixed negative indexes and are upserted;
        ordinary writes are insert-or-ignore, so a retried task cannot duplicate them.
        """
        self._bind_loop()
        configurable = config["configurable"]
        key = self._thread_key(configurable["thread_id"], configurable.get("checkpoint_ns", ""))
        pending = []
        for idx, (channel, value) in enumerate(writes):
            kind, data = pack_write(*self.serde.dumps_typed(value), self._compress)
            pending.append(
                PendingWrite.model_construct(  # typed by LangGraph and the serde; the store checks ids
                    task_id=task_id,
                    idx=WRITES_IDX_MAP.get(channel, idx),
                    channel=channel,
                    value=data,
                    type=kind,
                    task_path=task_path,
                )
            )
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        # With durability="async" these often arrive before the checkpoint's put: the store takes
        # them as they come (one statement), as LangGraph's own savers do.
        await self.store.checkpoints.put_writes(key, configurable["checkpoint_id"], pending, replace=replace)

    # ------------------------------------------------------------------ read

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (the latest of its namespace without an id), or None.

        One ``load_full``: checkpoint, channel values and pending writes in one round trip.
        """
        self._bind_loop()
        configurable = config["configurable"]
        thread_id, namespace = str(configurable["thread_id"]), configurable.get("checkpoint_ns", "")
        key = self._thread_key(thread_id, namespace)
        bundle = await self.store.checkpoints.load_full(key, get_checkpoint_id(config))
        return None if bundle is None else await self._tuple(key, bundle)

    async def _tuple(self, key: str, bundle: CheckpointBundle) -> CheckpointTuple:
        """Rebuild LangGraph's tuple: checkpoint, its channel values, metadata and pending writes."""
        record = bundle.metadata
        checkpoint: Checkpoint = self.serde.loads_typed(unpack(bundle.state, f"{key}/{record.id}"))
        versions = checkpoint.get("channel_versions") or {}
        channels = {attachment_key(c, v): c for c, v in versions.items()}
        blobs = bundle.attachments
        if _is_legacy(record) and channels:  # written before refs existed: ask by channel key
            blobs = await self.store.checkpoints.get_attachments(key, channels)
        inline = checkpoint.get("channel_values") or {}
        checkpoint["channel_values"] = {
            **inline,
            **{
                channel: self.serde.loads_typed(unpack(blobs[k], f"{key}/{k}"))
                for k, channel in channels.items()
                if k in blobs
            },
        }
        thread_id, namespace = self._split_key(key)
        return CheckpointTuple(
            config=_config(thread_id, namespace, record.id),
            checkpoint=checkpoint,
            metadata=_metadata_of(record),
            parent_config=_config(thread_id, namespace, record.parent_id) if record.parent_id else None,
            pending_writes=[
                (
                    w.task_id,
                    w.channel,
                    self.serde.loads_typed(unpack_write(w.type, w.value, f"{key}/{w.task_id}")),
                )
                for w in bundle.writes
            ],
        )

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first: of one namespace when ``config`` names ``checkpoint_ns``
        (``""`` is the root only), of every namespace of the thread when it does not, of every
        thread under ``thread_prefix`` when ``config`` is None.

        ``filter`` matches metadata keys by equality (inside the backend on sqlite and
        postgres); ``before`` keeps checkpoints whose id sorts below the given one (LangGraph
        ids are time-ordered, as its SQL savers compare them); ``limit`` caps the count. Each
        page of up to 100 checkpoints is one ``list_full`` round trip.
        """
        self._bind_loop()
        if limit is not None and limit <= 0:
            return
        keys = await self._listed_threads(config)
        before_id = get_checkpoint_id(before) if before else None
        page = min(limit, _LIST_PAGE) if limit else _LIST_PAGE
        streams = [self._bundles(k, page, before=before_id, filter=filter) for k in keys]
        produced = 0
        async for key, bundle in _merge_newest_first(streams):
            yield await self._tuple(key, bundle)
            produced += 1
            if limit is not None and produced >= limit:
                return

    async def _listed_threads(self, config: RunnableConfig | None) -> list[str]:
        """The relaystore threads a ``list(config)`` covers."""
        if config is None:
            return await self._threads(self.thread_prefix)
        configurable = config["configurable"]
        if configurable.get("checkpoint_ns") is not None:
            return [self._thread_key(configurable["thread_id"], configurable["checkpoint_ns"])]
        return await self._namespaces(configurable["thread_id"])

    async def _bundles(
        self,
        key: str,
        page: int,
        *,
        values: bool = True,
        newest_first: bool = True,
        grow_to: int = 0,
        **options: Any,
    ) -> AsyncIterator[tuple[str, CheckpointBundle]]:
        """One thread's checkpoints with values and writes, a ``list_full`` page at a time;
        with ``grow_to`` each page is four times the last, up to it (a walk that usually stops
        early reads little, one that goes far still takes few round trips)."""
        cursor: str | None = None
        while True:
            rows = await self.store.checkpoints.list_full(
                key, limit=page, cursor=cursor, values=values, newest_first=newest_first, **options
            )
            page = min(page * 4, grow_to) if grow_to else page
            for bundle in rows:
                yield key, bundle
            cursor = rows.next_cursor
            if cursor is None:
                return

    # ------------------------------------------------------------------ versions

    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """``"<12-digit counter>.<8 random digits>"``: sorts as it grows, and the random part
        keeps concurrent branches from colliding.

        LangGraph's SQL savers write a 32-digit counter and 16 random digits; a version is
        repeated in every checkpoint's ``channel_versions`` and ``versions_seen`` and in each
        attachment key, so the shorter form saves about 30 bytes each time it is stored. It
        still sorts above every 32-digit version a thread already holds (their first 20 digits
        are zeros for any counter below 10**12), so threads written before keep their order.
        """
        if current is None:
            counter = 0
        elif isinstance(current, int | float):
            counter = int(current)
        else:
            counter = int(str(current).split(".", 1)[0])
        # Not a secret, so the (fork-safe) random module, not an urandom call per version.
        return f"{counter + 1:012}.{int(random.random() * 1e8):08}"
