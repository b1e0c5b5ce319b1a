"""``redis://``, ``rediss://`` and ``redis+cluster://`` URLs and options, parsed once into
:class:`RedisOptions`.

Options (URL query or keyword arguments):

- ``prefix``: prepended to every key, default ``nemo_relay:`` (NeMo Relay's default);
- ``ttl``: seconds; when set, run records (and their index) expire that long after the last write;
- ``timeout``: seconds, default 5; bounds every round trip, connecting included;
- ``cluster=1``: treat ``redis://`` / ``rediss://`` as a Redis Cluster seed (as ``redis+cluster``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import SecretStr

from relaystore.backends._options import flag, merge_options, number
from relaystore.backends._policy import BackendOptions
from relaystore.backends.redis.layout import DEFAULT_PREFIX
from relaystore.errors import InvalidInput

SCHEMES = frozenset({"redis", "rediss", "redis+cluster"})
OPTIONS = frozenset({"prefix", "ttl", "timeout", "cluster"})


class RedisOptions(BackendOptions):
    """What a Redis URL and its options say. ``url`` carries no password; ``password`` is secret."""

    hosts: tuple[tuple[str, int], ...]
    """``(host, port)`` of the server, or the cluster's seed nodes."""
    db: int = 0
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    cluster: bool = False
    prefix: str = DEFAULT_PREFIX
    ttl: int | None = None
    """Seconds until run records (and their index) expire after the last write; None: never."""
    timeout: float = 5.0
    """Seconds that bound every round trip, connecting included."""


def _parse_hosts(hostlist: str, url: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in hostlist.split(","):
        try:
            parts = urlsplit("//" + item)
            hosts.append((parts.hostname or "127.0.0.1", parts.port or 6379))
        except ValueError as exc:
            raise InvalidInput(f"{url!r}: bad host {item!r}: {exc}") from None
    return tuple(hosts)


def _without_password(parts: SplitResult) -> str:
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{username}{at}{hostlist}").geturl()


def parse_url(url: str, options: dict[str, Any]) -> RedisOptions:
    """Parse a ``redis://``, ``rediss://`` or ``redis+cluster://`` URL plus keyword options.

    The path is the database number (0 when absent); several ``host:port`` seeds need cluster mode.
    Raises :class:`InvalidInput` for another scheme, an unknown option, a bad value or host, a
    non-numeric database, a database other than 0 on a cluster, or several hosts without cluster.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInput(f"not a redis URL: {url!r}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    opts = merge_options(parts.query, options, OPTIONS, "redis")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise InvalidInput(f"{url!r}: the path must be a database number")
    parsed = RedisOptions(
        scheme=scheme,
        url=_without_password(parts),
        hosts=_parse_hosts(hostlist or "127.0.0.1:6379", url),
        db=int(db_text),
        username=unquote(username) or None,
        password=SecretStr(unquote(password)) if password else None,
        tls=scheme == "rediss",
        cluster=scheme == "redis+cluster" or flag(opts, "cluster", False, blank_is_false=True),
        prefix=opts.get("prefix", DEFAULT_PREFIX),
        ttl=number(opts, "ttl", int, None, low=0, exclusive=True),
        timeout=number(opts, "timeout", float, 5.0, low=0, exclusive=True),
    )
    if parsed.cluster and parsed.db != 0:
        raise InvalidInput("Redis Cluster has only database 0")
    if not parsed.cluster and len(parsed.hosts) != 1:
        raise InvalidInput(f"{url!r}: several hosts need redis+cluster:// or ?cluster=1")
    return parsed
