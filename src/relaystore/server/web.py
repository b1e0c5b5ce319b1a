"""HTTP plumbing shared by every route: request context, bodies, errors and the route table type.

Every route is declared once as an :class:`Op`; the app builds its Starlette routes and its
OpenAPI document from the same list, so the document cannot drift from what is served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relaystore.errors import (
    CorruptRecord,
    InvalidInput,
    NotSupported,
    RelayStoreError,
    TooLarge,
    Unauthorized,
)
from relaystore.server.revocation import RevocationCache
from relaystore.server.tokens import Principal, store_id
from relaystore.stores import Store
from relaystore.stores._common import validate
from relaystore.wire import error_body, public_reason, status_of

log = logging.getLogger("relaystore.server")
noisy_log = logging.getLogger("relaystore.server.noisy")  # what a client can repeat at will: rate-limited

MiB = 1024 * 1024
DEFAULT_MEMORY_BUDGET = 96 * MiB
# A JSON body lives as bytes, then as decoded Python objects, then as a model: about 3 copies.
JSON_COPIES = 3
# A streamed upload holds about one 1 MiB chunk in flight plus the one being stored.
STREAM_RESERVE = 2 * MiB
HEADER_OWNER = "headers"  # the budget's owner of every unfinished header block
HEADER_SHARE = 0.125  # the part of the budget kept for unfinished headers
DEFAULT_BODY_TIMEOUT = 10.0  # seconds a request body may send nothing before it is cut with 408
DRAIN_LIMIT = 64 * MiB  # bytes read and dropped after a 413, so the client gets to read the answer

DEFAULT_PAGE = 100  # items in a listing that names no limit
MAX_PAGE = 1000  # a larger limit is cut to this; next_cursor gives the rest
MAX_JSON_DEPTH = 100  # arrays and objects nested deeper are refused (422), never a RecursionError

Access = Literal["public", "token", "agent", "admin"]


# --------------------------------------------------------------------------- JSON in


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not JSON: numbers must be finite")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InvalidInput(f"{text[:40]} is out of range: numbers must be finite")
    return value


def strict_json(raw: bytes | str, what: str) -> Any:
    """Parse JSON as RFC 8259 has it: no ``NaN``/``Infinity``, no number that overflows to
    infinity, and at most :data:`MAX_JSON_DEPTH` levels of nesting. :class:`InvalidInput` else."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise InvalidInput(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} is not JSON: {exc}") from None
    check_depth(value, what)
    return value


