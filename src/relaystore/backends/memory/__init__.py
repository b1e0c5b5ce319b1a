"""In-process backend: plain dicts, for tests and short-lived programs.

``memory://`` opens a fresh private store. ``memory://NAME`` opens the store called NAME, shared
by every ``connect`` in this process until the process exits. Nothing is persisted.

Every primitive runs without awaiting, so each call is atomic within the event loop; a lock
guards against use from several threads (``connect_sync`` and plain threads).

Modules: :mod:`.state` (what a store holds, the shared names), one per face: :mod:`.checkpoints`,
:mod:`.outputs`, :mod:`.adaptive`, :mod:`.blobs`, :mod:`.items`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from relaystore.backends.memory.adaptive import MemoryAdaptiveStore
from relaystore.backends.memory.blobs import MemoryBlobStore
from relaystore.backends.memory.checkpoints import MemoryCheckpointStore
from relaystore.backends.memory.items import MemoryItemStore
from relaystore.backends.memory.outputs import MemoryOutputStore
from relaystore.backends.memory.state import state_for
from relaystore.stores import Store


async def open_store(url: str, **_options: object) -> Store:
    """Open ``memory://`` (private) or ``memory://NAME`` (shared within this process)."""
    state = state_for(url)

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
