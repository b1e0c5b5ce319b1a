"""``file://`` URLs and options of the file backend, parsed once into :class:`FileOptions`.

Options (URL query or keyword arguments):

- ``timeout``: seconds to wait for the store-wide write lock, default 30;
- ``fsync``: ``true`` (default); ``false`` skips fsync for throwaway stores (a crash of the OS may
  then lose acknowledged writes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from relaystore.backends._options import flag, merge_options, number
from relaystore.backends._policy import BackendOptions
from relaystore.errors import InvalidInput

OPTIONS = frozenset({"timeout", "fsync"})


class FileOptions(BackendOptions):
    """What a ``file://`` URL and its options say."""

    local_path: Path
    """The store's root directory: absolute and normalized (the server keeps its secrets beside it)."""
    timeout: float = 30.0
    """Seconds to wait for the write lock before :class:`BackendUnavailable`."""
    fsync: bool = True


def parse_url(url: str, options: dict[str, Any]) -> FileOptions:
    """Parse ``file:///absolute/dir`` (also ``file://localhost/…`` and ``file:////…``) plus options.

    Raises :class:`InvalidInput` for a host other than localhost, a relative or missing path, an
    unknown option or a bad value. Relative paths are refused: a store shared by several processes
    must not depend on each one's working directory.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise InvalidInput(f"not a file URL: {url!r}")
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput(
            f"{url!r}: write file:///absolute/dir (three slashes); relative paths are not supported"
        )
    path = "/" + unquote(parts.path).lstrip("/")
    if path == "/" or not parts.path.startswith("/"):
        raise InvalidInput(f"{url!r} names no directory; write file:///absolute/dir")
    query = merge_options(parts.query, options, OPTIONS, "file store")
    return FileOptions(
        scheme="file",
        url=url,
        local_path=Path(os.path.normpath(path)),
        timeout=number(query, "timeout", float, 30.0, low=0, exclusive=True),
        fsync=flag(query, "fsync", True),
    )
