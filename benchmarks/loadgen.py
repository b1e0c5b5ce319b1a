"""A lean HTTP/1.1 load client: one kept-alive connection, prebuilt request heads, Content-Length bodies.

The benchmark clients share two cores with the servers they measure; httpx costs more CPU per
request than the server under test, so with it a server-vs-server ratio mostly measures the
client. This one writes a request in one ``write`` and reads the answer with two ``readuntil``/
``readexactly`` calls, so nearly all the time per request is the server's. It speaks only what
the benchmark routes answer: a status line, headers, a ``Content-Length`` body.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class LeanClient:
    """``async with LeanClient(host, port, token) as c: status, body = await c.post("/v1/x", data)``."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self._auth = f"Authorization: Bearer {token}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> LeanClient:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` as JSON; (status, answer body)."""
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        length = f"Content-Length: {len(body)}\r\n\r\n".encode()
        return await self._exchange(head.encode() + self._auth + length + body)

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET ``path``; (status, answer body)."""
        return await self._exchange(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n".encode() + self._auth + b"\r\n"
        )

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None, "use LeanClient in async with"
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"answer without Content-Length: {head[:200]!r}")
        return status, await self._reader.readexactly(length)
