"""In-process backend: plain dicts, for tests and short-lived programs.

``memory://`` opens a fresh private store. ``memory://NAME`` opens the store called NAME, shared
by every ``connect`` in this process until the process exits. Nothing is persisted.

Every primitive runs without awaiting, so each call is atomic within the event loop; a lock
guards against use from several threads (``connect_sync`` and plain threads).
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from relaystore.backends.memory_items import MemoryItemStore
from relaystore.errors import Conflict
from relaystore.models.checkpoints import Checkpoint, CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.models.outputs import BlobContent, OutputRecord, OutputRef
from relaystore.stores import AdaptiveStore, CheckpointStore, DocKind, OutputFilter, OutputStore, Store
from relaystore.stores.adaptive import AGENT_DOC_KINDS
from relaystore.stores.blobs import BlobStore
from relaystore.stores.checkpoints import FullQuery, SeqRow, check_head, duplicate_conflict, sort_writes


class _State:
    """Everything one memory store holds."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.seq = itertools.count(1)
        # thread -> {checkpoint id: (seq, metadata, state)}; dicts keep insertion (= seq) order
        self.threads: dict[str, dict[str, tuple[int, CheckpointMetadata, bytes]]] = {}
        self.outputs: dict[str, OutputRecord] = {}  # ref -> record, in seq order
        self.children: dict[str, list[str]] = {}  # parent ref -> child refs
        self.runs: dict[str, dict[str, tuple[int, str]]] = {}  # agent -> run id -> (seq, json)
        self.docs: dict[str, dict[str, str]] = {kind: {} for kind in _KINDS}
        # thread -> checkpoint id -> {(task_id, idx): write}; thread -> {key: bytes}
        self.writes: dict[str, dict[str, dict[tuple[str, int], PendingWrite]]] = {}
        self.attachments: dict[str, dict[str, bytes]] = {}
        self.blobs: dict[str, tuple[BlobContent, list[bytes]]] = {}
        self.uploads: dict[str, list[bytes]] = {}


_KINDS: tuple[DocKind, ...] = ("plan", "trie", "accumulators", "acg_observations", "acg_stability")
_NAMED: dict[str, _State] = {}
_NAMED_LOCK = threading.Lock()


def _after(seq: int, after: int | None, newest_first: bool) -> bool:
    if after is None:
        return True
    return seq < after if newest_first else seq > after


def _take(items: list[Any], limit: int | None) -> list[Any]:
    return items if limit is None else items[:limit]


def _sorted_after(keys: Any, after: str | None, limit: int | None) -> list[str]:
    ordered = sorted(keys)
    start = 0 if after is None else bisect.bisect_right(ordered, after)
    return _take(ordered[start:], limit)


class MemoryCheckpointStore(CheckpointStore):
    def __init__(self, state: _State) -> None:
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
                if _after(seq, query.after, query.newest_first) and query.matches(md)
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
            rows = ((seq, md) for seq, md, _ in entries if _after(seq, after, newest_first))
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
        return _sorted_after(threads, after, limit)

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
            return _sorted_after(list(self._s.attachments.get(thread_id, {})), after, limit)


class MemoryOutputStore(OutputStore):
    def __init__(self, state: _State) -> None:
        self._s = state

    async def _insert(self, record: OutputRecord) -> int:
        with self._s.lock:
            if record.id in self._s.outputs:
                raise Conflict(f"output {record.id} already exists")
            seq = next(self._s.seq)
            self._s.outputs[record.id] = record.model_copy(update={"seq": seq})
            for parent in dict.fromkeys(record.parent_refs):
                self._s.children.setdefault(parent, []).append(record.id)
            return seq

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        return [self._s.outputs[r] for r in refs if r in self._s.outputs]

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        with self._s.lock:
            records = list(self._s.outputs.values())
        return next((r for r in reversed(records) if flt.matches(r)), None)

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        with self._s.lock:
            records = list(self._s.outputs.values())
        return _take([r for r in records if _after(r.seq, after, False) and flt.matches(r)], limit)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        with self._s.lock:
            child_refs = [c for r in refs for c in self._s.children.get(r, [])]
            return [self._s.outputs[c] for c in dict.fromkeys(child_refs)]


