"""Backends, one module each, chosen by URL scheme.

Each module exposes ``async def open_store(url: str) -> Store``. Modules are imported only when
their scheme is used, so an optional backend's driver is needed only by those who use it.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from relaystore.errors import InvalidInput
from relaystore.stores import Store

SCHEMES: dict[str, str] = {
    "memory": "relaystore.backends.memory",
    "sqlite": "relaystore.backends.sqlite",
    "file": "relaystore.backends.filesystem",
    "redis": "relaystore.backends.redis",
    "rediss": "relaystore.backends.redis",
    "redis+cluster": "relaystore.backends.redis",
    "postgresql": "relaystore.backends.postgres",
    "postgres": "relaystore.backends.postgres",
    "http": "relaystore.backends.http",
    "https": "relaystore.backends.http",
}


def scheme_of(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise InvalidInput(f"not a store URL (scheme://…): {url!r}")
    return urlsplit(url).scheme.lower()


async def open_backend(url: str, **options: object) -> Store:
    """Open the backend that ``url``'s scheme names.

    Raises :class:`InvalidInput` for an unknown scheme or a malformed URL, and
    :class:`BackendUnavailable` when the backend cannot be reached.
    """
    scheme = scheme_of(url)
    module_name = SCHEMES.get(scheme)
    if module_name is None:
        raise InvalidInput(f"unknown store scheme {scheme!r}; known: {', '.join(sorted(SCHEMES))}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise InvalidInput(
            f"the {scheme!r} backend is not available ({exc.name} is not installed); "
            "install relaystore with the matching extra"
        ) from exc
    store: Store = await module.open_store(url, **options)
    return store