def check_depth(value: Any, what: str) -> None:
    """Refuse ``value`` if its arrays and objects nest deeper than :data:`MAX_JSON_DEPTH` (walked
    with a stack, not recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > MAX_JSON_DEPTH:
                    raise InvalidInput(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
                stack.append((child, depth + 1))


class ByteBudget:
    """Bytes of request data the server may hold at once, shared by all requests.

    A request reserves its worst case in one step before it reads anything, and gives it back
    when it ends. All-or-nothing reservations cannot deadlock (nobody waits holding a part), and a
    request that waits simply does not read its socket, so TCP backpressure holds its client.

    Each *owner* (one token) may hold at most ``share`` × ``total`` at once, so one token's
    stalled bodies leave the rest of the budget to the others. Unfinished request headers are
    counted too, in a slice of their own (``header_share`` × ``total``), without waiting
    (:meth:`try_take`): a connection whose headers do not fit is refused instead of queued.
    """

    def __init__(self, total: int, share: float = 0.5, header_share: float = HEADER_SHARE) -> None:
        if not 0 < share <= 1:
            raise InvalidInput(f"a token's share of the memory budget is in (0, 1], got {share}")
        self.total = total
        self.free = total
        self.per_owner = max(1, int(total * share))
        # Unfinished headers have a slice of their own that bodies never take, so stalled bodies
        # cannot lock every new connection out, nor header floods every body.
        self.header_slice = max(1, int(total * header_share))
        self.per_owner = min(self.per_owner, total - self.header_slice)
        self.held: dict[str, int] = {}
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def _fits(self, owner: str, size: int) -> bool:
        held = self.held.get(owner, 0)
        if owner == HEADER_OWNER:
            return self.free >= size and held + size <= self.header_slice
        header_room = self.header_slice - self.held.get(HEADER_OWNER, 0)
        return self.free - header_room >= size and held + size <= self.per_owner

    def _take(self, owner: str, size: int) -> None:
        self.free -= size
        self.held[owner] = self.held.get(owner, 0) + size

    async def reserve(self, size: int, owner: str = "") -> int:
        """Wait until ``size`` bytes (at most the owner's share) are free and take them."""
        size = min(size, self.per_owner)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (owner, size, waiter)
        self._waiters.append(entry)
        self._grant()  # at once, unless the budget is short and others wait for it first
        try:
            await waiter
        except BaseException:
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif waiter.done() and not waiter.cancelled():
                self.give(size, owner)  # granted just as we were cancelled: hand it back
            raise
        return size

    def try_take(self, size: int, owner: str = "") -> bool:
        """Take ``size`` bytes now if they fit (never waits); True if taken."""
        if not self._fits(owner, size):
            return False
        self._take(owner, size)
        return True

    def give(self, size: int, owner: str = "") -> None:
        """Give back ``size`` bytes taken by ``owner`` and wake the waiters that now fit."""
        if not size:
            return
        self.free += size
        left = self.held.get(owner, 0) - size
        if left > 0:
            self.held[owner] = left
        else:
            self.held.pop(owner, None)
        self._grant()

    def _grant(self) -> None:
        # Waiters are served in order, except that one over its owner's share does not hold up
        # others: that is what the share is for.
        for entry in list(self._waiters):
            owner, size, waiter = entry
            if waiter.done():
                self._waiters.remove(entry)
            elif self._fits(owner, size):
                self._waiters.remove(entry)
                self._take(owner, size)
                waiter.set_result(None)
            elif self.free < size:
                return

    async def release(self, size: int, owner: str = "") -> None:
        self.give(size, owner)


@dataclass(frozen=True)
class ServerConfig:
    """Limits and policies of one server (see ``relaystore serve --help``)."""

    admin_token: str
    signing_key: str
    body_limit: int = 8 * MiB
    blob_limit: int = 4096 * MiB
    file_roots: tuple[Path, ...] = ()
    budget: ByteBudget = field(default_factory=lambda: ByteBudget(DEFAULT_MEMORY_BUDGET))
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    store_url: str = ""
    tenant_url: str | None = None
    revocations: RevocationCache = field(default_factory=RevocationCache)

    def audience(self, tenant: str | None) -> str:
        """The store id agent tokens must name (``aud``): the main store's, for tenants too (a
        tenant token is bound to its tenant by its ``ten`` claim besides)."""
        return self._store_id

    @cached_property
    def _store_id(self) -> str:  # parsed once: it is asked on every request
        return store_id(self.store_url)


class HttpError(Exception):
    """An answer that no relaystore error names (416, 412 on a conditional request)."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


class ClientGone(Exception):
    """The client disconnected before sending its whole body."""


# --------------------------------------------------------------------------- errors → responses

_SERVER_PATH = re.compile(r"(?:/[^/\s'\"]+){1,}/(?=[^/\s'\"]+)")


def scrub_paths(text: str) -> str:
    """``text`` with the directories of every absolute path cut to ``…/`` (the last part, often
    a record id, is kept): answers never show where the server keeps its files."""
    return _SERVER_PATH.sub("…/", text)


def error_response(exc: BaseException) -> Response:
    """The JSON answer to a failed call: ``{"error": "<ExceptionClass>", "detail": "..."}``.

    A server-side failure (5xx) is logged with its traceback, and its answer has no server paths.
    """
    if isinstance(exc, HttpError):
        return JSONResponse(error_body(exc.error, exc.detail), exc.status, headers=exc.headers)
    if isinstance(exc, RelayStoreError):
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status < 500:
            return JSONResponse(error_body(type(exc).__name__, str(exc)), status, headers=headers)
        if isinstance(exc, NotSupported):  # the caller's request, not a failure: nothing to log
            return JSONResponse(
                error_body("NotSupported", str(exc), backend=exc.backend, capability=exc.capability), 501
            )
        if status == 500:
            log.error("%s: %s", type(exc).__name__, exc, exc_info=exc)
        else:  # 503: the database is away; one line each, rate-limited
            noisy_log.warning("%s: %s", type(exc).__name__, exc)
        if isinstance(exc, CorruptRecord):  # the decoder's message may quote the record: a phrase
            key, reason = scrub_paths(exc.key), public_reason(exc.reason)
            body = error_body("CorruptRecord", f"corrupt record {key}: {reason}", key=key, reason=reason)
            return JSONResponse(body, status)
        return JSONResponse(error_body(type(exc).__name__, scrub_paths(str(exc))), status)
    log.error("unexpected error", exc_info=exc)  # a bug: keep the trace in the log, not the reply
    return JSONResponse(error_body("InternalError", "the server failed; see its log"), 500)


# --------------------------------------------------------------------------- one call


@dataclass
class Call:
    """What a route handler gets: the request, who sent it, its store and the server's config."""

    request: Request
    principal: Principal
    store: Store
    config: ServerConfig
    tenant: str | None
    body_finished: bool = field(default=False)
    reserved: int = field(default=0)

    # ---------------------------------------------------------------- parameters

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def need(self, name: str) -> str:
        value = self.query(name)
        if value is None:
            raise InvalidInput(f"query parameter {name!r} is required")
        return value

    def integer(self, name: str) -> int | None:
        raw = self.query(name)
        return None if raw is None else self._int(name, raw)

    def need_int(self, name: str) -> int:
        return self._int(name, self.need(name))

    @staticmethod
    def _int(name: str, raw: str) -> int:
        try:
            return int(raw)
        except ValueError:
            raise InvalidInput(f"query parameter {name!r} must be an integer, got {raw!r}") from None

    def flag(self, name: str, *, default: bool = False) -> bool:
        raw = (self.query(name) or str(default)).lower()
        if raw not in {"true", "false", "1", "0"}:
            raise InvalidInput(f"query parameter {name!r} must be true or false, got {raw!r}")
        return raw in {"true", "1"}

    def page_args(self) -> dict[str, Any]:
        """``limit`` (default :data:`DEFAULT_PAGE`, at most :data:`MAX_PAGE`) and ``cursor``: a
        listing never builds more than one bounded page in memory."""
        limit = self.integer("limit")
        limit = DEFAULT_PAGE if limit is None else min(limit, MAX_PAGE)
        return {"limit": limit, "cursor": self.query("cursor")}

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    # ---------------------------------------------------------------- bodies

    async def chunks(self, limit: int, reserve: int = STREAM_RESERVE) -> AsyncIterator[bytes]:
        """The request body as it arrives; :class:`TooLarge` once it passes ``limit`` bytes.

        Counts what arrives rather than trusting ``Content-Length`` (which may be absent or lie).
        Before reading, it reserves ``reserve`` bytes of the server's memory budget, from its
        token's share, for the rest of the request (see :meth:`release`). A body that sends
        nothing for ``body_timeout`` seconds is cut: :class:`HttpError` 408.
        """
        declared = self.request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"the body is {declared} bytes; the limit is {limit}")
        self.reserved += await self.config.budget.reserve(reserve, self.principal.budget_key)
        size = 0
        while not self.body_finished:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            self.body_finished = not message.get("more_body", False)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the body is over the limit of {limit} bytes")
            if chunk:
                yield chunk

    async def _receive(self) -> Any:
        try:
            return await asyncio.wait_for(self.request.receive(), self.config.body_timeout)
        except TimeoutError:
            raise HttpError(
                408,
                "RequestTimeout",
                f"the body sent nothing for {self.config.body_timeout:g} s",
                {"Connection": "close"},
            ) from None

    async def body(self) -> bytes:
        limit = self.config.body_limit
        declared = self.request.headers.get("content-length", "")
        expected = min(int(declared), limit) if declared.isascii() and declared.isdigit() else limit
        chunks = self.chunks(limit, reserve=JSON_COPIES * expected)
        return b"".join([chunk async for chunk in chunks])

    async def release(self) -> None:
        """Give back what this request reserved of the memory budget (at its end)."""
        self.config.budget.give(self.reserved, self.principal.budget_key)
        self.reserved = 0

    async def json(self) -> Any:
        return strict_json(await self.body(), "the body")

    async def parse(self, adapter: TypeAdapter[Any], what: str) -> Any:
        return validate(adapter, await self.json(), what)

    async def drain(self) -> None:
        """Read and drop what is left of the body (bounded), so a 413 reaches the client."""
        dropped = 0
        while not self.body_finished and dropped < DRAIN_LIMIT:
            try:
                message = await self._receive()
            except HttpError:
                return
            if message["type"] == "http.disconnect":
                return
            self.body_finished = not message.get("more_body", False)
            dropped += len(message.get("body", b""))


