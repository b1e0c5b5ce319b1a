"""A LangGraph checkpointer (``BaseCheckpointSaver``) over any relaystore backend.

``RelaySaver`` maps LangGraph's model onto the generic checkpoint contract, with no
LangGraph-only tables, so every backend (memory, sqlite, file, redis, postgres, http) serves it:

- one relaystore **thread** per LangGraph ``(thread_id, checkpoint_ns)``:
  ``thread_prefix + thread_id + "\\x1f" + checkpoint_ns``;
- one relaystore **checkpoint** per LangGraph checkpoint, with the same id and parent; its state
  is the serde-typed checkpoint *without* ``channel_values``, and its ``custom`` holds the
  LangGraph metadata as JSON (``lg_metadata``) plus the attachment keys it needs (``lg_blobs``),
  so listings filter and retention collects garbage without decoding states;
- channel values are **attachments** keyed ``channel + "\\x1f" + version``, written only for
  ``new_versions``, so an unchanged channel is stored once however many checkpoints share it;
- pending writes are the contract's **pending writes** (``put_writes``/``list_writes``).

Use it from async code (``async with RelaySaver.from_url(url) as saver``) or from scripts
(``with RelaySaver.from_url_sync(url) as saver``). See ``docs/langgraph.md``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import AsyncIterator, Collection, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

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
from relaystore.errors import Conflict, CorruptRecord, InvalidInput, NotFound
from relaystore.models.checkpoints import CheckpointMetadata as RelayMetadata
from relaystore.models.checkpoints import PendingWrite
from relaystore.stores import Store

__all__ = ["SEPARATOR", "RelaySaver"]

SEPARATOR = "\x1f"
"""Joins thread id and namespace (and channel and version); refused inside ids for that reason."""

_STATE_FORMAT = 1  # first byte of every packed value, so a later layout can be told apart
_PAGE = 500  # rows per listing round trip when scanning a whole thread
_PUT_WAIT = 60.0  # seconds aput_writes waits for its checkpoint's put, still in flight
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
        # Independent reads go out together only where calls wait on the network (Store.concurrent_calls);
        # elsewhere tasks would only add overhead.
        self._parallel_reads = store.concurrent_calls
        self._loop: asyncio.AbstractEventLoop | None = _running_loop()
        # (thread key, checkpoint id) -> set once that checkpoint is saved; see aput_writes
        self._saved: dict[tuple[str, str], asyncio.Event] = {}

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
        """Store a checkpoint with its changed channel values as attachments, in one save."""
        self._bind_loop()
        configurable = config["configurable"]
        thread_id, namespace = str(configurable["thread_id"]), configurable.get("checkpoint_ns", "")
        key = self._thread_key(thread_id, namespace)
        stripped: dict[str, Any] = dict(checkpoint)
        values: dict[str, Any] = stripped.pop("channel_values", None) or {}
        blobs = {
            attachment_key(channel, version): pack(self.serde.dumps_typed(values[channel]))
            for channel, version in new_versions.items()
            if channel in values
        }
        record = self._record(key, config, stripped, metadata)
        await self._save(key, record, pack(self.serde.dumps_typed(stripped)), blobs)
        waiting = self._saved.pop((key, record.id), None)
        if waiting is not None:
            waiting.set()
        return _config(thread_id, namespace, checkpoint["id"])

    def _record(
        self, key: str, config: RunnableConfig, checkpoint: dict[str, Any], metadata: CheckpointMetadata
    ) -> RelayMetadata:
        """relaystore metadata of a checkpoint: ids, parent, step, LangGraph metadata as JSON."""
        merged = get_checkpoint_metadata(config, metadata)
        step = merged.get("step")
        versions = checkpoint.get("channel_versions") or {}
        return RelayMetadata(
            id=checkpoint["id"],
            thread_id=key,
            parent_id=get_checkpoint_id(config),
            # relaystore steps are >= 0; LangGraph's input checkpoint is step -1
            step=step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 else 0,
            custom={
                _METADATA_KEY: _dump_json(merged),
                _BLOBS_KEY: _dump_json(sorted(attachment_key(c, v) for c, v in versions.items())),
            },
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
                PendingWrite(
                    task_id=task_id,
                    idx=WRITES_IDX_MAP.get(channel, idx),
                    channel=channel,
                    value=data,
                    type=kind,
                    task_path=task_path,
                )
            )
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        checkpoint_id = configurable["checkpoint_id"]
        try:
            await self.store.checkpoints.put_writes(key, checkpoint_id, pending, replace=replace)
        except NotFound:
            # LangGraph runs a step's writes concurrently with the put of the checkpoint they
            # belong to (durability="async"), while the contract attaches writes only to a saved
            # checkpoint: wait for that put, then attach. A checkpoint that never comes re-raises.
            if not await self._checkpoint_saved(key, checkpoint_id):
                raise
            await self.store.checkpoints.put_writes(key, checkpoint_id, pending, replace=replace)

    async def _checkpoint_saved(self, key: str, checkpoint_id: str) -> bool:
        """Wait (up to ``_PUT_WAIT`` s) until this saver has saved the checkpoint; False if not."""
        event = self._saved.setdefault((key, checkpoint_id), asyncio.Event())
        if await self._has(key, checkpoint_id):  # saved between the failed write and now
            self._saved.pop((key, checkpoint_id), None)
            return True
        try:
            await asyncio.wait_for(event.wait(), _PUT_WAIT)
        except TimeoutError:
            self._saved.pop((key, checkpoint_id), None)
            return False
        return True

    # ------------------------------------------------------------------ read

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by ``config`` (the latest of its namespace without an id), or None."""
        self._bind_loop()
        configurable = config["configurable"]
        thread_id, namespace = str(configurable["thread_id"]), configurable.get("checkpoint_ns", "")
        key = self._thread_key(thread_id, namespace)
        checkpoint_id = get_checkpoint_id(config)
        try:
            if checkpoint_id:
                record, state = await self.store.checkpoints.load(key, checkpoint_id)
            else:
                record, state = await self.store.checkpoints.load_latest(key)
        except NotFound:
            return None
        return await self._tuple(key, record, state)

    async def _tuple(self, key: str, record: RelayMetadata, state: bytes) -> CheckpointTuple:
        """Rebuild LangGraph's tuple: checkpoint, its channel values, metadata and pending writes
        (the values and the writes are independent reads, sent together where that helps)."""
        checkpoint, channels = self._decode(key, record, state)
        blobs, writes = await self._read_together(
            self._attachments(key, channels), self.store.checkpoints.list_writes(key, record.id)
        )
        return self._assemble(key, record, checkpoint, channels, blobs, writes)

    async def _listed_tuple(self, key: str, record: RelayMetadata) -> CheckpointTuple:
        """The tuple of a listed record, whose state is still to load (NotFound if it is gone).

        On a parallel backend one round of reads does it: the record's ``lg_blobs`` names the
        attachments before the state is decoded (those it misses are asked for after).
        """
        if not self._parallel_reads:
            _, state = await self.store.checkpoints.load(key, record.id)
            return await self._tuple(key, record, state)
        listed = _listed_blob_keys(record)
        (_, state), blobs, writes = await self._read_together(
            self.store.checkpoints.load(key, record.id),
            self._attachments(key, listed),
            self.store.checkpoints.list_writes(key, record.id),
        )
        checkpoint, channels = self._decode(key, record, state)
        unlisted = [k for k in channels if k not in listed]
        if unlisted:
            blobs = {**blobs, **await self._attachments(key, unlisted)}
        return self._assemble(key, record, checkpoint, channels, blobs, writes)

    def _decode(self, key: str, record: RelayMetadata, state: bytes) -> tuple[Checkpoint, dict[str, str]]:
        """The checkpoint without its values, and the channel of each attachment key it needs."""
        checkpoint: Checkpoint = self.serde.loads_typed(unpack(state, f"{key}/{record.id}"))
        versions = checkpoint.get("channel_versions") or {}
        return checkpoint, {attachment_key(c, v): c for c, v in versions.items()}

    async def _attachments(self, key: str, keys: Collection[str]) -> dict[str, bytes]:
        return await self.store.checkpoints.get_attachments(key, keys) if keys else {}

    def _assemble(
        self,
        key: str,
        record: RelayMetadata,
        checkpoint: Checkpoint,
        channels: dict[str, str],
        blobs: dict[str, bytes],
        writes: Sequence[PendingWrite],
    ) -> CheckpointTuple:
        checkpoint["channel_values"] = {
            channel: self.serde.loads_typed(unpack(blobs[k], f"{key}/{k}"))
            for k, channel in channels.items()
            if k in blobs
        }
        thread_id, namespace = self._split_key(key)
        return CheckpointTuple(
            config=_config(thread_id, namespace, record.id),
            checkpoint=checkpoint,
            metadata=_metadata_of(record),
            parent_config=_config(thread_id, namespace, record.parent_id) if record.parent_id else None,
            pending_writes=[
                (w.task_id, w.channel, self.serde.loads_typed((w.type or "null", w.value))) for w in writes
            ],
        )

    async def _read_together(self, *reads: Coroutine[Any, Any, Any]) -> list[Any]:
        """Results of independent reads: sent concurrently where the backend serves calls in
        parallel, else one after another. The first failure is raised, after every read ended."""
        if not self._parallel_reads:
            results = []
            try:
                for read in reads:
                    results.append(await read)
            except BaseException:
                for read in reads:  # the ones left unstarted (a no-op on the others)
                    read.close()
                raise
            return results
        results = await asyncio.gather(*reads, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

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

        ``filter`` matches metadata keys by equality; ``before`` keeps checkpoints older than the
        given one; ``limit`` caps the count.
        """
        self._bind_loop()
        if limit is not None and limit <= 0:
            return
        keys = await self._listed_threads(config)
        before_id = get_checkpoint_id(before) if before else None
        # Without a filter, a page of `limit` rows is all a bounded listing needs.
        page = min(limit, _PAGE) if limit and not filter and not before_id else _PAGE
        streams = [self._older_than(k, before_id, page) for k in keys]
        produced = 0
        async for key, record in _merge_newest_first(streams):
            if filter and not _matches(_metadata_of(record), filter):
                continue
            try:
                found = await self._listed_tuple(key, record)
            except NotFound:
                continue  # deleted while we listed
            yield found
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

    async def _older_than(
        self, key: str, before_id: str | None, page: int
    ) -> AsyncIterator[tuple[str, RelayMetadata]]:
        """One thread's checkpoints newest first, after ``before_id`` when it is in this thread
        (store order), else with an id sorting below it (LangGraph ids are time-ordered uuid6)."""
        in_thread = before_id is not None and await self._has(key, before_id)
        skipping = in_thread
        async for record in self._records(key, page, newest_first=True):
            if skipping:
                skipping = record.id != before_id
                continue
            if before_id is None or in_thread or record.id < before_id:
                yield key, record

    async def _has(self, key: str, checkpoint_id: str) -> bool:
        try:
            await self.store.checkpoints.load(key, checkpoint_id)
        except NotFound:
            return False
        return True

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
        then the channel values no remaining checkpoint needs. Scans every thread."""
        self._bind_loop()
        doomed_runs = {str(r) for r in run_ids}
        if not doomed_runs:
            return
        for key in await self._threads(self.thread_prefix):
            doomed = [r.id async for r in self._records(key) if _metadata_of(r).get("run_id") in doomed_runs]
            for checkpoint_id in doomed:
                await self.store.checkpoints.delete(key, checkpoint_id)
            if doomed:
                await self._collect_garbage(key)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every namespace of a thread, in store order, with writes and channel values.

        Raises :class:`Conflict` if the target already holds a checkpoint id being copied.
        """
        self._bind_loop()
        for source in await self._namespaces(source_thread_id):
            _, namespace = self._split_key(source)
            await self._copy_namespace(source, self._thread_key(target_thread_id, namespace))

    async def _copy_namespace(self, source: str, target: str) -> None:
        await self._copy_attachments(source, target)
        async for record in self._records(source):
            _, state = await self.store.checkpoints.load(source, record.id)
            await self.store.checkpoints.save(target, record.model_copy(update={"thread_id": target}), state)
            writes = await self.store.checkpoints.list_writes(source, record.id)
            if writes:
                await self.store.checkpoints.put_writes(target, record.id, writes, replace=True)

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
        and the channel values it needs; ``delete``: delete the threads."""
        self._bind_loop()
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInput(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
                continue
            for key in await self._namespaces(thread_id):
                if await self.store.checkpoints.prune(key, keep=1):
                    await self._collect_garbage(key)

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
        """``"<32-digit counter>.<16 random digits>"``: sorts as it grows, like LangGraph's
        SQL savers, and the random part keeps concurrent branches from colliding."""
        if current is None:
            counter = 0
        elif isinstance(current, int | float):
            counter = int(current)
        else:
            counter = int(str(current).split(".", 1)[0])
        # Not a secret, so the (fork-safe) random module, not an urandom call per version.
        return f"{counter + 1:032}.{random.randrange(10**16):016}"

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
        self._run_sync(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Blocking :meth:`acopy_thread`."""
        self._run_sync(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Blocking :meth:`aprune`."""
        self._run_sync(self.aprune(thread_ids, strategy=strategy))

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


def _metadata_of(record: RelayMetadata) -> CheckpointMetadata:
    """The LangGraph metadata kept in a record's ``custom``."""
    text = record.custom.get(_METADATA_KEY)
    if text is None:
        return {}
    try:
        return json.loads(text)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise CorruptRecord(f"{record.thread_id}/{record.id}", "bad LangGraph metadata JSON") from exc


def _blob_keys_of(record: RelayMetadata) -> Iterable[str]:
    text = record.custom.get(_BLOBS_KEY)
    return json.loads(text) if text else ()


def _listed_blob_keys(record: RelayMetadata) -> set[str]:
    """The attachment keys ``aput`` listed for the checkpoint; none if unreadable (a reader then
    asks for the keys its state names; garbage collection, which must not guess, reads them
    strictly with :func:`_blob_keys_of`)."""
    try:
        keys = _blob_keys_of(record)
    except ValueError:
        return set()
    return {k for k in keys if isinstance(k, str)} if isinstance(keys, list) else set()


def _matches(metadata: CheckpointMetadata, wanted: dict[str, Any]) -> bool:
    return all(key in metadata and metadata[key] == value for key, value in wanted.items())  # type: ignore[literal-required]


async def _merge_newest_first(
    streams: list[AsyncIterator[tuple[str, RelayMetadata]]],
) -> AsyncIterator[tuple[str, RelayMetadata]]:
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
        best = max(live, key=lambda i: heads[i][1].id)  # type: ignore[index]
        yield heads[best]  # type: ignore[misc]
        heads[best] = await anext(streams[best], None)