class MemoryAdaptiveStore(AdaptiveStore):
    def __init__(self, state: _State) -> None:
        self._s = state

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        with self._s.lock:
            runs = self._s.runs.setdefault(agent_id, {})
            if run_id in runs:
                raise Conflict(f"agent {agent_id!r} already has run {run_id}")
            runs[run_id] = (next(self._s.seq), text)

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        with self._s.lock:
            runs = list(self._s.runs.get(agent_id, {}).items())
        rows = [(seq, f"runs:{agent_id}:{rid}", text) for rid, (seq, text) in runs]
        return _take([row for row in rows if _after(row[0], after, False)], limit)

    async def _count_runs(self, agent_id: str) -> int:
        return len(self._s.runs.get(agent_id, {}))

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        with self._s.lock:
            runs = self._s.runs.get(agent_id, {})
            doomed = list(runs)[: max(0, len(runs) - keep)]
            for run_id in doomed:
                del runs[run_id]
            if not runs:
                self._s.runs.pop(agent_id, None)
            return len(doomed)

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        with self._s.lock:
            agents = set(self._s.runs)
            for kind in AGENT_DOC_KINDS:
                agents.update(self._s.docs[kind])
        return _sorted_after(agents, after, limit)

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        return self._s.docs[kind].get(key)

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        with self._s.lock:
            self._s.docs[kind][key] = text

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        with self._s.lock:
            return self._s.docs[kind].pop(key, None) is not None

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        with self._s.lock:
            return _sorted_after(list(self._s.docs[kind]), after, limit)

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        with self._s.lock:
            current = self._s.docs[kind].get(key)
            new = apply(current)
            if new is None:
                return current
            self._s.docs[kind][key] = new
            return new


class MemoryBlobStore(BlobStore):
    def __init__(self, state: _State) -> None:
        self._s = state

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        with self._s.lock:
            self._s.uploads.setdefault(upload_id, []).append(data)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        with self._s.lock:
            staged = self._s.uploads.pop(upload_id, [])
            self._s.blobs.setdefault(blob.sha256, (blob, staged))

    async def _abort(self, upload_id: str) -> None:
        with self._s.lock:
            self._s.uploads.pop(upload_id, None)

    async def _stat(self, sha256: str) -> BlobContent | None:
        entry = self._s.blobs.get(sha256)
        return None if entry is None else entry[0]

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        entry = self._s.blobs.get(sha256)
        return None if entry is None else entry[1][index]

    async def _delete(self, sha256: str) -> bool:
        with self._s.lock:
            return self._s.blobs.pop(sha256, None) is not None

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        with self._s.lock:
            return [self._s.blobs[sha][0] for sha in _sorted_after(list(self._s.blobs), after, limit)]


def _state_for(url: str) -> _State:
    name = (urlsplit(url).netloc + urlsplit(url).path).strip("/")
    if not name:
        return _State()
    with _NAMED_LOCK:
        return _NAMED.setdefault(name, _State())


async def open_store(url: str, **_options: object) -> Store:
    """Open ``memory://`` (private) or ``memory://NAME`` (shared within this process)."""
    state = _state_for(url)

    async def info() -> dict[str, Any]:
        return {"shared_name": (urlsplit(url).netloc + urlsplit(url).path).strip("/") or None}

    return Store(
        url,
        "memory",
        MemoryCheckpointStore(state),
        MemoryOutputStore(state),
        MemoryAdaptiveStore(state),
        blobs=MemoryBlobStore(state),
        items=MemoryItemStore.for_state(state),
        info=info,
        reopenable=False,
    )
