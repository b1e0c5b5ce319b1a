"""In-process backend: plain dicts, for tests and short-lived programs.

``memory://`` opens a fresh private store. ``memory://NAME`` opens the store called NAME, shared
by every ``connect`` in this process until the process exits. Nothing is persisted.

Every primitive runs without awaiting, so each call is atomic within the event loop; a lock
guards against use from several threads (``connect_sync`` and plain threads).

Modules: :mod:`.url` (``parse_url``: the name; options are refused), :mod:`.state` (what a store
holds, the shared names), and one per face: :mod:`.checkpoints`, :mod:`.outputs`,
:mod:`.adaptive`, :mod:`.blobs`, :mod:`.items`.
"""

from __future__ import annotations

from typing import Any

from relaystore.backends.memory.adaptive import MemoryAdaptiveStore
from relaystore.backends.memory.blobs import MemoryBlobStore
from relaystore.backends.memory.checkpoints import MemoryCheckpointStore
from relaystore.backends.memory.items import MemoryItemStore
from relaystore.backends.memory.outputs import MemoryOutputStore
from relaystore.backends.memory.state import state_for
from relaystore.backends.memory.url import MemoryOptions, parse_url
from relaystore.stores import Store

__all__ = ["MemoryOptions", "open_store", "parse_url"]


async def open_store(url: str, **options: Any) -> Store:
    """Open ``memory://`` (private) or ``memory://NAME`` (shared within this process).

    Raises :class:`InvalidInput` for any option: the memory backend has none.
    """
    parsed = parse_url(url, options)
    state = state_for(parsed.name)

    async def info() -> dict[str, Any]:
        return {"shared_name": parsed.name}

    return Store(
        url,
        "memory",
        MemoryCheckpointStore(state),
        MemoryOutputStore(state),
        MemoryAdaptiveStore(state),
        blobs=MemoryBlobStore(state),
        items=MemoryItemStore.for_state(state),
        info=info,
        reopenable=False,  # the data lives in this process: callers share this Store instead
    )
