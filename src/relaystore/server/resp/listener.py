"""The RESP listener: a TCP server speaking enough Redis for NeMo Relay, on an open store.

Each connection reads commands (pipelined commands arrive in one read), answers them in order and
writes the replies of one read together. A reply to a write is sent only once the store call that
made it has returned, i.e. after the backend committed; commands of different connections run
concurrently, so SQLite's group commit shares one commit among them.

A malformed frame or one over ``frame_limit`` bytes gets ``-ERR Protocol error…`` and that
connection is closed (others are untouched), as Redis does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

from relaystore.errors import Unauthorized
from relaystore.server.resp.mapping import KeySpace
from relaystore.server.resp.protocol import OK, Error, FrameError, FrameReader, encode
from relaystore.server.resp.session import QuitConnection, Session
from relaystore.server.revocation import RevocationCache
from relaystore.server.tokens import Principal, store_id, verify_token
from relaystore.stores import Store

log = logging.getLogger("relaystore.resp")
DEFAULT_PREFIX = "nemo_relay:"
DEFAULT_FRAME_LIMIT = 8 * 1024 * 1024
READ_SIZE = 64 * 1024


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:6380`` for IPv6) → (host, port); ValueError naming the form."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--resp takes HOST:PORT, e.g. 127.0.0.1:6380, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class TokenCheck:
    """Turns a Redis password into a :class:`Principal`: the admin token or an unrevoked
    adaptive token of this store (:func:`~relaystore.server.tokens.issue_adaptive_token`)."""

    def __init__(self, store: Store, store_url: str, admin_token: str, signing_key: str) -> None:
        self.store = store
        self.audience = store_id(store_url)
        self.admin_token = admin_token
        self.signing_key = signing_key
        self.revocations = RevocationCache()

    async def __call__(self, password: str) -> Principal:
        principal = verify_token(
            password, admin_token=self.admin_token, signing_key=self.signing_key, audience=self.audience
        )
        principal.require_tenant(None)
        if principal.token_id is not None and await self.revocations.is_revoked(
            self.store, principal.token_id
        ):
            raise Unauthorized("the token has been revoked")
        return principal


class RespListener:
    """Serves ``store`` over RESP on ``host:port`` (port 0: any free port; see :attr:`port`)."""

    def __init__(
        self,
        store: Store,
        check: TokenCheck,
        *,
        host: str = "127.0.0.1",
        port: int = 6380,
        prefix: str = DEFAULT_PREFIX,
        frame_limit: int = DEFAULT_FRAME_LIMIT,
    ) -> None:
        self.store = store
        self.check = check
        self.host, self.port = host, port
        self.keyspace = KeySpace(store, prefix)
        self.frame_limit = frame_limit
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._in_flight: set[asyncio.Future[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting, let commands in flight finish their replies, close every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # close() ends idle connections; asyncio would log a cancelled handler as an error
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self.keyspace, self.check)
        frames = FrameReader(self.frame_limit)
        while data := await reader.read(READ_SIZE):
            out = bytearray()
            try:
                for command in frames.feed(data):
                    out += encode(await self._run(session, command), session.proto)
            except FrameError as exc:
                writer.write(bytes(out) + encode(Error("ERR", str(exc)), session.proto))
                await writer.drain()
                return
            except QuitConnection:
                writer.write(bytes(out) + encode(OK, session.proto))
                await writer.drain()
                return
            writer.write(bytes(out))
            await writer.drain()

    async def _run(self, session: Session, command: list[bytes]) -> Any:
        """A command runs to its end even if the server is closing: :meth:`close` waits for it."""
        task = asyncio.ensure_future(session.execute(command))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)


@contextlib.asynccontextmanager
async def serving(
    store: Store, store_url: str, admin_token: str, signing_key: str, host: str, port: int, **options: Any
) -> AsyncIterator[RespListener]:
    """A started :class:`RespListener` on ``store``, closed when the block exits."""
    listener = RespListener(
        store, TokenCheck(store, store_url, admin_token, signing_key), host=host, port=port, **options
    )
    await listener.start()
    try:
        yield listener
    finally:
        await listener.close()


def attach(app: Any, host: str, port: int, **options: Any) -> None:
    """Run a RESP listener for the lifetime of the Starlette ``app`` from
    :func:`relaystore.server.create_app`, on the same (main) store."""
    inner = app.router.lifespan_context
    config = app.state.config

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            store = application.state.stores.main
            async with serving(
                store, config.store_url, config.admin_token, config.signing_key, host, port, **options
            ):
                yield state

    app.router.lifespan_context = lifespan


async def serve_alone(
    store_url: str, admin_token: str, signing_key: str, host: str, port: int, **options: Any
) -> None:
    """Open the store and serve RESP only, until SIGINT or SIGTERM; then close the store."""
    from relaystore.backends import open_backend

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    store = await open_backend(store_url)
    try:
        async with serving(store, store_url, admin_token, signing_key, host, port, **options):
            await stop.wait()
    finally:
        await store.close()
