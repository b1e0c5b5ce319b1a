"""``memory://`` URLs, parsed once into :class:`MemoryOptions`. The backend takes no options."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from relaystore.backends._options import merge_options
from relaystore.backends._policy import BackendOptions


class MemoryOptions(BackendOptions):
    """What a ``memory://`` URL says: the shared store's name, or None for a private store."""

    name: str | None = None


def parse_url(url: str, options: dict[str, Any]) -> MemoryOptions:
    """``memory://`` (private) or ``memory://NAME`` (shared in this process).

    Raises :class:`InvalidInput` for any option, in the query or as a keyword: the memory backend
    has none, and one it ignored would hide a typo or a URL meant for another backend.
    """
    parts = urlsplit(url)
    merge_options(parts.query, options, (), "memory")
    name = (parts.netloc + parts.path).strip("/")
    return MemoryOptions(scheme=parts.scheme.lower(), url=url, name=name or None)
