"""The blob contract: large content kept by the backend, addressed by its SHA-256.

A blob is written once and never changes; writing the same bytes again stores nothing new
(deduplication). Outputs refer to a blob with a ``BlobContent`` ContentRef (``kind: "blob"``,
``sha256``, ``size``, ``mime``), which is exactly what :meth:`BlobStore.put` returns.

Content is streamed in fixed-size chunks (:data:`CHUNK_SIZE`, 1 MiB), so neither an upload nor a
ranged download ever holds a whole blob in memory. The contract does the hashing, the chunking and
the range arithmetic once; a backend only stores and returns numbered chunks:

- an upload writes chunks under a private upload id (``_put_chunk``), then ``_commit`` publishes
  them under the digest atomically, or drops them if that digest is already stored;
- a read fetches chunk ``i`` of a digest (``_chunk``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Generator, Sequence
from typing import Any

from pydantic import ValidationError

from relaystore.errors import BlobNotFound, CorruptRecord, InvalidInput
from relaystore.models.common import Page
from relaystore.models.outputs import BlobContent
from relaystore.stores._common import (
    Skipped,
    check_limit,
    decode_key_cursor,
    fetch_size,
    make_page,
    summarize,
)

CHUNK_SIZE = 1024 * 1024
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def check_digest(sha256: object) -> str:
    if not isinstance(sha256, str) or not _DIGEST.match(sha256):
        raise InvalidInput(f"a blob digest is 64 lowercase hex digits (SHA-256), got {sha256!r}")
    return sha256


async def _rechunk(data: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Yield exactly CHUNK_SIZE pieces (the last may be shorter) from bytes or a byte stream."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])
        return
    pending = bytearray()
    async for piece in data:
        if not isinstance(piece, bytes | bytearray | memoryview):
            raise InvalidInput(f"a blob stream must yield bytes, got {type(piece).__name__}")
        pending += piece
        while len(pending) >= CHUNK_SIZE:
            yield bytes(pending[:CHUNK_SIZE])
            del pending[:CHUNK_SIZE]
    if pending:
        yield bytes(pending)


class BlobStream(AsyncIterator[bytes]):
    """What :meth:`BlobStore.read` returns: an async iterator of chunks that can also be awaited.

    Awaiting it runs the checks (the blob exists, the range fits) and returns the stream itself;
    iterating without awaiting runs them at the first chunk.
    """

    def __init__(self, blobs: BlobStore, sha256: str, start: int, end: int | None) -> None:
        self._blobs, self._args = blobs, (sha256, start, end)
        self._chunks: AsyncIterator[bytes] | None = None

    async def _open(self) -> BlobStream:
        if self._chunks is None:
            self._chunks = await self._blobs._checked(*self._args)
        return self

    def __await__(self) -> Generator[Any, None, BlobStream]:
        return self._open().__await__()

    async def __anext__(self) -> bytes:
        if self._chunks is None:
            await self._open()
        assert self._chunks is not None
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        """Stop reading early (closes the underlying chunk generator)."""
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


def stored_blob(sha256: str, size: object, mime: object, where: str) -> BlobContent:
    """A blob's stored metadata as :class:`BlobContent`; :class:`CorruptRecord` naming ``where``
    when it is not that (a mime that is not UTF-8 text, a size that is no count)."""
    try:
        return BlobContent(sha256=sha256, size=size, mime=mime)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise CorruptRecord(where, summarize(exc)) from exc


class BlobStore(ABC):
    """Content-addressed, deduplicated blobs with ranged reads. All methods are coroutines."""

    async def put(
        self,
        data: bytes | AsyncIterable[bytes],
        *,
        mime: str | None = None,
        max_size: int | None = None,
        expected_sha256: str | None = None,
    ) -> BlobContent:
        """Store ``data`` (bytes or an async stream of bytes) and return its ContentRef.

        ``max_size`` (bytes) aborts an upload that grows past it with :class:`InvalidInput`;
        ``expected_sha256`` rejects content whose digest differs. Nothing is kept on failure.
        """
        if expected_sha256 is not None:
            check_digest(expected_sha256)
        upload_id = secrets.token_hex(16)
        digest, size, index = hashlib.sha256(), 0, 0
        try:
            await self._begin(upload_id, mime)
            async for chunk in _rechunk(data):
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise InvalidInput(f"blob is larger than the limit of {max_size} bytes")
                digest.update(chunk)
                await self._put_chunk(upload_id, index, chunk)
                index += 1
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and sha256 != expected_sha256:
                raise InvalidInput(f"content has SHA-256 {sha256}, not the expected {expected_sha256}")
            blob = BlobContent(sha256=sha256, size=size, mime=mime)
            await self._commit(upload_id, blob, index)
            return blob
        except BaseException:
            await self._abort(upload_id)
            raise

    async def stat(self, sha256: str) -> BlobContent:
        """Size and mime type of a stored blob; :class:`BlobNotFound` if absent."""
        found = await self._stat(check_digest(sha256))
        if found is None:
            raise BlobNotFound(sha256)
        return found

    async def exists(self, sha256: str) -> bool:
        return await self._stat(check_digest(sha256)) is not None

    async def get(self, sha256: str) -> bytes:
        """The whole blob in memory (use :meth:`read` for large ones)."""
        return b"".join([chunk async for chunk in self.read(sha256)])

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> BlobStream:
        """Stream bytes ``[start, end)`` of a blob (``end`` None means to the end).

        Use it directly, ``async for chunk in blobs.read(sha)``, or await it first,
        ``stream = await blobs.read(sha, 0, 10)``, to have the checks done before the first byte
        is wanted (the server does, to answer 404 before its headers). Raises
        :class:`BlobNotFound`, or :class:`InvalidInput` for a range outside the blob; chunks are
        at most :data:`CHUNK_SIZE` bytes.
        """
        return BlobStream(self, sha256, start, end)

    async def _checked(self, sha256: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        blob = await self.stat(sha256)
        end = blob.size if end is None else end
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= blob.size):
            raise InvalidInput(f"range [{start}, {end}) is outside the blob's {blob.size} bytes")
        return self._stream(sha256, start, end)

    async def _stream(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        for index in range(start // CHUNK_SIZE, (end + CHUNK_SIZE - 1) // CHUNK_SIZE):
            chunk = await self._chunk(sha256, index)
            if chunk is None:
                raise BlobNotFound(f"{sha256} (deleted while being read)")
            base = index * CHUNK_SIZE
            yield chunk[max(start - base, 0) : end - base]

    async def delete(self, sha256: str) -> bool:
        """Delete a blob; return whether it existed. Outputs that refer to it keep the ref."""
        return await self._delete(check_digest(sha256))

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[BlobContent]:
        """Stored blobs sorted by digest; one whose metadata is corrupt is skipped with a warning
        (its own :meth:`stat` raises :class:`~relaystore.errors.CorruptRecord`)."""
        limit = check_limit(limit)
        blobs = await self._list(decode_key_cursor(cursor), fetch_size(limit))
        rows: list[tuple[str, Any]] = [(b.seq if isinstance(b, Skipped) else b.sha256, b) for b in blobs]
        return make_page(rows, limit)

    # ------------------------------------------------------------------ backend primitives

    async def _begin(self, upload_id: str, mime: str | None) -> None:  # noqa: B027 (optional hook)
        """Called once before the first chunk of an upload. Does nothing unless a backend needs the
        upload's mime type up front (the ``http://`` backend opens its streamed request here)."""

    @abstractmethod
    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        """Stage chunk ``index`` (0-based, in order) of an unfinished upload."""

    @abstractmethod
    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        """Atomically publish the staged chunks as ``blob``, or drop them if it already exists."""

    @abstractmethod
    async def _abort(self, upload_id: str) -> None:
        """Drop whatever was staged for the upload (it may be nothing)."""

    @abstractmethod
    async def _stat(self, sha256: str) -> BlobContent | None: ...

    @abstractmethod
    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        """Chunk ``index`` of a stored blob, or None if the blob is gone."""

    @abstractmethod
    async def _delete(self, sha256: str) -> bool: ...

    @abstractmethod
    async def _list(self, after: str | None, limit: int | None) -> Sequence[BlobContent | Skipped]:
        """Blobs with digest > ``after``, sorted; a corrupt one is a :class:`Skipped` at its digest."""
