"""Content-addressed blobs of the file backend, under ``blobs/``."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

from relaystore.backends._policy import STALE_UPLOAD_SECONDS
from relaystore.backends.filesystem.layout import FileRoot, read_text, take
from relaystore.errors import BackendUnavailable
from relaystore.models.outputs import BlobContent
from relaystore.stores.blobs import CHUNK_SIZE, BlobStore

BLOBS_DIR = "blobs"
UPLOAD_PREFIX = ".upload-"  # not TMP_PREFIX: open() must not delete an upload another process runs
MIME_SUFFIX = ".mime"
_DIGEST_NAME = re.compile(r"^[0-9a-f]{64}$")


class FileBlobStore(BlobStore):
    """``blobs/<first 2 hex>/<sha256>``: one file per blob, its mime type in ``<sha256>.mime``.

    An upload appends its chunks to ``blobs/.upload-<id>`` without the store lock (uploads may be
    long); the commit takes the lock, fsyncs the staged file and renames it to its digest, or drops
    it when that digest is already stored. Uploads a crashed process left are removed a day later.
    """

    def __init__(self, root: FileRoot) -> None:
        self._root = root
        self._dir = root.path / BLOBS_DIR

    def _path(self, sha256: str) -> Path:
        return self._dir / sha256[:2] / sha256

    def _staged(self, upload_id: str) -> Path:
        return self._dir / f"{UPLOAD_PREFIX}{upload_id}"

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        def append() -> None:
            if index == 0:
                self._root.make_dirs(self._dir)
            with open(self._staged(upload_id), "xb" if index == 0 else "ab") as file:
                file.write(data)

        await self._root.read(append)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        staged = self._staged(upload_id)

        def commit() -> None:
            if chunks == 0:  # an empty blob staged nothing
                self._root.make_dirs(self._dir)
                open(staged, "xb").close()
            target = self._path(blob.sha256)
            if target.exists():
                self._root.remove(staged)
                return
            if staged.stat().st_size != blob.size:
                raise BackendUnavailable(f"{staged} lost data during the upload; nothing stored")
            self._root.make_dirs(target.parent)
            if blob.mime is not None:  # before the blob: a visible blob always has its mime
                self._root.write_file(target.with_name(target.name + MIME_SUFFIX), blob.mime.encode())
            if self._root.fsync:
                with open(staged, "rb+") as file:
                    os.fsync(file.fileno())
            os.replace(staged, target)
            self._root.sync_dir(target.parent)

        await self._root.write(commit)

    async def _abort(self, upload_id: str) -> None:
        await self._root.read(lambda: self._root.remove(self._staged(upload_id)))

    async def _stat(self, sha256: str) -> BlobContent | None:
        def stat() -> BlobContent | None:
            path = self._path(sha256)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return None
            mime = read_text(self._root, path.with_name(path.name + MIME_SUFFIX))
            return BlobContent(sha256=sha256, size=size, mime=mime)

        return await self._root.read(stat)

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        def chunk() -> bytes | None:
            try:
                with open(self._path(sha256), "rb") as file:
                    file.seek(index * CHUNK_SIZE)
                    return file.read(CHUNK_SIZE)
            except FileNotFoundError:
                return None

        return await self._root.read(chunk)

    async def _delete(self, sha256: str) -> bool:
        def delete() -> bool:
            path = self._path(sha256)
            existed = self._root.remove(path)
            self._root.remove(path.with_name(path.name + MIME_SUFFIX))
            return existed

        return await self._root.write(delete)

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        def digests() -> list[str]:
            found: list[str] = []
            for prefix in sorted(self._root.names(self._dir)):
                if after is not None and prefix < after[:2]:
                    continue
                names = self._root.names(self._dir / prefix)
                found += sorted(n for n in names if _DIGEST_NAME.match(n) and (after is None or n > after))
                if limit is not None and len(found) >= limit:
                    break
            return take(found, limit)

        blobs = [await self._stat(sha) for sha in await self._root.read(digests)]
        return [b for b in blobs if b is not None]

    def drop_stale_uploads(self) -> int:
        """Remove staged uploads untouched for a day (left by a crashed writer); blocking."""
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        dropped = 0
        for name in self._root.names(self._dir, hidden=True):
            path = self._dir / name
            with contextlib.suppress(FileNotFoundError):
                if name.startswith(UPLOAD_PREFIX) and path.stat().st_mtime < cutoff:
                    dropped += self._root.remove(path)
        return dropped
