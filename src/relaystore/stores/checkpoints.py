"""The checkpoint contract: rust-ai-agents' CheckpointStore, plus pagination, retention and CAS.

Semantics, settled where the reference is vague:

- A thread is the ordered list of its checkpoints, in **store order** (the order of ``save``).
  "Latest" is the last saved checkpoint, never the one with the highest ``created_at`` or ``step``.
- ``metadata.thread_id`` must equal the ``thread_id`` argument (:class:`InvalidInput` otherwise).
- A checkpoint id is unique within its thread; saving it again raises :class:`Conflict`.
- ``state_size`` is always set by the store to ``len(state)``.
- A thread whose checkpoints were all deleted no longer exists: it is not listed by
  ``list_threads`` and ``load_latest`` raises :class:`ThreadNotFound`.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from typing import Any

from pydantic import TypeAdapter

from relaystore.errors import (
    CheckpointNotFound,
    Conflict,
    CorruptRecord,
    InvalidInput,
    ThreadNotFound,
)
from relaystore.models.checkpoints import Checkpoint, CheckpointMetadata
from relaystore.models.common import Page
from relaystore.stores._common import (
    ANY,
    Skipped,
    check_id,
    check_keep,
    check_limit,
    decode_key_cursor,
    decode_seq_cursor,
    fetch_size,
    make_page,
    storable_json,
)

SeqRow = tuple[int, CheckpointMetadata]
_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)


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
    ) -> str:
        """Append a checkpoint to ``thread_id`` and return its id (``metadata.id``).

        ``expected_head`` makes the save a compare-and-set on the thread head: pass the id of
        the checkpoint you believe is latest, or ``None`` to require an empty thread. If the
        head differs, :class:`Conflict` is raised and nothing is written.

        Raises :class:`InvalidInput` (bad ids, mismatched ``metadata.thread_id``, state not
        bytes) and :class:`Conflict` (stale head, or the id already exists in the thread).
        """
        check_id(thread_id, "thread_id")
        if not isinstance(metadata, CheckpointMetadata):
            raise InvalidInput("metadata must be a CheckpointMetadata")
        check_id(metadata.id, "checkpoint id")
        if metadata.thread_id != thread_id:
            raise InvalidInput(
                f"metadata.thread_id {metadata.thread_id!r} does not match thread_id {thread_id!r}"
            )
        if not isinstance(state, bytes | bytearray | memoryview):
            raise InvalidInput(f"state must be bytes, got {type(state).__name__}")
        if expected_head is not ANY and expected_head is not None:
            check_id(expected_head, "expected_head")
        state = bytes(state)
        metadata = metadata.model_copy(update={"state_size": len(state)})
        storable_json(_METADATA, metadata, "checkpoint metadata")
        await self._save(thread_id, metadata, state, expected_head)
        return metadata.id

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

    async def list_threads(self, *, limit: int | None = None, cursor: str | None = None) -> Page[str]:
        """Ids of threads that hold at least one checkpoint, sorted by id (code point order)."""
        limit = check_limit(limit)
        after = decode_key_cursor(cursor)
        threads = await self._list_threads(fetch_size(limit), after)
        return make_page([(t, t) for t in threads], limit)

    async def prune(self, thread_id: str, keep: int) -> int:
        """Retention: delete all but the newest ``keep`` checkpoints; return how many went."""
        check_id(thread_id, "thread_id")
        return await self._prune(thread_id, check_keep(keep))

    # ------------------------------------------------------------------ backend primitives

    @abstractmethod
    async def _save(
        self, thread_id: str, metadata: CheckpointMetadata, state: bytes, expected_head: Any
    ) -> None:
        """Atomically: check ``expected_head`` (unless ANY) and id uniqueness, then append.
        Raise :class:`Conflict` via :func:`head_conflict` / :func:`duplicate_conflict`."""

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
    async def _list_threads(self, limit: int | None, after: str | None) -> builtins.list[str]: ...

    @abstractmethod
    async def _prune(self, thread_id: str, keep: int) -> int: ...


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
