"""One RESP connection's state and its connection commands: AUTH, HELLO, SELECT, CLIENT, QUIT and
MULTI / EXEC / DISCARD.

Before authentication only AUTH, HELLO and QUIT are answered (``-NOAUTH`` otherwise), as Redis
does with ``requirepass``. A transaction is validated whole at EXEC (keys, scope, values) and
then applied; it may change one thing, so that every EXEC is one store transaction (docs/resp.md).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from relaystore.errors import BackendUnavailable, Forbidden, RelayStoreError, Unauthorized
from relaystore.server.resp.commands import SERVER_VERSION, arity_error, may_use, prepare, word
from relaystore.server.resp.mapping import Key, KeySpace, WrongType
from relaystore.server.resp.protocol import OK, QUEUED, Error
from relaystore.server.tokens import Principal

log = logging.getLogger("relaystore.resp")
Authenticate = Callable[[str], Awaitable[Principal]]
_CLIENT_IDS = itertools.count(1)


class QuitConnection(Exception):
    """Raised after QUIT's +OK has been queued: the listener closes the connection."""


@dataclass
class Session:
    """One connection: protocol version, who authenticated, and an open MULTI."""

    keyspace: KeySpace
    authenticate: Authenticate
    proto: int = 2
    principal: Principal | None = None
    name: bytes | None = None
    queue: list[tuple[str, list[bytes]]] | None = None
    queue_error: Error | None = None

    def __post_init__(self) -> None:
        self.client_id = next(_CLIENT_IDS)

    async def execute(self, command: list[bytes]) -> Any:
        """The reply to one command (a reply value of :func:`protocol.encode`). Every failure is
        a reply; only QUIT raises (:class:`QuitConnection`)."""
        name = command[0].decode("utf-8", "replace").lower()
        try:
            return await self._execute(name, command[1:])
        except QuitConnection:
            raise
        except Exception as exc:
            return error_reply(exc)

    async def _execute(self, name: str, args: list[bytes]) -> Any:
        if name in ("auth", "hello", "quit"):
            return await CONNECTION[name](self, args)
        if self.principal is None:
            return Error("NOAUTH", "Authentication required.")
        if self.queue is not None and name not in ("exec", "discard", "multi"):
            return self._enqueue(name, args)
        if name in CONNECTION:
            problem = arity_error(name, args)
            return problem or await CONNECTION[name](self, args)
        step = await prepare(self, name, args, set())
        return await step.run()

    def _enqueue(self, name: str, args: list[bytes]) -> Any:
        assert self.queue is not None
        problem = arity_error(name, args)
        if problem is None and name in CONNECTION:
            problem = Error("ERR", f"'{name}' is not allowed inside MULTI")
        if problem is not None:
            self.queue_error = problem
            return problem
        self.queue.append((name, args))
        return QUEUED

    def check(self, key: Key) -> Key:
        """``key`` if this connection's token may use it; :class:`Forbidden` otherwise."""
        principal = self.principal
        assert principal is not None
        if principal.admin or may_use(principal, key):
            return key
        agents = list(principal.agents or ())
        raise Forbidden(f"this token may use the keys of agents {agents} only, not {key.name!r}")


def error_reply(exc: Exception) -> Error:
    if isinstance(exc, WrongType):
        return Error("WRONGTYPE", "Operation against a key holding the wrong kind of value")
    if isinstance(exc, Forbidden):
        return Error("NOPERM", str(exc))
    if isinstance(exc, Unauthorized):
        return Error("WRONGPASS", f"invalid username-password pair or user is disabled ({exc})")
    if isinstance(exc, BackendUnavailable):
        return Error("ERR", f"the store is unavailable: {exc}")
    if isinstance(exc, RelayStoreError):
        return Error("ERR", str(exc))
    log.exception("RESP command failed")
    return Error("ERR", f"internal error ({type(exc).__name__}); see the server log")


# --------------------------------------------------------------------------- connection commands


async def _login(session: Session, password: bytes) -> None:
    principal = await session.authenticate(password.decode("utf-8", "replace"))
    if not principal.admin and not principal.agents:
        raise Unauthorized("only the admin token or an adaptive token opens the RESP listener")
    session.principal = principal


