"""The key and inspection commands of the RESP listener, each prepared as a :class:`Step`.

Replies and error codes follow Redis 7 (https://redis.io/docs/latest/commands/), so that redis-rs
(inside NeMo Relay), redis-py and redis-cli work unchanged. Differences are documented in
docs/resp.md: database 0 only, adaptive keys never expire, and a MULTI may change one thing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from relaystore.errors import InvalidInput
from relaystore.server.resp.mapping import GENERIC, Key, KeySpace, Step
from relaystore.server.resp.protocol import OK, Error, Simple
from relaystore.server.tokens import Principal


class Session(Protocol):
    """What a command needs of its connection (:class:`.session.Session`, which dispatches the
    commands of this module): the key space, who authenticated, and the scope check."""

    keyspace: KeySpace
    principal: Principal | None

    def check(self, key: Key) -> Key: ...


SERVER_VERSION = "7.2.0"  # what clients see; the commands behave as Redis 7.2's


def may_use(principal: Principal, key: Key) -> bool:
    """An adaptive token may use its agents' adaptive keys and generic keys named ``{agent}:…``."""
    agents = principal.agents or ()
    if key.family == GENERIC:
        return any(key.name.startswith(agent + ":") for agent in agents)
    return key.agent in agents


# --------------------------------------------------------------------------- arguments

# name -> (least, most) arguments after the name; None: no upper bound
ARITY: dict[str, tuple[int, int | None]] = {
    "get": (1, 1),
    "set": (2, None),
    "del": (1, None),
    "exists": (1, None),
    "type": (1, 1),
    "ttl": (1, 1),
    "pttl": (1, 1),
    "expire": (2, 3),
    "pexpire": (2, 3),
    "rpush": (2, None),
    "lrange": (3, 3),
    "llen": (1, 1),
    "keys": (1, 1),
    "scan": (1, None),
    "dbsize": (0, 0),
    "info": (0, None),
    "command": (0, None),
    "ping": (0, 1),
    "echo": (1, 1),
    "select": (1, 1),
    "client": (1, None),
    "multi": (0, 0),
    "exec": (0, 0),
    "discard": (0, 0),
}


def arity_error(name: str, args: list[bytes]) -> Error | None:
    if name not in ARITY:
        shown = name[:64]
        return Error("ERR", f"unknown command '{shown}', with args beginning with: ")
    least, most = ARITY[name]
    if len(args) < least or (most is not None and len(args) > most):
        return Error("ERR", f"wrong number of arguments for '{name}' command")
    return None


