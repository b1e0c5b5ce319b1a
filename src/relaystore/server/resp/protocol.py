"""RESP framing: client commands in (hiredis' reader), replies out (RESP2 or RESP3).

Requests are arrays of bulk strings (what every client library sends), parsed by
``hiredis.Reader``. A connection whose first byte is not ``*`` speaks *inline* commands instead
(``PING\\r\\n`` typed into telnet, as Redis accepts); hiredis reads only replies' framing, so
inline lines are split here. Replies follow the Redis protocol spec
(https://redis.io/docs/latest/develop/reference/protocol-spec/): RESP3 maps and nulls after
``HELLO 3``, their RESP2 forms (flat arrays, ``$-1``) before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hiredis

MAX_INLINE_BYTES = 64 * 1024  # as Redis' PROTO_INLINE_MAX_SIZE
MAX_ARGUMENTS = 1024 * 1024


class FrameError(Exception):
    """The client sent something that is not a RESP command; answer -ERR and close."""


@dataclass(frozen=True, slots=True)
class Simple:
    """A simple string reply (``+OK``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Error:
    """An error reply: ``code`` is the first word clients match on (ERR, NOPERM, WRONGPASS …)."""

    code: str
    message: str

    def line(self) -> str:
        return f"{self.code} {self.message}".replace("\r", " ").replace("\n", " ")


OK = Simple("OK")
QUEUED = Simple("QUEUED")


class FrameReader:
    """Splits a byte stream into commands (lists of bytes), refusing frames over ``max_bytes``.

    hiredis keeps a partial frame in its own buffer without telling its size, so the bytes fed
    since the last complete command stand in for it: a frame over ``max_bytes`` is noticed at
    most one read after it passes the limit, before it is held in full.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._reader: Any = hiredis.Reader()
        self._pending = 0
        self._inline: bool | None = None
        self._line = bytearray()

    def feed(self, data: bytes) -> Iterator[list[bytes]]:
        """The complete commands ``data`` finishes, in order; :class:`FrameError` on bad framing."""
        if self._inline is None and data:
            self._inline = data[:1] != b"*"
        if self._inline:
            yield from self._feed_inline(data)
            return
        self._reader.feed(data)
        self._pending += len(data)
        while True:
            try:
                frame = self._reader.gets()
            except hiredis.ProtocolError as exc:
                raise FrameError(f"Protocol error: {exc}") from None
            if frame is False:
                break
            self._pending = 0
            yield _command(frame)
        if self._pending > self.max_bytes:
            raise FrameError(f"Protocol error: a command over the {self.max_bytes}-byte limit")

    def _feed_inline(self, data: bytes) -> Iterator[list[bytes]]:
        self._line += data
        while (end := self._line.find(b"\n")) >= 0:
            line = bytes(self._line[:end]).rstrip(b"\r")
            del self._line[: end + 1]
            if line.strip():
                yield line.split()
        if len(self._line) > MAX_INLINE_BYTES:
            raise FrameError("Protocol error: too big inline request")


def _command(frame: Any) -> list[bytes]:
    if not isinstance(frame, list) or not frame:
        raise FrameError("Protocol error: expected an array of bulk strings")
    if len(frame) > MAX_ARGUMENTS or not all(isinstance(part, bytes) for part in frame):
        raise FrameError("Protocol error: expected an array of bulk strings")
    return frame


# --------------------------------------------------------------------------- replies


def encode(value: Any, proto: int) -> bytes:
    """The wire form of a reply value.

    ``Simple`` → ``+``, ``Error`` → ``-``, ``int`` → ``:``, ``bytes``/``str`` → bulk, ``None`` →
    null, ``list`` → array, ``dict`` → map (RESP3) or flat array (RESP2).
    """
    out = bytearray()
    _encode(value, proto, out)
    return bytes(out)


def _encode(value: Any, proto: int, out: bytearray) -> None:
    if isinstance(value, bytes):
        out += b"$%d\r\n%s\r\n" % (len(value), value)
    elif isinstance(value, str):
        _encode(value.encode(), proto, out)
    elif isinstance(value, Simple):
        out += b"+%s\r\n" % value.text.encode()
    elif isinstance(value, Error):
        out += b"-%s\r\n" % value.line().encode()
    elif isinstance(value, bool | int):
        out += b":%d\r\n" % value
    elif value is None:
        out += b"_\r\n" if proto == 3 else b"$-1\r\n"
    elif isinstance(value, list):
        out += b"*%d\r\n" % len(value)
        for item in value:
            _encode(item, proto, out)
    elif isinstance(value, dict):
        out += b"%%%d\r\n" % len(value) if proto == 3 else b"*%d\r\n" % (2 * len(value))
        for key, item in value.items():
            _encode(key, proto, out)
            _encode(item, proto, out)
    else:
        raise TypeError(f"no RESP form for {type(value).__name__}")
