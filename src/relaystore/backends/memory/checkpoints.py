"""Checkpoints of the memory backend, with their pending writes and thread attachments."""

from __future__ import annotations

import itertools
from typing import Any

from relaystore.backends.memory.state import MemoryState, seq_after, sorted_after
from relaystore.models.checkpoints import Checkpoint, CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.stores import CheckpointStore
from relaystore.stores.checkpoints import FullQuery, SeqRow, check_head, duplicate_conflict, sort_writes


class MemoryCheckpointStore(CheckpointStore):
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> None:
        with self._s.lock:
            thread = self._s.threads.get(thread_id, {})
            check_head(thread_id, expected_head, next(reversed(thread), None))
            if metadata.id in thread:
                raise duplicate_conflict(thread_id, metadata.id)
            thread[metadata.id] = (next(self._s.seq), metadata, state)
            self._s.threads[thread_id] = thread
            if attachments:
                self._s.attachments.setdefault(thread_id, {}).update(attachments)

    async def _head(self, thread_id: str) -> str | None:
        with self._s.lock:
            return next(reversed(self._s.threads.get(thread_id, {})), None)

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        entry = self._s.threads.get(thread_id, {}).get(checkpoint_id)
        return None if entry is None else Checkpoint(entry[1], entry[2])

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        with self._s.lock:
            thread = self._s.threads.get(thread_id)
            if not thread:
                return None
            _, metadata, state = thread[next(reversed(thread))]
            return Checkpoint(metadata, state)

    async def _load_full(self, thread_id: str, checkpoint_id: str | None) -> CheckpointBundle | None:
        with self._s.lock:  # one lookup per part, no awaits between them
            thread = self._s.threads.get(thread_id)
            if not thread:
                return None
            entry = thread.get(checkpoint_id if checkpoint_id is not None else next(reversed(thread)))
            return None if entry is None else self._bundle(thread_id, entry, True)

    async def _list_full(self, thread_id: str, query: FullQuery) -> list[tuple[int, Any]]:
        with self._s.lock:
            thread = self._s.threads.get(thread_id, {})
            entries = reversed(thread.values()) if query.newest_first else iter(thread.values())
            rows = (
                (seq, self._bundle(thread_id, (seq, md, state), query.values))
                for seq, md, state in entries
                if seq_after(seq, query.after, query.newest_first) and query.matches(md)
            )
            return list(rows if query.limit is None else itertools.islice(rows, query.limit))

    def _bundle(
        self, thread_id: str, entry: tuple[int, CheckpointMetadata, bytes], values: bool
    ) -> CheckpointBundle:
        _, metadata, state = entry
        writes = sort_writes(self._s.writes.get(thread_id, {}).get(metadata.id, {}).values())
        if not values:
            return CheckpointBundle(metadata, b"", {}, writes)
        stored = self._s.attachments.get(thread_id, {})
        attachments = {ref: stored[ref] for ref in metadata.refs if ref in stored}
        return CheckpointBundle(metadata, state, attachments, writes)

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        with self._s.lock:  # a page costs its own length, not the thread's (saves are in seq order)
            thread = self._s.threads.get(thread_id, {})
            entries = reversed(thread.values()) if newest_first else iter(thread.values())
            rows = ((seq, md) for seq, md, _ in entries if seq_after(seq, after, newest_first))
            return list(rows if limit is None else itertools.islice(rows, limit))

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        with self._s.lock:
            thread = self._s.threads.get(thread_id, {})
            existed = thread.pop(checkpoint_id, None) is not None
            self._s.writes.get(thread_id, {}).pop(checkpoint_id, None)
            if not thread:
                self._s.threads.pop(thread_id, None)
            return existed

    async def _delete_thread(self, thread_id: str) -> int:
        with self._s.lock:
            checkpoints = self._s.threads.pop(thread_id, {})
            self._s.writes.pop(thread_id, None)
            self._s.attachments.pop(thread_id, None)
            return len(checkpoints)

    async def _count(self, thread_id: str) -> int:
        return len(self._s.threads.get(thread_id, {}))

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        with self._s.lock:
            threads = [t for t in self._s.threads if prefix is None or t.startswith(prefix)]
        return sorted_after(threads, after, limit)

    async def _prune(self, thread_id: str, keep: int) -> int:
        with self._s.lock:
            thread = self._s.threads.get(thread_id, {})
            doomed = list(thread)[: max(0, len(thread) - keep)]
            for checkpoint_id in doomed:
                del thread[checkpoint_id]
            self._drop_orphans(thread_id, thread)
            if not thread:
                self._s.threads.pop(thread_id, None)
            return len(doomed)

    def _drop_orphans(self, thread_id: str, thread: dict[str, Any]) -> int:
        attached = self._s.writes.get(thread_id, {})
        orphans = [checkpoint_id for checkpoint_id in attached if checkpoint_id not in thread]
        for checkpoint_id in orphans:
            del attached[checkpoint_id]
        return len(orphans)

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        with self._s.lock:
            return self._drop_orphans(thread_id, self._s.threads.get(thread_id, {}))

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        with self._s.lock:
            attached = self._s.writes.setdefault(thread_id, {}).setdefault(checkpoint_id, {})
            for write in writes:
                if replace or (write.task_id, write.idx) not in attached:
                    attached[(write.task_id, write.idx)] = write

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        with self._s.lock:
            return list(self._s.writes.get(thread_id, {}).get(checkpoint_id, {}).values())

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        with self._s.lock:
            self._s.attachments.setdefault(thread_id, {}).update(items)

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        with self._s.lock:
            stored = self._s.attachments.get(thread_id, {})
            return {k: stored[k] for k in keys if k in stored}

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        with self._s.lock:
            stored = self._s.attachments.get(thread_id, {})
            return sum(stored.pop(k, None) is not None for k in keys)

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        with self._s.lock:
            return sorted_after(list(self._s.attachments.get(thread_id, {})), after, limit)
