"""Options of the ``http://`` backend, parsed once from the URL and keywords: :class:`HttpOptions`."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from relaystore.backends._options import merge_options, number
from relaystore.backends._policy import BackendOptions
from relaystore.errors import InvalidInput

OPTIONS = ("token", "timeout", "max_connections")
TOKEN_ENV = "RELAYSTORE_TOKEN"


class HttpOptions(BackendOptions):
    """A relaystore server as a store: ``http(s)://host:port[/t/TENANT]``.

    ``base`` is the server's URL without query or trailing slash (requests go below it); ``url``
    is the store's URL as shown, without the token. ``token`` comes from the keyword, else
    ``?token=``, else ``$RELAYSTORE_TOKEN`` (None: no ``Authorization`` header). ``timeout`` is
    seconds per request; ``max_connections`` bounds the sockets open at once.
    """

    base: str
    token: SecretStr | None = None
    timeout: float = 30.0
    max_connections: int = 32


def parse_url(url: str, options: dict[str, Any]) -> HttpOptions:
    """The options of an ``http(s)://`` URL and keywords.

    Raises :class:`InvalidInput` for a URL without a host, an unknown option or a bad value.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        raise InvalidInput(f"{url!r} names no host; write http://host:port")
    query = merge_options(parts.query, options, OPTIONS, "http store")
    token = query.get("token") or os.environ.get(TOKEN_ENV) or None
    public = {k: v for k, v in parse_qsl(parts.query) if k != "token"}
    return HttpOptions(
        scheme=parts.scheme.lower(),
        url=urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(public), "")),
        base=urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")),
        token=None if token is None else SecretStr(token),
        timeout=number(query, "timeout", float, 30.0, low=0, exclusive=True),
        max_connections=number(query, "max_connections", int, 32, low=1),
    )
