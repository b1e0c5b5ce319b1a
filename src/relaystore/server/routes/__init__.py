"""Every route of the server, one module per resource, each with its handlers and its slice of the table.

Handlers call only the public store API, so the server behaves exactly as the library does. Paths,
headers and error codes come from :mod:`relaystore.wire`, which the ``http://`` backend builds its
requests from too; the route table in ``docs/server.md`` is :data:`OPERATIONS`.

- :mod:`~.service`: ``/healthz``, ``/v1/info``;
- :mod:`~.tokens`: agent tokens (issue, revoke);
- :mod:`~.outputs`, :mod:`~.checkpoints`, :mod:`~.adaptive`, :mod:`~.blobs`: the store's faces;
- :mod:`~.items`: the item face (``/v1/store/...``, LangGraph long-term memory);
- :mod:`~._common`: the OpenAPI schema pieces and body helpers they share.

The app (:func:`relaystore.server.app.create_app`) adds ``/openapi.json`` and ``/metrics``.
"""

from __future__ import annotations

from pydantic import BaseModel

from relaystore.server.routes import adaptive, blobs, checkpoints, items, outputs, service, tokens
from relaystore.server.routes._common import json_of
from relaystore.server.web import Op

_RESOURCES = (service, tokens, outputs, checkpoints, adaptive, blobs, items)

# Starlette matches in order: each slice lists its fixed paths before its templated ones.
OPERATIONS: list[Op] = [op for module in _RESOURCES for op in module.OPERATIONS]
REQUEST_MODELS: list[type[BaseModel]] = [
    model for module in _RESOURCES for model in getattr(module, "REQUEST_MODELS", ())
]

__all__ = ["OPERATIONS", "REQUEST_MODELS", "json_of"]
