"""The checkpoint contract: rust-ai-agents' CheckpointStore, plus pagination, retention and CAS.

Semantics, settled where the reference is vague:

- A thread is the ordered list of its checkpoints, in **store order** (the order of ``save``).
  "Latest" is the last saved checkpoint, never the one with the highest ``created_at`` or ``step``.
- ``metadata.thread_id`` must equal the ``thread_id`` argument (:class:`InvalidInput` otherwise).
- A checkpoint id is unique within its thread; saving it again raises :class:`Conflict`.
- ``state_size`` is always set by the store to ``len(state)``.
- A thread whose checkpoints were all deleted no longer exists: it is not listed by
  ``list_threads`` and ``load_latest`` raises :class:`ThreadNotFound`.

Past the reference, for runtimes that keep more than one blob of state per step (LangGraph):

- **Pending writes** hang off one checkpoint, keyed by ``(task_id, idx)``; they go when their
  checkpoint goes (``delete``, ``prune``, ``delete_thread``).
- **Attachments** are bytes stored once per thread under a key and shared by any number of its
  checkpoints (an unchanged channel value, say); ``delete_thread`` removes them, and their owner
  removes ones no checkpoint needs any more with ``delete_attachments``.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pydantic import TypeAdapter

from relaystore.errors import (
    CheckpointNotFound,
    Conflict,
    CorruptRecord,
    InvalidInput,
    NotSupported,
    ThreadNotFound,
)
from relaystore.models.checkpoints import Checkpoint, CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.models.common import Page
from relaystore.stores._applied import AlreadyApplied, same_write
from relaystore.stores._common import (
    ANY,
    Skipped,
    check_id,
    check_keep,
    check_limit,
    check_text,
    decode_key_cursor,
    decode_seq_cursor,
    fetch_size,
    make_page,
    storable_json,
    validate,
)

SeqRow = tuple[int, CheckpointMetadata]
_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
OMITTED_WHEN_EMPTY = ("parent_id", "label", "tags", "custom")


class CheckpointStore(ABC):
    """Thread checkpoints with raw-bytes state. All methods are coroutines."""

    # ------------------------------------------------------------------ public contract

    async def save(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        *,
        expected_head: str | None = ANY,
        attachments: Mapping[str, bytes] | None = None,
    ) -> str:
        """Append a checkpoint to ``thread_id`` and return its id (``metadata.id``).

        ``expected_head`` makes the save a compare-and-set on the thread head: pass the id of
        the checkpoint you believe is latest, or ``None`` to require an empty thread. If the
        head differs, :class:`Conflict` is raised and nothing is written.

        ``attachments`` are stored with the checkpoint (as :meth:`put_attachments`) in one atomic
        step: a :class:`Conflict` writes neither. (The file backend, which has no transactions,
        writes them just before the checkpoint, so a checkpoint never lacks its attachments.)

        A retry of a save that raised but had landed (same id, metadata, state and attachments)
        returns the id as :class:`~relaystore.stores._applied.AlreadyApplied` (a ``str``), not a
        Conflict: saves are idempotent by checkpoint id.

        Raises :class:`InvalidInput` (bad ids, mismatched ``metadata.thread_id``, state not
        bytes) and :class:`Conflict` (stale head, or the id already exists in the thread with
        other content).
        """
        check_id(thread_id, "thread_id")
        if not isinstance(metadata, CheckpointMetadata):
            raise InvalidInput("metadata must be a CheckpointMetadata")
        check_id(metadata.id, "checkpoint id")
        if metadata.thread_id != thread_id:
            raise InvalidInput(
                f"metadata.thread_id {metadata.thread_id!r} does not match thread_id {thread_id!r}"
            )
        if not isinstance(state, _BYTES_LIKE):
            raise InvalidInput(f"state must be bytes, got {type(state).__name__}")
        if expected_head is not ANY and expected_head is not None:
            check_id(expected_head, "expected_head")
        state = bytes(state)
        metadata = metadata.model_copy(update={"state_size": len(state)})
        # Stored without the empty optional fields (read back as their defaults): ~45 bytes a row.
        empty = {name for name in OMITTED_WHEN_EMPTY if not getattr(metadata, name)}
        metadata._json = storable_json(_METADATA, metadata, "checkpoint metadata", exclude=empty)
        items = {check_id(k, "attachment key"): _as_bytes(v) for k, v in (attachments or {}).items()}
        try:
            if items:
                landed = await self._save_with_attachments(thread_id, metadata, state, expected_head, items)
            else:
                landed = await self._save(thread_id, metadata, state, expected_head)
        except Conflict:
            # A retry after a "raised but applied" failure finds its own write (stores/_applied.py).
            found = await self._load(thread_id, metadata.id)
            stored = await self._get_attachments(thread_id, list(items)) if items and found else {}
            if same_write(found, metadata, state, items, stored):
                return AlreadyApplied(metadata.id)
            raise
        return AlreadyApplied(metadata.id) if landed else metadata.id

    async def load(self, thread_id: str, checkpoint_id: str) -> Checkpoint:
        """Return ``(metadata, state)`` of one checkpoint.

        Raises :class:`ThreadNotFound` if the thread has no checkpoints, else
        :class:`CheckpointNotFound` if the id is not in it; :class:`CorruptRecord` if unreadable.
        """
        check_id(thread_id, "thread_id")
        check_id(checkpoint_id, "checkpoint_id")
        found = await self._load(thread_id, checkpoint_id)
        if found is not None:
            return found
        if await self._count(thread_id) == 0:
            raise ThreadNotFound(thread_id)
        raise CheckpointNotFound(checkpoint_id)

    async def load_latest(self, thread_id: str) -> Checkpoint:
        """Return the last saved checkpoint of the thread; :class:`ThreadNotFound` if none."""
        check_id(thread_id, "thread_id")
        found = await self._load_latest(thread_id)
        if found is None:
            raise ThreadNotFound(thread_id)
        return found

    async def head(self, thread_id: str) -> str | None:
        """The id of the thread's latest checkpoint, or None: the value to pass as ``expected_head``."""
        check_id(thread_id, "thread_id")
        return await self._head(thread_id)

    async def list(
        self,
        thread_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page[CheckpointMetadata]:
        """Metadata of the thread's checkpoints, oldest first (``newest_first`` reverses).

        Returns at most ``limit`` items; pass the page's ``next_cursor`` as ``cursor`` to go on.
        An unknown thread gives an empty page. Unreadable records are skipped with a warning.
        """
        check_id(thread_id, "thread_id")
        limit = check_limit(limit)
        rows = await self._list(thread_id, fetch_size(limit), decode_seq_cursor(cursor), newest_first)
        return make_page(rows, limit)

    async def delete(self, thread_id: str, checkpoint_id: str) -> bool:
        """Delete one checkpoint; return whether it existed. Deleting the head makes its
        predecessor the head."""
        check_id(thread_id, "thread_id")
        check_id(checkpoint_id, "checkpoint_id")
        return await self._delete(thread_id, checkpoint_id)

    async def delete_thread(self, thread_id: str) -> int:
        """Delete every checkpoint of the thread; return how many there were (0 is fine)."""
        check_id(thread_id, "thread_id")
        return await self._delete_thread(thread_id)

    async def count(self, thread_id: str) -> int:
        """Number of checkpoints in the thread (0 for an unknown thread)."""
        check_id(thread_id, "thread_id")
        return await self._count(thread_id)

    async def list_threads(
        self, *, prefix: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[str]:
        """Ids of threads that hold at least one checkpoint, sorted by id (code point order).

        ``prefix`` keeps only ids that start with it, e.g. one tenant's threads when ids are
        hierarchical (``"tenant-a/"``); backends answer it with an index range.
        """
        if prefix is not None:
            check_id(prefix, "prefix")
        limit = check_limit(limit)
        after = decode_key_cursor(cursor)
        threads = await self._list_threads(fetch_size(limit), after, prefix)
        return make_page([(t, t) for t in threads], limit)

    async def prune(self, thread_id: str, keep: int) -> int:
        """Retention: delete all but the newest ``keep`` checkpoints, their pending writes and
        writes whose checkpoint does not exist; return how many checkpoints went."""
        check_id(thread_id, "thread_id")
        return await self._prune(thread_id, check_keep(keep))

    # ------------------------------------------------------------------ full reads

    async def load_full(self, thread_id: str, checkpoint_id: str | None = None) -> CheckpointBundle | None:
        """One checkpoint (the latest when ``checkpoint_id`` is None) with the attachments its
        ``metadata.refs`` name and its pending writes, or None if there is no such checkpoint.

        One round trip (one statement) on sqlite and postgres; what LangGraph's ``get_tuple`` needs.
        Raises :class:`CorruptRecord` if the checkpoint cannot be decoded.
        """
        check_id(thread_id, "thread_id")
        if checkpoint_id is not None:
            check_id(checkpoint_id, "checkpoint_id")
        return await self._load_full(thread_id, checkpoint_id)

    async def list_full(
        self,
        thread_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        newest_first: bool = True,
        before: str | None = None,
        filter: Mapping[str, Any] | None = None,
        values: bool = True,
    ) -> Page[CheckpointBundle]:
        """A page of the thread's checkpoints as :meth:`load_full` returns them, newest first
        unless ``newest_first`` is False.

        ``before`` keeps checkpoints whose id sorts below it (code point order: time order for
        uuid6 and uuid7 ids, as LangGraph's ``before``). ``filter`` keeps those whose
        ``metadata.attributes`` has each key with an equal JSON value (sqlite and postgres test
        it in SQL; other backends in Python). ``values=False`` leaves state and attachments out
        (``b""`` and ``{}``): metadata and writes only, for walking lineage.
        A page costs one round trip on sqlite and postgres. Unreadable records are skipped.
        """
        check_id(thread_id, "thread_id")
        limit = check_limit(limit)
        if before is not None:
            check_id(before, "before")
        wanted = _check_filter(filter)
        query = FullQuery(fetch_size(limit), decode_seq_cursor(cursor), newest_first, before, wanted, values)
        return make_page(await self._list_full(thread_id, query), limit)

    # ------------------------------------------------------------------ pending writes

    async def put_writes(
        self,
        thread_id: str,
        checkpoint_id: str,
        writes: Iterable[PendingWrite | dict[str, Any]],
        *,
        replace: bool = False,
    ) -> None:
        """Attach ``writes`` to a checkpoint, atomically, whether or not it is saved yet.

        A write whose ``(task_id, idx)`` is already attached is ignored, or replaces the old one
        when ``replace`` is true (LangGraph ignores repeats of ordinary writes and upserts its
        special negative-``idx`` channels); within one call the first (ignore) or last (replace)
        of a repeated key wins.

        As every LangGraph saver does, writes may arrive before their checkpoint (a graph with
        ``durability="async"`` sends a step's writes while its checkpoint is still being saved):
        they are stored at once, in one statement or script, and read with the checkpoint once it
        exists. Writes whose checkpoint never arrives are garbage: ``prune``,
        ``delete_orphan_writes`` and ``delete_thread`` remove them. Raises :class:`InvalidInput`
        for a malformed write.
        """
        check_id(thread_id, "thread_id")
        check_id(checkpoint_id, "checkpoint_id")
        parsed = [_check_write(validate(_WRITE, w, "pending write")) for w in writes]
        if parsed:
            await self._put_writes(thread_id, checkpoint_id, _dedupe(parsed, bool(replace)), bool(replace))

    async def delete_orphan_writes(self, thread_id: str) -> int:
        """Delete the thread's pending writes whose checkpoint does not exist; return the number
        of checkpoint ids whose writes went.

        Run it on an idle thread: writes sent ahead of a checkpoint still being saved are orphans
        until that save lands.
        """
        check_id(thread_id, "thread_id")
        return await self._delete_orphan_writes(thread_id)

    async def list_writes(self, thread_id: str, checkpoint_id: str) -> builtins.list[PendingWrite]:
        """The checkpoint's pending writes sorted by ``(task_path, task_id, idx)``; [] if none
        (or if the checkpoint does not exist)."""
        check_id(thread_id, "thread_id")
        check_id(checkpoint_id, "checkpoint_id")
        return sort_writes(await self._list_writes(thread_id, checkpoint_id))

    # ------------------------------------------------------------------ attachments

    async def put_attachments(self, thread_id: str, attachments: Mapping[str, bytes]) -> None:
        """Store bytes under keys of the thread (overwriting), atomically. Keys follow the id rules."""
        check_id(thread_id, "thread_id")
        items = {check_id(k, "attachment key"): _as_bytes(v) for k, v in attachments.items()}
        if items:
            await self._put_attachments(thread_id, items)

    async def get_attachments(self, thread_id: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored attachments among ``keys``; missing keys are left out."""
        check_id(thread_id, "thread_id")
        wanted = list(dict.fromkeys(check_id(k, "attachment key") for k in keys))
        return await self._get_attachments(thread_id, wanted) if wanted else {}

    async def delete_attachments(self, thread_id: str, keys: Iterable[str]) -> int:
        """Delete attachments by key; return how many existed."""
        check_id(thread_id, "thread_id")
        doomed = list(dict.fromkeys(check_id(k, "attachment key") for k in keys))
        return await self._delete_attachments(thread_id, doomed) if doomed else 0

    async def list_attachments(
        self, thread_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[str]:
        """Attachment keys of the thread, sorted."""
        check_id(thread_id, "thread_id")
        limit = check_limit(limit)
        keys = await self._list_attachments(thread_id, decode_key_cursor(cursor), fetch_size(limit))
        return make_page([(k, k) for k in keys], limit)

    # ------------------------------------------------------------------ backend primitives

    @abstractmethod
    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> bool | None:
        """Atomically: check ``expected_head`` (unless ANY) and id uniqueness, then append the
        checkpoint and upsert its attachments (often none). On :class:`Conflict` (raised via
        :func:`head_conflict` / :func:`duplicate_conflict`) nothing is written. True only when a
        remote store reports the write was already applied (``http://``); else None."""

    async def _save(
        self, thread_id: str, metadata: CheckpointMetadata, state: bytes, expected_head: Any
    ) -> bool | None:
        """A save without attachments; override where the backend has a cheaper path."""
        return await self._save_with_attachments(thread_id, metadata, state, expected_head, {})

    async def _head(self, thread_id: str) -> str | None:
        """Id of the last saved checkpoint, read without decoding it when the backend can.

        This default decodes the newest listed row, so a corrupt head raises :class:`CorruptRecord`;
        backends that keep the id apart from the metadata override it.
        """
        rows = await self._list(thread_id, 1, None, True)
        if not rows:
            return None
        newest = rows[0][1]
        if isinstance(newest, Skipped):
            raise CorruptRecord(newest.key, "the thread head cannot be decoded")
        return newest.id

    @abstractmethod
    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None: ...

    @abstractmethod
    async def _load_latest(self, thread_id: str) -> Checkpoint | None: ...

    @abstractmethod
    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> builtins.list[SeqRow]:
        """``(seq, metadata)`` rows strictly after (or before, when newest_first) ``after``."""

    @abstractmethod
    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool: ...

    @abstractmethod
    async def _delete_thread(self, thread_id: str) -> int: ...

    @abstractmethod
    async def _count(self, thread_id: str) -> int: ...

    @abstractmethod
    async def _list_threads(
        self, limit: int | None, after: str | None, prefix: str | None
    ) -> builtins.list[str]:
        """Thread ids > ``after`` starting with ``prefix`` (see :func:`prefix_upper_bound`)."""

    @abstractmethod
    async def _prune(self, thread_id: str, keep: int) -> int:
        """Delete all but the newest ``keep`` checkpoints, and the pending writes of those deleted."""

    # Writes and attachments came after the first backends; these defaults say so clearly.

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: builtins.list[PendingWrite], replace: bool
    ) -> None:
        """Attach writes atomically, whether or not the checkpoint exists (keys are unique)."""
        raise self._unsupported("pending writes")

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        raise self._unsupported("pending writes")

    async def _load_full(self, thread_id: str, checkpoint_id: str | None) -> CheckpointBundle | None:
        """Composed from the single reads; backends with a cheaper path override it."""
        if checkpoint_id is None:
            found = await self._load_latest(thread_id)
        else:
            found = await self._load(thread_id, checkpoint_id)
        return None if found is None else await self._complete(thread_id, found.metadata, found.state, True)

    async def _list_full(self, thread_id: str, query: FullQuery) -> builtins.list[tuple[int, Any]]:
        """``(seq, bundle or Skipped)`` rows after ``query.after``; composed from ``_list`` here
        (filters tested in Python), overridden where one statement can do it."""
        rows: builtins.list[tuple[int, Any]] = []
        after = query.after
        while query.limit is None or len(rows) < query.limit:
            listed = await self._list(thread_id, _SCAN_PAGE, after, query.newest_first)
            for seq, record in listed:
                if isinstance(record, Skipped) or query.matches(record):
                    rows.append((seq, record))
            if len(listed) < _SCAN_PAGE:
                break
            after = listed[-1][0]
        if query.limit is not None:
            rows = rows[: query.limit]
        return [(seq, await self._listed_bundle(thread_id, record, query.values)) for seq, record in rows]

    async def _listed_bundle(self, thread_id: str, record: Any, values: bool) -> Any:
        if isinstance(record, Skipped):
            return record
        if not values:
            return await self._complete(thread_id, record, b"", False)
        found = await self._load(thread_id, record.id)
        if found is None:  # deleted while we listed
            return Skipped(record.id, f"{thread_id}/{record.id}")
        return await self._complete(thread_id, found.metadata, found.state, True)

    async def _complete(
        self, thread_id: str, metadata: CheckpointMetadata, state: bytes, values: bool
    ) -> CheckpointBundle:
        refs = list(dict.fromkeys(metadata.refs)) if values else []
        attachments = await self._get_attachments(thread_id, refs) if refs else {}
        writes = sort_writes(await self._list_writes(thread_id, metadata.id))
        return CheckpointBundle(metadata, state, attachments, writes)

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> builtins.list[PendingWrite]:
        raise self._unsupported("pending writes")

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        raise self._unsupported("attachments")

    async def _get_attachments(self, thread_id: str, keys: builtins.list[str]) -> dict[str, bytes]:
        raise self._unsupported("attachments")

    async def _delete_attachments(self, thread_id: str, keys: builtins.list[str]) -> int:
        raise self._unsupported("attachments")

    async def _list_attachments(
        self, thread_id: str, after: str | None, limit: int | None
    ) -> builtins.list[str]:
        raise self._unsupported("attachments")

    def _unsupported(self, what: str) -> NotSupported:
        return NotSupported(type(self).__name__, what)


_WRITE: TypeAdapter[PendingWrite] = TypeAdapter(PendingWrite)
_SCAN_PAGE = 200  # records per listing step when a filter is tested in Python


class FullQuery(NamedTuple):
    """What one :meth:`CheckpointStore.list_full` page asks a backend for.

    ``limit`` already holds the one extra row that tells whether another page exists.
    """

    limit: int | None
    after: int | None
    newest_first: bool
    before: str | None
    filter: dict[str, Any]
    values: bool

    def matches(self, metadata: CheckpointMetadata) -> bool:
        """The ``before`` and ``filter`` test, for backends that apply it in Python."""
        if self.before is not None and not metadata.id < self.before:
            return False
        attributes = metadata.attributes
        return all(key in attributes and attributes[key] == value for key, value in self.filter.items())


def _check_filter(filter: Mapping[str, Any] | None) -> dict[str, Any]:
    if filter is None:
        return {}
    if not isinstance(filter, Mapping) or not all(isinstance(k, str) for k in filter):
        raise InvalidInput("filter must map attribute names (strings) to JSON values")
    wanted = dict(filter)
    storable_json(_FILTER, wanted, "filter")
    return wanted


_FILTER: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def sort_writes(writes: Iterable[PendingWrite]) -> builtins.list[PendingWrite]:
    """Pending writes in LangGraph's ``writes_sort_key`` order: ``(task_path, task_id, idx)``."""
    return sorted(writes, key=lambda w: (w.task_path, w.task_id, w.idx))


def _dedupe(writes: builtins.list[PendingWrite], replace: bool) -> builtins.list[PendingWrite]:
    """One write per ``(task_id, idx)``: the last when replacing, else the first (so a backend can
    send them in one statement, which may touch each row once)."""
    kept: dict[tuple[str, int], PendingWrite] = {}
    for write in writes:
        key = (write.task_id, write.idx)
        if replace or key not in kept:
            kept[key] = write
    return builtins.list(kept.values())


def _check_write(write: PendingWrite) -> PendingWrite:
    check_id(write.task_id, "task_id")
    check_id(write.channel, "channel")
    check_text(write.task_path, "task_path")
    if write.type is not None:
        check_text(write.type, "type")
    return write


_BYTES_LIKE = (bytes, bytearray, memoryview)


def _as_bytes(value: object) -> bytes:
    if not isinstance(value, _BYTES_LIKE):
        raise InvalidInput(f"an attachment must be bytes, got {type(value).__name__}")
    return bytes(value)


def head_conflict(thread_id: str, expected: str | None, actual: str | None) -> Conflict:
    return Conflict(
        f"thread {thread_id!r}: expected head {expected!r} but the head is {actual!r}; nothing written"
    )


def duplicate_conflict(thread_id: str, checkpoint_id: str) -> Conflict:
    return Conflict(f"thread {thread_id!r} already has checkpoint {checkpoint_id!r}")


def check_head(thread_id: str, expected: Any, actual: str | None) -> None:
    """Raise :class:`Conflict` if a compare-and-set ``expected`` head differs from ``actual``."""
    if expected is not ANY and expected != actual:
        raise head_conflict(thread_id, expected, actual)
