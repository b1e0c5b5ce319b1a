"""relaystore over HTTP: one server in front of any store, for agents in any language.

``create_app(store_url, admin_token=..., signing_key=...)`` returns the ASGI app;
``relaystore serve --url URL`` runs it under uvicorn. Routes, auth and limits: ``docs/server.md``.
"""

from relaystore.server.app import create_app

__all__ = ["create_app"]
