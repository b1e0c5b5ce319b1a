"""Blobs over HTTP: an upload is one streamed request (chunks flow through a small queue, so memory
stays bounded); a chunk read is one ``Range`` request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from relaystore import wire
from relaystore.backends.http.client import Client, after_key
from relaystore.errors import BackendUnavailable
from relaystore.models.outputs import BlobContent
from relaystore.stores.blobs import CHUNK_SIZE, BlobStore


class _Upload:
    """One streamed upload: chunks go into a bounded queue that the request body drains."""

    def __init__(self, client: Client, mime: str | None) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
        headers = {"Content-Type": mime} if mime else {}
        self.task = asyncio.create_task(
            client.send("POST", wire.BLOBS, content=self._body(), headers=headers)
        )

    async def _body(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    async def put(self, item: bytes | None) -> None:
        """Queue ``item``, or raise what ended the request early (e.g. a 413)."""
        putting = asyncio.ensure_future(self.queue.put(item))
        done, _ = await asyncio.wait({putting, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if putting not in done:
            putting.cancel()
            self.task.result()  # raises the request's error
            raise BackendUnavailable("the server ended the upload early")


class HttpBlobStore(BlobStore):
    def __init__(self, client: Client) -> None:
        self._c = client
        self._uploads: dict[str, _Upload] = {}

    async def _begin(self, upload_id: str, mime: str | None) -> None:
        self._uploads[upload_id] = _Upload(self._c, mime)

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        await self._uploads[upload_id].put(data)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        upload = self._uploads.pop(upload_id)
        await upload.put(None)
        response = await upload.task
        assert response is not None
        stored = BlobContent.model_validate(response.json())
        if (stored.sha256, stored.size) != (blob.sha256, blob.size):
            raise BackendUnavailable(
                f"the server stored {stored.sha256} ({stored.size} B), not {blob.sha256}"
            )

    async def _abort(self, upload_id: str) -> None:
        upload = self._uploads.pop(upload_id, None)
        if upload is not None and not upload.task.done():
            upload.task.cancel()  # the cut connection makes the server drop its staged chunks
            await asyncio.gather(upload.task, return_exceptions=True)

    async def _stat(self, sha256: str) -> BlobContent | None:
        response = await self._c.send("GET", wire.BLOB_STAT.format(sha256=sha256), missing=True)
        return None if response is None else BlobContent.model_validate(response.json())

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        first = index * CHUNK_SIZE
        headers = {"Range": f"bytes={first}-{first + CHUNK_SIZE - 1}"}
        response = await self._c.send("GET", wire.BLOB.format(sha256=sha256), headers=headers, missing=True)
        return None if response is None else response.content

    async def _delete(self, sha256: str) -> bool:
        return bool((await self._c.json("DELETE", wire.BLOB.format(sha256=sha256)))["deleted"])

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        items = await self._c.rows(wire.BLOBS, {}, after_key(after), limit)
        return [BlobContent.model_validate(item) for item in items]
