"""A loopback TCP proxy that can lose one answer: the "raised but applied" fault, on demand.

``arm(trigger)``: the next client chunk that contains ``trigger`` (a COMMIT, a request line) is
forwarded, the server's answers from then on are read until it has been quiet for ``SETTLE``
(so it has done the work: committed) and swallowed, and both sides of that connection are
closed. The client sees a dropped connection after its write landed.
Every other byte passes through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

SETTLE = 0.3  # seconds the swallowed answer may take to arrive whole


class DroppingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.dropped = 0  # answers swallowed so far
        self._trigger: bytes | None = None

    def arm(self, trigger: bytes) -> None:
        self._trigger = trigger

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        doomed = asyncio.Event()

        async def up() -> None:
            while chunk := await client_r.read(65536):
                if self._trigger is not None and self._trigger in chunk:
                    self._trigger = None
                    doomed.set()
                server_w.write(chunk)
                await server_w.drain()

        async def down() -> None:
            while chunk := await server_r.read(65536):
                if doomed.is_set():  # the triggering request is in: swallow until the server is quiet
                    with contextlib.suppress(asyncio.TimeoutError):
                        while await asyncio.wait_for(server_r.read(65536), SETTLE):
                            pass
                    self.dropped += 1
                    return
                client_w.write(chunk)
                await client_w.drain()

        pumps = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        with contextlib.suppress(ConnectionError):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for writer in (client_w, server_w):
            writer.close()


@asynccontextmanager
async def dropping_proxy(upstream_port: int) -> AsyncIterator[DroppingProxy]:
    """A :class:`DroppingProxy` listening on a free loopback port (``.port``) for the block."""
    proxy = DroppingProxy(upstream_port)
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
