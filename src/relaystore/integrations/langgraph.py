"""A LangGraph checkpointer (``BaseCheckpointSaver``) over any relaystore backend.

``RelaySaver`` maps LangGraph's model onto the generic checkpoint contract, with no
LangGraph-only tables, so every backend (memory, sqlite, file, redis, postgres, http) serves it:

- one relaystore **thread** per LangGraph ``(thread_id, checkpoint_ns)``:
  ``thread_prefix + thread_id + "\\x1f" + checkpoint_ns``;
- one relaystore **checkpoint** per LangGraph checkpoint, with the same id and parent; its state
  is the serde-typed checkpoint *without* ``channel_values``, its ``attributes`` hold the
  LangGraph metadata as JSON and its ``refs`` the attachment keys of its channel values,
  so listings filter and retention collects garbage without decoding states. (Records written
  before relaystore 0.2 keep the metadata as JSON text in ``custom``; they are still read.)
- channel values are **attachments** keyed ``channel + "\\x1f" + version``, written only for
  ``new_versions``, so an unchanged channel is stored once however many checkpoints share it;
- pending writes are the contract's **pending writes**, stored as they come, before their
  checkpoint if LangGraph sends them first (``durability="async"`` does);
- ``get_tuple`` is one ``load_full`` and each page of ``list`` one ``list_full``: one round trip
  on sqlite and postgres, metadata filters included.

Use it from async code (``async with RelaySaver.from_url(url) as saver``) or from scripts
(``with RelaySaver.from_url_sync(url) as saver``). See ``docs/langgraph.md``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        DeltaChannelHistory,
        get_checkpoint_id,
        get_checkpoint_metadata,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as exc:  # without the extra: one line that names it
    from relaystore._extras import missing_extra

    raise missing_extra("relaystore.integrations.langgraph", "langgraph") from exc

import relaystore
from relaystore.connect import _LoopThread
from relaystore.errors import Conflict, CorruptRecord, InvalidInput
from relaystore.integrations._shared import LANGGRAPH_SEPARATOR
from relaystore.integrations.langgraph_store import RelayStore
from relaystore.models.checkpoints import CheckpointBundle, PendingWrite
from relaystore.models.checkpoints import CheckpointMetadata as RelayMetadata
from relaystore.stores import Store

__all__ = ["SEPARATOR", "RelaySaver", "RelayStore"]

SEPARATOR = LANGGRAPH_SEPARATOR
"""Joins thread id and namespace (and channel and version); refused inside ids for that reason."""

_STATE_FORMAT = 1  # first byte of every packed value, so a later layout can be told apart
INLINE = "\x1e"  # marks a ref whose value is inline in the state (no attachment has that key)
_INLINE_TEXT = 1024  # strings up to this many characters stay inline
_PAGE = 500  # rows per listing round trip when scanning a whole thread
_LIST_PAGE = 100  # checkpoints (with values) per list_full round trip
_DELTA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")  # a thread uses a DeltaChannel
_METADATA_KEY = "lg_metadata"
_BLOBS_KEY = "lg_blobs"
# One encoder for every dump: json.dumps with options builds a new encoder per call.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
_T = TypeVar("_T")


# ---------------------------------------------------------------------- packing


def pack(typed: tuple[str, bytes]) -> bytes:
    """One ``(type, bytes)`` pair from a serde as bytes: format byte, type length, type, data."""
    kind, data = typed
    return _header(kind) + data


@functools.lru_cache(maxsize=64)  # a serde uses a handful of type tags
def _header(kind: str) -> bytes:
    tag = kind.encode()
    if len(tag) > 255:
        raise InvalidInput(f"serializer type tag too long: {kind[:40]!r}…")
    return bytes((_STATE_FORMAT, len(tag))) + tag


def unpack(blob: bytes, where: str) -> tuple[str, bytes]:
    """The inverse of :func:`pack`; :class:`CorruptRecord` naming ``where`` if it is not one."""
    if len(blob) < 2 or blob[0] != _STATE_FORMAT or len(blob) < 2 + blob[1]:
        raise CorruptRecord(where, "not a packed LangGraph value")
    end = 2 + blob[1]
    try:
        return blob[2:end].decode(), blob[end:]
    except UnicodeDecodeError as exc:
        raise CorruptRecord(where, "bad serializer type tag") from exc


def attachment_key(channel: str, version: Any) -> str:
    """Key of one channel value: stored once per ``(thread, namespace, channel, version)``."""
    return f"{channel}{SEPARATOR}{version}"


# ---------------------------------------------------------------------- the saver


class RelaySaver(BaseCheckpointSaver[str]):
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
        self._loop: asyncio.AbstractEventLoop | None = _running_loop()

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
            attachment_key(channel, version): pack(self.serde.dumps_typed(values[channel]))
            for channel, version in new_versions.items()
            if channel in values and channel not in inline
        }
        record = self._record(key, config, stripped, metadata, values, inline)
        stripped["channel_values"] = inline
        await self._save(key, record, pack(self.serde.dumps_typed(stripped)), blobs)
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
            kind, data = self.serde.dumps_typed(value)
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
                (w.task_id, w.channel, self.serde.loads_typed((w.type or "null", w.value)))
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

    # ------------------------------------------------------------------ DeltaChannel

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """For each channel, the ancestors' writes oldest first and the value at the nearest
        ancestor that has one (``seed``), as the base class defines it, but batched: the
        ancestor chain comes from ``list_full`` pages without values (8 checkpoints, then 32,
        128, 500: a few round trips however deep) and every seed from one ``get_attachments``.
        The writes stored at the target checkpoint itself are left out.
        """
        self._bind_loop()
        if not channels:
            return {}
        configurable = config["configurable"]
        key = self._thread_key(configurable["thread_id"], configurable.get("checkpoint_ns", ""))
        remaining = set(channels)
        writes: dict[str, list[Any]] = {c: [] for c in channels}
        seeds: dict[str, str] = {}
        inline_at: dict[str, str] = {}  # channel -> checkpoint id whose state holds its seed
        async for bundle in self._ancestors(key, get_checkpoint_id(config)):
            if _is_legacy(bundle.metadata):  # values not named in its metadata: walk the slow way
                return await super().aget_delta_channel_history(config=config, channels=channels)
            for write in reversed(bundle.writes):
                if write.channel in remaining:
                    writes[write.channel].append(write)
            for ref in bundle.metadata.refs:
                channel = ref.removeprefix(INLINE).partition(SEPARATOR)[0]
                if channel in remaining:
                    if ref.startswith(INLINE):
                        inline_at[channel] = bundle.metadata.id
                    else:
                        seeds[channel] = ref
                    remaining.discard(channel)
            if not remaining:
                break
        values = await self.store.checkpoints.get_attachments(key, seeds.values()) if seeds else {}
        result = {c: self._history(key, writes[c], seeds.get(c), values) for c in channels}
        for channel, checkpoint_id in inline_at.items():  # rare: a primitive value as the seed
            seed = await self.store.checkpoints.load_full(key, checkpoint_id)
            if seed is not None:
                state = self.serde.loads_typed(unpack(seed.state, f"{key}/{checkpoint_id}"))
                result[channel]["seed"] = (state.get("channel_values") or {})[channel]
        return result

    def _history(
        self, key: str, writes: list[PendingWrite], seed: str | None, values: dict[str, bytes]
    ) -> DeltaChannelHistory:
        entry: DeltaChannelHistory = {
            "writes": [
                (w.task_id, w.channel, self.serde.loads_typed((w.type or "null", w.value)))
                for w in reversed(writes)
            ]
        }
        if seed is not None and seed in values:
            entry["seed"] = self.serde.loads_typed(unpack(values[seed], f"{key}/{seed}"))
        return entry

    async def _ancestors(self, key: str, checkpoint_id: str | None) -> AsyncIterator[CheckpointBundle]:
        """The target's ancestors nearest first, as metadata and writes, read lazily from pages
        of the thread newest first (an ancestor is always older than its child).

        LangGraph ids are time-ordered, so the pages start at the target (ids up to its own),
        not at the thread's head: reading the state of every checkpoint of a history then costs
        each one its own chain, not the whole newer part of the thread. If an ancestor is not
        found below the target (ids that are not time-ordered), the whole thread is read.
        """
        bound = None if checkpoint_id is None else checkpoint_id + "\x01"  # the target sorts below
        walked: set[str] = set()
        async for bundle in self._walk(
            self._bundles(key, 8, values=False, grow_to=_PAGE, before=bound), checkpoint_id, walked
        ):
            yield bundle
        if None not in walked and bound is not None:  # the chain broke off below the target (or is gone)
            pages = self._bundles(key, _PAGE, values=False)
            async for bundle in self._walk(pages, checkpoint_id, set()):
                if bundle.metadata.id not in walked:
                    yield bundle

    async def _walk(
        self, pages: AsyncIterator[tuple[str, CheckpointBundle]], checkpoint_id: str | None, walked: set[str]
    ) -> AsyncIterator[CheckpointBundle]:
        """Follow parent ids from the target through ``pages``; ``walked`` collects the ids
        yielded, plus None once the chain reached its root."""
        known: dict[str, CheckpointBundle] = {}
        wanted: str | None = checkpoint_id
        is_target = True
        while True:
            if wanted is not None and wanted in known:
                bundle = known.pop(wanted)
                if not is_target:
                    walked.add(bundle.metadata.id)
                    yield bundle
                is_target, wanted = False, bundle.metadata.parent_id
                if wanted is None:
                    walked.add(None)  # type: ignore[arg-type]
                    return
                continue
            item = await anext(pages, None)
            if item is None:
                return  # the target or an ancestor is gone, or lies outside these pages
            bundle = item[1]
            if wanted is None:  # no id: the target is the newest
                wanted = bundle.metadata.id
            known[bundle.metadata.id] = bundle

    async def _records(
        self, key: str, page: int = _PAGE, *, newest_first: bool = False
    ) -> AsyncIterator[RelayMetadata]:
        """Every checkpoint record of one relaystore thread, page by page."""
        cursor: str | None = None
        while True:
            rows = await self.store.checkpoints.list(
                key, limit=page, cursor=cursor, newest_first=newest_first
            )
            for record in rows:
                yield record
            cursor = rows.next_cursor
            if cursor is None:
                return

    # ------------------------------------------------------------------ delete, copy, prune

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every namespace of the thread: checkpoints, pending writes and channel values."""
        self._bind_loop()
        for key in await self._namespaces(thread_id):
            await self.store.checkpoints.delete_thread(key)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata ``run_id`` is in ``run_ids``,
        then writes whose checkpoint never came and the channel values no remaining checkpoint
        needs. Scans every thread.

        Raises ``TypeError`` for a plain string (a list of ids is expected), and
        ``NotImplementedError``, before deleting anything, if a thread that uses a DeltaChannel
        would keep some of its checkpoints: their values are rebuilt from the ancestors' writes,
        which would go (LangGraph's base class allows refusing; AsyncPostgresSaver refuses prune).
        """
        self._bind_loop()
        doomed_runs = {str(r) for r in _id_list(run_ids, "run_ids")}
        if not doomed_runs:
            return
        plan: list[tuple[str, list[str]]] = []
        for key in await self._threads(self.thread_prefix):
            records = [r async for r in self._records(key)]
            doomed = [r.id for r in records if _metadata_of(r).get("run_id") in doomed_runs]
            if doomed and len(doomed) < len(records) and any(_uses_delta(r) for r in records):
                raise NotImplementedError(
                    f"delete_for_runs can't delete part of thread {self._split_key(key)[0]!r}: it uses a "
                    "DeltaChannel, whose kept checkpoints need the deleted ones' writes"
                )
            plan.append((key, doomed))
        for key, doomed in plan:
            for checkpoint_id in doomed:
                await self.store.checkpoints.delete(key, checkpoint_id)
            await self.store.checkpoints.delete_orphan_writes(key)
            if doomed:
                await self._collect_garbage(key)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every namespace of a thread, in store order, with writes and channel values
        (so a DeltaChannel's history comes along whole).

        Raises :class:`Conflict` if the target already holds a checkpoint id being copied.
        """
        self._bind_loop()
        for source in await self._namespaces(source_thread_id):
            _, namespace = self._split_key(source)
            await self._copy_namespace(source, self._thread_key(target_thread_id, namespace))

    async def _copy_namespace(self, source: str, target: str) -> None:
        await self._copy_attachments(source, target)
        async for _, bundle in self._bundles(source, _LIST_PAGE, newest_first=False):
            record = bundle.metadata.model_copy(update={"thread_id": target})
            await self.store.checkpoints.save(target, record, bundle.state)
            if bundle.writes:
                await self.store.checkpoints.put_writes(target, record.id, bundle.writes, replace=True)

    async def _copy_attachments(self, source: str, target: str) -> None:
        """Copy a thread's attachments a page at a time, so memory stays bounded."""
        cursor: str | None = None
        while True:
            page = await self.store.checkpoints.list_attachments(source, limit=64, cursor=cursor)
            if page:
                blobs = await self.store.checkpoints.get_attachments(source, page)
                await self.store.checkpoints.put_attachments(target, blobs)
            cursor = page.next_cursor
            if cursor is None:
                return

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Retention. ``keep_latest``: per namespace keep the newest checkpoint (with its writes)
        and the channel values it needs, and clear its parent pointer (its parent is gone, as
        PostgresSaver does); ``delete``: delete the threads.

        Raises ``TypeError`` for a plain string, ``ValueError`` (:class:`InvalidInput`) for an
        unknown strategy, and ``NotImplementedError`` for ``keep_latest`` on a thread that uses a
        DeltaChannel, as AsyncPostgresSaver does: its head is rebuilt from its ancestors' writes.
        """
        self._bind_loop()
        threads = _id_list(thread_ids, "thread_ids")
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInput(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        for thread_id in threads:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
                continue
            keys = await self._namespaces(thread_id)
            for key in keys:
                if any([_uses_delta(r) async for r in self._records(key)]):
                    raise NotImplementedError(
                        f"keep_latest can't prune thread {str(thread_id)!r}: it uses a DeltaChannel"
                    )
            for key in keys:
                if await self.store.checkpoints.prune(key, keep=1):
                    await self._orphan_head(key)
                    await self._collect_garbage(key)

    async def _orphan_head(self, key: str) -> None:
        """After a prune to one checkpoint, save the head again without its (deleted) parent."""
        head = await self.store.checkpoints.load_full(key)
        if head is None or head.metadata.parent_id is None:
            return
        record = head.metadata.model_copy(update={"parent_id": None})
        await self.store.checkpoints.delete(key, record.id)
        await self.store.checkpoints.save(key, record, head.state)
        if head.writes:
            await self.store.checkpoints.put_writes(key, record.id, head.writes, replace=True)

    async def _collect_garbage(self, key: str) -> int:
        """Delete attachments of ``key`` that no remaining checkpoint references; return how many.

        Attachments are listed before checkpoints, so a value written by a concurrent ``put``
        after the listing is never taken; prune a thread while it is idle all the same.
        """
        stored = await self._attachment_keys(key)
        needed: set[str] = set()
        async for record in self._records(key):
            needed.update(_blob_keys_of(record))
        orphans = [k for k in stored if k not in needed]
        return await self.store.checkpoints.delete_attachments(key, orphans) if orphans else 0

    async def _attachment_keys(self, key: str) -> list[str]:
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.store.checkpoints.list_attachments(key, limit=_PAGE, cursor=cursor)
            found.extend(page)
            cursor = page.next_cursor
            if cursor is None:
                return found

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

    # ------------------------------------------------------------------ sync twins

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Blocking :meth:`aput`."""
        return self._run_sync(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Blocking :meth:`aput_writes`."""
        self._run_sync(self.aput_writes(config, writes, task_id, task_path))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Blocking :meth:`aget_tuple`."""
        return self._run_sync(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Blocking :meth:`alist` (the whole result is fetched in one call, then iterated)."""

        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._run_sync(collect())

    def delete_thread(self, thread_id: str) -> None:
        """Blocking :meth:`adelete_thread`."""
        self._run_sync(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Blocking :meth:`adelete_for_runs`."""
        self._run_sync(self.adelete_for_runs(_id_list(run_ids, "run_ids")))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Blocking :meth:`acopy_thread`."""
        self._run_sync(self.acopy_thread(source_thread_id, target_thread_id))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Blocking :meth:`aget_delta_channel_history`."""
        return self._run_sync(self.aget_delta_channel_history(config=config, channels=channels))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Blocking :meth:`aprune`."""
        self._run_sync(self.aprune(_id_list(thread_ids, "thread_ids"), strategy=strategy))

    def _bind_loop(self) -> None:
        """Remember the loop the store is used on, for the sync twins (first async call wins)."""
        if self._loop is None:
            self._loop = _running_loop()

    def _run_sync(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the store's loop from another thread, blocking until it is done."""
        loop = self._loop
        problem = None
        if loop is None or loop.is_closed() or not loop.is_running():
            problem = (
                "RelaySaver's sync methods need the store's event loop running in another thread; "
                "use RelaySaver.from_url_sync(url) for sync code, or the a* methods"
            )
        elif _running_loop() is loop:
            problem = (
                "synchronous RelaySaver calls cannot run on the store's own event loop (it would "
                "deadlock): use the a* methods, e.g. graph.ainvoke / graph.astream"
            )
        if problem:
            coro.close()
            raise asyncio.InvalidStateError(problem)
        assert loop is not None
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


# ---------------------------------------------------------------------- helpers


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _config(thread_id: str, namespace: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {"thread_id": thread_id, "checkpoint_ns": namespace, "checkpoint_id": checkpoint_id}
    }


def _dump_json(value: Any) -> str:
    """Compact JSON; values JSON cannot hold (a datetime in user metadata) become strings."""
    return _JSON.encode(value)


def _json_safe(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """LangGraph metadata as JSON values: as is when it already is (the usual case), else
    through JSON with ``str`` for what JSON cannot hold (a datetime in user metadata)."""
    if _is_json(metadata):
        return dict(metadata)
    return json.loads(_dump_json(metadata))


def _is_json(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if depth > 32:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_json(v, depth + 1) for v in value)
    return False


def _is_primitive(value: Any) -> bool:
    """A value cheaper to keep in the checkpoint's state than as its own attachment."""
    if value is None or type(value) in (bool, int, float):
        return True
    return type(value) is str and len(value) <= _INLINE_TEXT


def _id_list(ids: Sequence[str], name: str) -> Sequence[str]:
    """``ids`` if it is a collection of ids; a plain string is refused, not split into letters."""
    if isinstance(ids, str | bytes):
        raise TypeError(f"{name} must be a list of ids, not a single string: use [{ids!r}]")
    return ids


def _uses_delta(record: RelayMetadata) -> bool:
    metadata = _metadata_of(record)
    return any(key in metadata for key in _DELTA_KEYS)


def _is_legacy(record: RelayMetadata) -> bool:
    """Written before refs and attributes: LangGraph metadata and value keys are in ``custom``."""
    return not record.refs and _METADATA_KEY in record.custom


def _metadata_of(record: RelayMetadata) -> CheckpointMetadata:
    """The LangGraph metadata: the record's ``attributes`` (or, for older records, ``custom``)."""
    if record.attributes:
        return record.attributes  # type: ignore[return-value]
    text = record.custom.get(_METADATA_KEY)
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CorruptRecord(f"{record.thread_id}/{record.id}", "bad LangGraph metadata JSON") from exc


def _blob_keys_of(record: RelayMetadata) -> Iterable[str]:
    """The attachment keys the checkpoint needs (for older records, those named in ``custom``)."""
    if record.refs:
        return record.refs
    text = record.custom.get(_BLOBS_KEY)
    return json.loads(text) if text else ()


async def _merge_newest_first(
    streams: list[AsyncIterator[tuple[str, CheckpointBundle]]],
) -> AsyncIterator[tuple[str, CheckpointBundle]]:
    """Merge per-thread newest-first streams into one, newest (highest uuid6 id) first, lazily."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield item
        return
    heads = [await anext(s, None) for s in streams]
    while True:
        live = [i for i, head in enumerate(heads) if head is not None]
        if not live:
            return
        best = max(live, key=lambda i: heads[i][1].metadata.id)  # type: ignore[index]
        yield heads[best]  # type: ignore[misc]
        heads[best] = await anext(streams[best], None)
