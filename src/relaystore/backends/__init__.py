"""Backends, chosen by URL scheme: the built-in ones, and any a package registers.

The seam is two functions, which every backend module (or registered object) provides:

- ``async def open_store(url: str, **options) -> Store``: open it;
- ``def parse_url(url: str, options: dict[str, Any]) -> BackendOptions``: the URL and keyword
  options as one typed, validated value (:class:`~relaystore.backends._policy.BackendOptions`),
  raising :class:`~relaystore.errors.InvalidInput` for a bad one. Optional for third parties.

A third-party backend registers under the entry-point group ``relaystore.backends``, named by its
scheme, pointing at a module or object with those functions::

    [project.entry-points."relaystore.backends"]
    mydb = "mydb_relaystore.backend"

and proves itself with the conformance kit, :mod:`relaystore.testing`. Modules are imported only
when their scheme is used, so an optional backend's driver is needed only by those who use it.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from relaystore.backends._policy import BackendOptions
from relaystore.errors import InvalidInput
from relaystore.stores import Store

ENTRY_POINT_GROUP = "relaystore.backends"

BUILTIN: dict[str, str] = {
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


class Backend(Protocol):
    """What a scheme resolves to: a backend module, or any object with these methods."""

    async def open_store(self, url: str, **options: Any) -> Store: ...

    def parse_url(self, url: str, options: dict[str, Any]) -> BackendOptions: ...


def scheme_of(url: str) -> str:
    """The URL's scheme, lower-cased. Raises :class:`InvalidInput` when ``url`` has none."""
    if not isinstance(url, str) or "://" not in url:
        raise InvalidInput(f"not a store URL (scheme://…): {url!r}")
    return urlsplit(url).scheme.lower()


@cache
def _registered() -> dict[str, Any]:
    return {ep.name.lower(): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def schemes() -> list[str]:
    """Every scheme that :func:`open_backend` accepts: built-in and registered."""
    return sorted(set(BUILTIN) | set(_registered()))


def backend_for(url: str) -> Backend:
    """The backend that ``url``'s scheme names (a built-in one wins over a registered namesake).

    Raises :class:`InvalidInput` for an unknown scheme, or one whose driver is not installed.
    """
    scheme = scheme_of(url)
    try:
        if scheme in BUILTIN:
            return cast(Backend, importlib.import_module(BUILTIN[scheme]))
        if scheme in _registered():
            return cast(Backend, _registered()[scheme].load())
    except ModuleNotFoundError as exc:
        raise InvalidInput(
            f"the {scheme!r} backend is not available ({exc.name} is not installed); "
            "install relaystore with the matching extra"
        ) from exc
    raise InvalidInput(f"unknown store scheme {scheme!r}; known: {', '.join(schemes())}")


def parse_url(url: str, **options: Any) -> BackendOptions:
    """``url`` and keyword options as the backend's typed options, without opening anything.

    Raises :class:`InvalidInput` for an unknown scheme, an unknown option or a bad value.
    """
    backend = backend_for(url)
    if not hasattr(backend, "parse_url"):
        return BackendOptions(scheme=scheme_of(url), url=url)
    return backend.parse_url(url, options)


async def open_backend(url: str, **options: Any) -> Store:
    """Open the backend that ``url``'s scheme names.

    Raises :class:`InvalidInput` for an unknown scheme or a malformed URL, and
    :class:`BackendUnavailable` when the backend cannot be reached.
    """
    return await backend_for(url).open_store(url, **options)
