"""relaystore: durable, pluggable state storage for AI-agent runtimes.

One URL opens a :class:`Store` with three faces:

- ``store.checkpoints``: thread checkpoints (rust-ai-agents' CheckpointStore);
- ``store.outputs``: a swarm's data plane (mlua-swarm's OutputStore);
- ``store.adaptive``: NeMo Relay's adaptive state (its StorageBackendDyn).

>>> import asyncio, relaystore
>>> async def main():
...     async with relaystore.connect("memory://") as store:
...         return await store.checkpoints.count("t1")
>>> asyncio.run(main())
0
"""

from relaystore.connect import SyncStore, connect, connect_sync
from relaystore.stores import ANY, AdaptiveStore, CheckpointStore, OutputStore, Store
from relaystore.stores._applied import AlreadyApplied

__version__ = "0.2.0"

__all__ = [
    "ANY",
    "AdaptiveStore",
    "AlreadyApplied",
    "CheckpointStore",
    "OutputStore",
    "Store",
    "SyncStore",
    "__version__",
    "connect",
    "connect_sync",
]
