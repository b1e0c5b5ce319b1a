"""``sqlite://`` URLs and options of the SQLite backend, parsed once into :class:`SqliteOptions`.

``sqlite:///relative/path.db`` (three slashes: relative to the working directory),
``sqlite:////absolute/path.db`` (four), ``sqlite:///:memory:`` (a private in-memory database).

Options (URL query or keyword arguments):

- ``timeout``: seconds a write waits for the lock (``busy_timeout`` and retries), default 30;
- ``synchronous``: ``full`` (default: a call that returned is on disk), ``normal`` (trades the last
  commits on power loss for speed), ``extra`` or ``off``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from relaystore.backends._options import merge_options, number
from relaystore.backends._policy import BackendOptions
from relaystore.errors import InvalidInput

MEMORY = ":memory:"
OPTIONS = frozenset({"timeout", "synchronous"})
Synchronous = Literal["off", "normal", "full", "extra"]
_SYNC_MODES: frozenset[str] = frozenset({"off", "normal", "full", "extra"})


class SqliteOptions(BackendOptions):
    """What a ``sqlite://`` URL and its options say."""

    path: str
    """The database as the URL names it (what ``sqlite3.connect`` gets); ``":memory:"`` for a
    private in-memory database."""
    local_path: Path | None
    """The database file, absolute (resolved against the working directory at parse time); None
    for ``":memory:"``. The server keeps its secrets beside it."""
    timeout: float = 30.0
    """Seconds a write waits for the lock before :class:`BackendUnavailable`."""
    synchronous: Synchronous = "full"

    @property
    def in_memory(self) -> bool:
        """True for a private in-memory database: nothing outlives the store's close."""
        return self.local_path is None


def parse_url(url: str, options: dict[str, Any]) -> SqliteOptions:
    """Parse a ``sqlite://`` URL plus keyword options (keywords win over the query).

    Raises :class:`InvalidInput` for a host part (``sqlite://file.db``: two slashes), a URL that
    names no file, an unknown option or a bad value.
    """
    parts = urlsplit(url)
    if parts.netloc:
        raise InvalidInput(
            f"{url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db (three or four /)"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise InvalidInput(f"{url!r} names no database file")
    query = merge_options(parts.query, options, OPTIONS, "sqlite")
    synchronous = query.get("synchronous", "full").lower()
    if synchronous not in _SYNC_MODES:
        raise InvalidInput(f"synchronous must be one of {sorted(_SYNC_MODES)}, got {synchronous!r}")
    return SqliteOptions(
        scheme=parts.scheme.lower(),
        url=url,
        path=path,
        local_path=None if path == MEMORY else Path(path).resolve(),
        timeout=number(query, "timeout", float, 30.0, low=0, exclusive=True),
        synchronous=cast(Synchronous, synchronous),
    )
