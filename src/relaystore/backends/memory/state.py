"""What one memory store holds, the paging helpers its faces share, and the process-wide names.

``memory://`` gets a fresh private state; ``memory://NAME`` the one state of that name, shared by
every ``connect`` in this process until the process exits.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from typing import Any
from urllib.parse import urlsplit

from relaystore.models.checkpoints import CheckpointMetadata, PendingWrite
from relaystore.models.outputs import BlobContent, OutputRecord
from relaystore.stores import DocKind


class MemoryState:
    """Everything one memory store holds."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.seq = itertools.count(1)
        # thread -> {checkpoint id: (seq, metadata, state)}; dicts keep insertion (= seq) order
        self.threads: dict[str, dict[str, tuple[int, CheckpointMetadata, bytes]]] = {}
        self.outputs: dict[str, OutputRecord] = {}  # ref -> record, in seq order
        self.children: dict[str, list[str]] = {}  # parent ref -> child refs
        self.runs: dict[str, dict[str, tuple[int, str]]] = {}  # agent -> run id -> (seq, json)
        self.docs: dict[str, dict[str, str]] = {kind: {} for kind in DOC_KINDS}
        # thread -> checkpoint id -> {(task_id, idx): write}; thread -> {key: bytes}
        self.writes: dict[str, dict[str, dict[tuple[str, int], PendingWrite]]] = {}
        self.attachments: dict[str, dict[str, bytes]] = {}
        self.blobs: dict[str, tuple[BlobContent, list[bytes]]] = {}
        self.uploads: dict[str, list[bytes]] = {}


DOC_KINDS: tuple[DocKind, ...] = ("plan", "trie", "accumulators", "acg_observations", "acg_stability")
_NAMED: dict[str, MemoryState] = {}
_NAMED_LOCK = threading.Lock()


def seq_after(seq: int, after: int | None, newest_first: bool) -> bool:
    """Whether ``seq`` comes after the cursor ``after`` in the listing's direction."""
    if after is None:
        return True
    return seq < after if newest_first else seq > after


def take(items: list[Any], limit: int | None) -> list[Any]:
    """The first ``limit`` of ``items`` (all of them for None)."""
    return items if limit is None else items[:limit]


def sorted_after(keys: Any, after: str | None, limit: int | None) -> list[str]:
    """One page of ``keys`` in sorted order: those after ``after``, at most ``limit``."""
    ordered = sorted(keys)
    start = 0 if after is None else bisect.bisect_right(ordered, after)
    return take(ordered[start:], limit)


def state_for(url: str) -> MemoryState:
    """A fresh state for ``memory://``, the shared one of that name for ``memory://NAME``."""
    name = (urlsplit(url).netloc + urlsplit(url).path).strip("/")
    if not name:
        return MemoryState()
    with _NAMED_LOCK:
        return _NAMED.setdefault(name, MemoryState())
