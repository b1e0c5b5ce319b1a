"""A RESP (Redis protocol) listener on a relaystore store, for NeMo Relay's adaptive runtime.

``relaystore serve --resp HOST:PORT`` runs it beside the HTTP service (docs/resp.md).
"""

from relaystore.server.resp.listener import (
    DEFAULT_PREFIX,
    RespListener,
    TokenCheck,
    attach,
    serve_alone,
    serving,
)

__all__ = ["DEFAULT_PREFIX", "RespListener", "TokenCheck", "attach", "serve_alone", "serving"]