# --------------------------------------------------------------------------- responses


def dump(value: Any) -> Any:
    """JSON-ready form of a model, a list of models or a plain value."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


def reply(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(dump(value), status, headers=headers)


def page_reply(page: Any) -> Response:
    """A listing: ``{"items": [...], "next_cursor": str | null}``, plus ``"warnings"`` naming the
    corrupt records the store skipped (so a remote caller can log them as a local one would)."""
    return reply(with_warnings({"items": dump(list(page)), "next_cursor": page.next_cursor}))


def with_warnings(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` plus ``"warnings"`` (one line each) and ``"corrupt"`` (``[{"key", "reason"}]``)
    for the corrupt records the store skipped while answering; neither quotes a record's text."""
    if warnings := _warnings.get():
        body["warnings"] = [w for w, _ in warnings]
        corrupt = [c for _, c in warnings if c is not None]
        if corrupt:
            body["corrupt"] = corrupt
    return body


# --------------------------------------------------------------------------- request scope

ROUTE_KEY = "relaystore.route"  # the route template, for metrics and logs
STORE_KEY = "relaystore.store"  # a coroutine function opening the request's store
TENANT_KEY = "relaystore.tenant"  # the tenant name under --tenant-url, else absent


async def refuse_revoked(jti: str, store: Store, tenant: str | None, config: ServerConfig) -> None:
    """401 for an agent token on the store's deny-list (``relaystore token revoke``)."""
    if await config.revocations.is_revoked(store, jti, tenant):
        raise Unauthorized("the token has been revoked")


