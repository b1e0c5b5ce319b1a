"""The SQLite backend's options: a ``sqlite://`` URL and keywords."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from relaystore.backends._options import merge_options, number
from relaystore.errors import InvalidInput

_SYNC_MODES = {"off", "normal", "full", "extra"}


def parse_url(url: str, options: dict[str, Any]) -> tuple[str, float, str]:
    """``(path, timeout seconds, synchronous mode)`` from a ``sqlite://`` URL and keyword options."""
    parts = urlsplit(url)
    if parts.netloc:
        raise InvalidInput(
            f"{url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db (three or four /)"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise InvalidInput(f"{url!r} names no database file")
    query = merge_options(parts.query, options, {"timeout", "synchronous"}, "sqlite")
    timeout = number(query, "timeout", float, 30.0, low=0, exclusive=True)
    synchronous = query.get("synchronous", "full").lower()
    if synchronous not in _SYNC_MODES:
        raise InvalidInput(f"synchronous must be one of {sorted(_SYNC_MODES)}, got {synchronous!r}")
    return path, timeout, synchronous
