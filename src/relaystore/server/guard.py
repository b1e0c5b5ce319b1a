"""Connection-level defences of ``relaystore serve``: what uvicorn's own settings do not cover.

uvicorn bounds keep-alive idleness (``timeout_keep_alive``) and the size of unfinished headers
(``h11_max_incomplete_event_size``), but a connection that never finishes its headers never times
out, any number of connections is accepted, and unfinished headers are not counted anywhere. The
protocol built by :func:`guarded_protocol` adds, per connection:

- a **header timeout**: headers must be complete within ``header_timeout`` seconds of the
  connection opening (or of the first byte of the next request on a kept-alive one), else
  ``408`` and close;
- a **connection cap**: past ``max_connections`` open connections a new one is answered ``503``
  and closed at once, before anything is read;
- **header bytes in the memory budget**: bytes of unfinished headers are taken from the server's
  :class:`~relaystore.server.web.ByteBudget` (never waiting); a connection whose headers do not
  fit is answered ``503`` and closed.

:class:`RateLimitedLog` keeps a flood of identical warnings (accept errors, refused
connections, malformed requests) from filling the disk.
"""

from __future__ import annotations

import asyncio
import logging
import re
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from relaystore.server.web import HEADER_OWNER, ByteBudget

log = logging.getLogger("relaystore.server.noisy")
FD_RESERVE = 64  # descriptors kept free for the store, logs and the listening socket


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits of a server (see ``relaystore serve --help``)."""

    max_connections: int = 1000
    header_timeout: float = 10.0
    header_limit: int = 64 * 1024
    budget: ByteBudget | None = None


def _raw_answer(status: int, reason: str) -> bytes:
    body = f'{{"error": "HTTPError", "detail": "{reason}"}}'
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return f"{head}content-length: {len(body)}\r\n\r\n{body}".encode()


class CoalescedWrites:
    """A transport proxy: the writes of one event-loop step leave in one ``send``.

    uvicorn writes a response's head and its body separately; on loopback each ``send`` also
    pays the receiver's wake-up, and it was the largest single cost of a small answer. Everything
    but ``write`` and ``close`` goes to the real transport (flow control included).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, a connection cap and counted headers."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            log.warning("refused a connection: %d are open already", self.limits.max_connections)
            self._refuse(503, "Service Unavailable")
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting = self.conn.their_state is h11.IDLE
        if waiting and not self._count_header_bytes(len(data)):
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_timer()  # a partial request after keep-alive: its headers are timed too
        else:
            self._headers_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # the keep-alive timer now guards the idle connection; the header timer restarts with data
        self._headers_done()

    # ---------------------------------------------------------------- helpers

    def _count_header_bytes(self, size: int) -> bool:
        # Headers never exceed header_limit (h11 refuses more), so the start of a body that
        # arrives in the same read is not counted as headers.
        size = max(0, min(size, self.limits.header_limit - self._header_bytes))
        budget = self.limits.budget
        if budget is not None and size and not budget.try_take(size, HEADER_OWNER):
            log.warning("refused a connection: unfinished headers do not fit in the memory budget")
            self._refuse(503, "Service Unavailable")
            return False
        self._header_bytes += size
        return True

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)

    def _headers_done(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._header_bytes and self.limits.budget is not None:
            self.limits.budget.give(self._header_bytes, HEADER_OWNER)
        self._header_bytes = 0

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._refuse(408, "Request Timeout")

    def _refuse(self, status: int, reason: str) -> None:
        if self.conn.our_state is h11.IDLE:
            self.transport.write(_raw_answer(status, reason))
        self.transport.close()
        self._headers_done()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` subclass bound to ``limits`` (uvicorn's ``http=`` takes a class)."""
    return type("RelayGuardedProtocol", (GuardedProtocol,), {"limits": limits})


def raise_fd_limit(max_connections: int) -> int:
    """Raise the open-files soft limit towards the hard one; return the connection cap that fits.

    Running out of descriptors turns every accept into an error, so the cap stays
    :data:`FD_RESERVE` below the limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - FD_RESERVE))


# --------------------------------------------------------------------------- log flood


class RateLimitedLog(logging.Filter):
    """Lets through at most ``burst`` records of one message template per ``window`` seconds.

    The first record past the limit is replaced by one saying that more were dropped; the count
    of dropped records is reported when the template passes again.
    """

    def __init__(self, burst: int = 10, window: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._seen: dict[tuple[str, str], tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        started, count, dropped = self._seen.get(key, (now, 0, 0))
        if now - started >= self.window:
            if dropped:
                record.msg = f"{record.msg} ({dropped} similar messages dropped)"
            started, count, dropped = now, 0, 0
        count += 1
        passes = count <= self.burst
        self._seen[key] = (started, count, dropped + (not passes))
        if len(self._seen) > 1024:  # bounded even when messages are all different
            self._seen.clear()
        return passes


# Not the access log: its volume follows the request rate, and every line shares one template.
# Nor 500s ("relaystore.server"): each is a bug and is logged with its traceback.
FLOODABLE_LOGGERS = ("asyncio", "uvicorn.error", "relaystore.server.noisy")


def rate_limit_logs(burst: int = 10, window: float = 10.0) -> RateLimitedLog:
    """Attach one :class:`RateLimitedLog` to every logger a hostile client can make talk."""
    limiter = RateLimitedLog(burst, window)
    for name in FLOODABLE_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    return limiter


def log_to_stderr(level: str) -> None:
    """Send the ``relaystore`` loggers (500s with their traceback, refused connections, skipped
    corrupt records) to stderr beside uvicorn's own lines.

    The logger has a handler already (the per-request warning collector), so without one of
    its own Python's last-resort handler would never print them.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    handler.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else logging.INFO)
    logging.getLogger("relaystore").addHandler(handler)


# --------------------------------------------------------------------------- tokens in the access log

_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&#\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced by ``REDACTED``."""
    return _TOKEN_IN_QUERY.sub(r"\1REDACTED", text)


class RedactTokens(logging.Filter):
    """Removes ``?token=`` values from access-log lines (uvicorn logs the full path and query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact_access_log() -> None:
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())


__all__ = [
    "ConnectionLimits",
    "GuardedProtocol",
    "RateLimitedLog",
    "RedactTokens",
    "guarded_protocol",
    "log_to_stderr",
    "raise_fd_limit",
    "rate_limit_logs",
    "redact",
    "redact_access_log",
]