# --------------------------------------------------------------------------- store warnings

_warnings: ContextVar[list[tuple[str, dict[str, str] | None]] | None] = ContextVar(
    "relaystore_server_warnings", default=None
)


class _WarningCollector(logging.Handler):
    """Copies warnings of the ``relaystore`` logger into the current request's list, if any: a
    skipped corrupt record as its key and a fixed reason (the log keeps the decoder's words)."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _warnings.get()
        if sink is None or record.levelno < logging.WARNING or record.name != "relaystore":
            return
        args = record.args if isinstance(record.args, tuple) else ()
        found = next((a for a in args if isinstance(a, CorruptRecord)), None)
        if found is None:
            sink.append((scrub_paths(record.getMessage()), None))
            return
        key, reason = scrub_paths(found.key), public_reason(found.reason)
        sink.append((f"skipping corrupt record {key}: {reason}", {"key": key, "reason": reason}))


def collect_warnings() -> None:
    """Start collecting store warnings for the current request (called once per request)."""
    _warnings.set([])


logging.getLogger("relaystore").addHandler(_WarningCollector())


# --------------------------------------------------------------------------- the route table


@dataclass(frozen=True)
class Param:
    """A query, path or header parameter as OpenAPI describes it."""

    name: str
    schema: dict[str, Any]
    required: bool = False
    where: Literal["query", "path", "header"] = "query"
    description: str = ""


@dataclass(frozen=True)
class Op:
    """One route: method, path, handler, who may call it, and its OpenAPI description.

    ``request`` and ``responses`` map a media type to a JSON schema (``$ref`` into the
    components); ``responses`` is keyed by status code. Every route also answers errors as
    ``{"error", "detail"}`` (OpenAPI ``default``).
    """

    method: str
    path: str
    handler: Callable[[Call], Awaitable[Response]]
    summary: str
    access: Access = "admin"
    params: tuple[Param, ...] = ()
    request: dict[str, Any] | None = None
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)
    tag: str = "server"
    query_token: bool = False  # may the token come as ?token= (only where no header can be set)
