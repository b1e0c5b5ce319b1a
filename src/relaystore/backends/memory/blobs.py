"""Blobs of the memory backend: each digest's chunks as a list, uploads staged by id."""

from __future__ import annotations

from relaystore.backends.memory.state import MemoryState, sorted_after
from relaystore.models.outputs import BlobContent
from relaystore.stores.blobs import BlobStore


class MemoryBlobStore(BlobStore):
    def __init__(self, state: MemoryState) -> None:
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
            return [self._s.blobs[sha][0] for sha in sorted_after(list(self._s.blobs), after, limit)]
