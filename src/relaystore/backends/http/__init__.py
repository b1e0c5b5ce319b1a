"""HTTP backend: a relaystore server (``relaystore serve``) as a store. ``http://host:port[/t/TENANT]``.

Every primitive is one or a few calls to the server's routes (``docs/server.md``), built from the
path templates, headers and error table of :mod:`relaystore.wire`, which the server declares its
routes with too; the server runs the public store API, so validation and semantics are the
library's on both sides. Design:

- **Token.** ``connect(url, token=...)``, else ``?token=`` in the URL, else ``$RELAYSTORE_TOKEN``;
  sent as ``Authorization: Bearer``. The token never appears in ``store.url``.
- **Errors.** The server answers ``{"error": "<ExceptionClass>", "detail": ...}``; the same
  :mod:`relaystore.errors` class is raised here (401 :class:`Unauthorized`, 403 :class:`Forbidden`,
  413 :class:`TooLarge`). Transport failures and timeouts raise :class:`BackendUnavailable`.
- **Listings.** The server pages with the same cursors (``encode_cursor`` of a position), so a
  cursor passes through unchanged; see :func:`~.client.fill` for how a server page becomes rows.
- **Adaptive updates** are optimistic (``If-Match``, 412 means read again): :mod:`.adaptive`.
- **Pending writes and attachments** are JSON bodies with values in base64: :mod:`.checkpoints`.
- **Blobs.** An upload is one streamed request; a chunk read is one ``Range`` request: :mod:`.blobs`.
- One ``httpx.AsyncClient`` per store: HTTP/1.1 keep-alive, at most ``max_connections`` sockets.

Options (query or keywords, :class:`~.url.HttpOptions`): ``token``, ``timeout`` (seconds per
request, default 30), ``max_connections`` (default 32).

Code layout: :mod:`.url` (options), :mod:`.client` (connection pool, errors, listing helpers),
:mod:`.checkpoints`, :mod:`.outputs`, :mod:`.adaptive`, :mod:`.blobs`, :mod:`.items` (one module per
face of the store).
"""

from __future__ import annotations

from typing import Any

from relaystore import wire
from relaystore.backends.http.adaptive import HttpAdaptiveStore
from relaystore.backends.http.blobs import HttpBlobStore
from relaystore.backends.http.checkpoints import HttpCheckpointStore
from relaystore.backends.http.client import Client, raise_for_response
from relaystore.backends.http.items import HttpItemStore
from relaystore.backends.http.outputs import HttpOutputStore
from relaystore.backends.http.url import HttpOptions, parse_url
from relaystore.stores import Store


async def open_store(url: str, **options: Any) -> Store:
    """Connect to the relaystore server at ``url`` (checked with ``GET /healthz``).

    Raises :class:`InvalidInput` for a bad URL or option and :class:`BackendUnavailable` when the
    server cannot be reached. A missing or refused token surfaces on the first call that needs it.
    """
    settings = parse_url(url, options)
    client = Client(settings)
    try:
        await client.send("GET", wire.HEALTHZ)
    except BaseException:
        await client.http.aclose()
        raise

    async def info() -> dict[str, Any]:
        facts = await client.json("GET", wire.INFO)
        return {"server": {k: v for k, v in facts.items() if k != "url"}}

    return Store(
        settings.url,
        "http",
        HttpCheckpointStore(client),
        HttpOutputStore(client),
        HttpAdaptiveStore(client),
        blobs=HttpBlobStore(client),
        items=HttpItemStore(client),
        close=client.http.aclose,
        info=info,
        concurrent_calls=True,
    )


__all__ = ["HttpOptions", "open_store", "parse_url", "raise_for_response"]
