"""``file://`` URLs and options of the file backend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from relaystore.backends._options import flag, merge_options, number
from relaystore.errors import InvalidInput


def parse_url(url: str, options: dict[str, Any]) -> tuple[Path, float, bool]:
    """``(root directory, lock timeout seconds, fsync)`` from a ``file://`` URL and options."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput(
            f"{url!r}: write file:///absolute/dir (three slashes); relative paths are not supported"
        )
    path = "/" + unquote(parts.path).lstrip("/")
    if path == "/" or not parts.path.startswith("/"):
        raise InvalidInput(f"{url!r} names no directory; write file:///absolute/dir")
    query = merge_options(parts.query, options, {"timeout", "fsync"}, "file store")
    timeout = number(query, "timeout", float, 30.0, low=0, exclusive=True)
    return Path(os.path.normpath(path)), timeout, flag(query, "fsync", True)