async def _auth(session: Session, args: list[bytes]) -> Any:
    if len(args) not in (1, 2):
        return Error("ERR", "wrong number of arguments for 'auth' command")
    await _login(session, args[-1])  # AUTH [username] password: the username is not checked
    return OK


async def _hello(session: Session, args: list[bytes]) -> Any:
    proto = session.proto
    if args:
        try:
            proto = int(args[0])
        except ValueError:
            return Error("ERR", "Protocol version is not an integer or out of range")
        if proto not in (2, 3):
            return Error("NOPROTO", "unsupported protocol version")
    options = args[1:]
    while options:
        option = word(options[0])
        if option == "auth" and len(options) >= 3:
            await _login(session, options[2])
            options = options[3:]
        elif option == "setname" and len(options) >= 2:
            session.name, options = options[1], options[2:]
        else:
            return Error("ERR", f"Syntax error in HELLO option '{option}'")
    if session.principal is None:
        return Error(
            "NOAUTH",
            "HELLO must be called with the client already authenticated, "
            "otherwise the HELLO <proto> AUTH <user> <pass> option can be used",
        )
    session.proto = proto
    return {
        "server": "redis",
        "version": SERVER_VERSION,
        "proto": proto,
        "id": session.client_id,
        "mode": "standalone",
        "role": "master",
        "modules": [],
    }


async def _quit(session: Session, args: list[bytes]) -> Any:
    raise QuitConnection


async def _select(session: Session, args: list[bytes]) -> Any:
    if args[0] != b"0":
        return Error("ERR", "DB index is out of range (relaystore serves database 0 only)")
    return OK


async def _client(session: Session, args: list[bytes]) -> Any:
    sub = word(args[0])
    if sub in ("setinfo", "setname"):
        if sub == "setname" and len(args) == 2:
            session.name = args[1]
        return OK
    if sub == "getname":
        return session.name
    if sub == "id":
        return session.client_id
    return Error("ERR", f"unknown subcommand '{sub[:64]}'. Try CLIENT HELP.")


async def _multi(session: Session, args: list[bytes]) -> Any:
    if session.queue is not None:
        return Error("ERR", "MULTI calls can not be nested")
    session.queue, session.queue_error = [], None
    return OK


async def _discard(session: Session, args: list[bytes]) -> Any:
    if session.queue is None:
        return Error("ERR", "DISCARD without MULTI")
    session.queue, session.queue_error = None, None
    return OK


async def _exec(session: Session, args: list[bytes]) -> Any:
    """Validate every queued command, refuse more than one change, then run them in order."""
    if session.queue is None:
        return Error("ERR", "EXEC without MULTI")
    queued, problem = session.queue, session.queue_error
    session.queue, session.queue_error = None, None
    if problem is not None:
        return Error("EXECABORT", "Transaction discarded because of previous errors.")
    staged: set[str] = set()
    try:
        steps = [await prepare(session, name, a, staged) for name, a in queued]
    except Exception as exc:
        return _aborted(error_reply(exc))
    changes = {step.writes for step in steps if step.writes is not None}
    if len(changes) > 1 or sum(step.writes is not None for step in steps) > 1:
        return _aborted(
            Error("ERR", f"a MULTI may change one key here (one store transaction), got {sorted(changes)}")
        )
    replies = []
    for step in steps:
        try:
            replies.append(await step.run())
        except Exception as exc:
            replies.append(error_reply(exc))
    return replies


def _aborted(cause: Error) -> Error:
    return Error("EXECABORT", f"Transaction discarded because of: {cause.line()}")


CONNECTION: dict[str, Callable[[Session, list[bytes]], Awaitable[Any]]] = {
    "auth": _auth,
    "hello": _hello,
    "quit": _quit,
    "select": _select,
    "client": _client,
    "multi": _multi,
    "exec": _exec,
    "discard": _discard,
}

__all__ = ["CONNECTION", "QuitConnection", "Session", "error_reply"]