def integer(raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("value is not an integer or out of range") from None


def word(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").lower()


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Redis' glob (``*``, ``?``, ``[abc]``, ``[^a-z]``, ``\\x``) as a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        out.append({"*": ".*", "?": "."}.get(char) or re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


# --------------------------------------------------------------------------- key commands


async def prepare(session: Session, name: str, args: list[bytes], staged: set[str]) -> Step:
    """Validate ``name args`` and return it as a :class:`Step` (nothing has run yet).

    ``staged`` holds the run keys SET earlier in the same transaction (for ``RPUSH runs_index``).
    """
    problem = arity_error(name, args)
    if problem is not None:
        return Step(lambda: _reply(problem))
    return await STEPS[name](session, args, staged)


async def _reply(value: Any) -> Any:
    return value


def _key(session: Session, raw: bytes) -> Key:
    return session.check(session.keyspace.key(raw))


async def _get(session: Session, args: list[bytes], staged: set[str]) -> Step:
    key = _key(session, args[0])
    return Step(lambda: session.keyspace.get(key))


def _set_options(args: list[bytes]) -> tuple[float | None, str | None]:
    """``(ttl seconds, "nx"|"xx"|None)`` from SET's options; InvalidInput on anything else."""
    ttl, condition, i = None, None, 0
    while i < len(args):
        option = word(args[i])
        if option in ("ex", "px") and ttl is None and i + 1 < len(args):
            amount = integer(args[i + 1])
            if amount <= 0:
                raise InvalidInput("invalid expire time in 'set' command")
            ttl = amount if option == "ex" else amount / 1000
            i += 2
        elif option in ("nx", "xx") and condition is None:
            condition = option
            i += 1
        else:
            raise InvalidInput("syntax error")
    return ttl, condition


async def _set(session: Session, args: list[bytes], staged: set[str]) -> Step:
    key = _key(session, args[0])
    ttl, condition = _set_options(args[2:])
    step = session.keyspace.prepare_set(key, args[1], ttl)
    if key.family == "runs":
        staged.add(key.name)
    if condition is None:

        async def plain() -> Any:
            await step.run()
            return OK

        return Step(plain, step.writes)

    async def conditional() -> Any:
        if await session.keyspace.exists(key) != (condition == "xx"):
            return None
        await step.run()
        return OK

    return Step(conditional, step.writes)


async def _del(session: Session, args: list[bytes], staged: set[str]) -> Step:
    return session.keyspace.prepare_delete([_key(session, raw) for raw in args])


async def _exists(session: Session, args: list[bytes], staged: set[str]) -> Step:
    keys = [_key(session, raw) for raw in args]

    async def count() -> int:
        return sum([await session.keyspace.exists(key) for key in keys])

    return Step(count)


async def _type(session: Session, args: list[bytes], staged: set[str]) -> Step:
    key = _key(session, args[0])

    async def kind() -> Simple:
        return Simple(await session.keyspace.type_of(key))

    return Step(kind)


async def _ttl(session: Session, args: list[bytes], staged: set[str]) -> Step:
    key = _key(session, args[0])

    async def seconds() -> int:
        left = await session.keyspace.pttl(key)
        return left if left < 0 else math.floor((left + 500) / 1000)

    return Step(seconds)


async def _pttl(session: Session, args: list[bytes], staged: set[str]) -> Step:
    key = _key(session, args[0])
    return Step(lambda: session.keyspace.pttl(key))


async def _expire(session: Session, args: list[bytes], staged: set[str], unit: float = 1.0) -> Step:
    if len(args) == 3:
        raise InvalidInput("EXPIRE's NX/XX/GT/LT options are not supported")
    key = _key(session, args[0])
    return session.keyspace.prepare_expire(key, integer(args[1]) * unit)


async def _pexpire(session: Session, args: list[bytes], staged: set[str]) -> Step:
    return await _expire(session, args, staged, unit=0.001)


async def _rpush(session: Session, args: list[bytes], staged: set[str]) -> Step:
    key = _key(session, args[0])
    return await session.keyspace.prepare_rpush(key, args[1:], staged)


def list_slice(items: list[str], start: int, stop: int) -> list[str]:
    """LRANGE's inclusive, negative-from-the-end, clamped range."""
    size = len(items)
    start = max(start + size if start < 0 else start, 0)
    stop = min(stop + size if stop < 0 else stop, size - 1)
    return items[start : stop + 1] if start <= stop else []


async def _lrange(session: Session, args: list[bytes], staged: set[str]) -> Step:
    key = _key(session, args[0])
    start, stop = integer(args[1]), integer(args[2])

    async def elements() -> list[bytes]:
        return [item.encode() for item in list_slice(await session.keyspace.list_items(key), start, stop)]

    return Step(elements)


async def _llen(session: Session, args: list[bytes], staged: set[str]) -> Step:
    key = _key(session, args[0])
    return Step(lambda: session.keyspace.llen(key))


async def visible_keys(session: Session, pattern: str | None) -> list[str]:
    """The database's keys this token may use, matching ``pattern`` (None: all)."""
    names = await session.keyspace.all_keys()
    principal = session.principal
    if principal is not None and not principal.admin:
        names = [n for n in names if may_use(principal, session.keyspace.key(n.encode()))]
    if pattern is None or pattern == "*":
        return names
    regex = glob_regex(pattern)
    return [n for n in names if regex.fullmatch(n)]


async def _keys(session: Session, args: list[bytes], staged: set[str]) -> Step:
    pattern = args[0].decode("utf-8", "replace")

    async def matching() -> list[bytes]:
        return [name.encode() for name in await visible_keys(session, pattern)]

    return Step(matching)


async def _scan(session: Session, args: list[bytes], staged: set[str]) -> Step:
    """SCAN cursor [MATCH p] [COUNT n] [TYPE t]: the cursor is an offset into the sorted keys."""
    cursor, pattern, count, wanted = integer(args[0]), None, 10, None
    options = args[1:]
    if len(options) % 2:
        raise InvalidInput("syntax error")
    for option, value in zip(options[::2], options[1::2], strict=True):
        match word(option):
            case "match":
                pattern = value.decode("utf-8", "replace")
            case "count":
                count = integer(value)
                if count < 1:
                    raise InvalidInput("syntax error")
            case "type":
                wanted = word(value)
            case _:
                raise InvalidInput("syntax error")
    if cursor < 0:
        raise InvalidInput("invalid cursor")

    async def page() -> list[Any]:
        names = await session.keyspace.all_keys()
        chunk = names[cursor : cursor + count]
        following = cursor + count if cursor + count < len(names) else 0
        allowed = set(await visible_keys(session, pattern)) if chunk else set()
        found = [n for n in chunk if n in allowed]
        if wanted is not None:
            found = [
                n for n in found if await session.keyspace.type_of(session.keyspace.key(n.encode())) == wanted
            ]
        return [str(following).encode(), [n.encode() for n in found]]

    return Step(page)


async def _dbsize(session: Session, args: list[bytes], staged: set[str]) -> Step:
    async def size() -> int:
        return len(await visible_keys(session, None))

    return Step(size)


async def _info(session: Session, args: list[bytes], staged: set[str]) -> Step:
    text = (
        "# Server\r\n"
        f"redis_version:{SERVER_VERSION}\r\n"
        "redis_mode:standalone\r\n"
        "server_name:relaystore\r\n"
        f"relaystore_backend:{session.keyspace.store.backend}\r\n"
        f"relaystore_adaptive_prefix:{session.keyspace.prefix}\r\n"
    )
    return Step(lambda: _reply(text.encode()))


async def _command(session: Session, args: list[bytes], staged: set[str]) -> Step:
    sub = word(args[0]) if args else ""
    if sub == "count":
        return Step(lambda: _reply(len(ARITY)))
    return Step(lambda: _reply([]))  # COMMAND, COMMAND DOCS, COMMAND INFO: no command table


async def _ping(session: Session, args: list[bytes], staged: set[str]) -> Step:
    return Step(lambda: _reply(args[0] if args else Simple("PONG")))


async def _echo(session: Session, args: list[bytes], staged: set[str]) -> Step:
    return Step(lambda: _reply(args[0]))


STEPS: dict[str, Callable[[Session, list[bytes], set[str]], Awaitable[Step]]] = {
    "get": _get,
    "set": _set,
    "del": _del,
    "exists": _exists,
    "type": _type,
    "ttl": _ttl,
    "pttl": _pttl,
    "expire": _expire,
    "pexpire": _pexpire,
    "rpush": _rpush,
    "lrange": _lrange,
    "llen": _llen,
    "keys": _keys,
    "scan": _scan,
    "dbsize": _dbsize,
    "info": _info,
    "command": _command,
    "ping": _ping,
    "echo": _echo,
}
