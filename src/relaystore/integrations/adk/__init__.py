"""Google ADK services over any relaystore backend: ``RelaySessionService`` (sessions, events,
app/user/session state) and ``RelayArtifactService`` (versioned artifacts, bytes in blobs).

Both use only the generic checkpoint and blob contracts; see ``docs/integrations.md``.
Needs the ``adk`` extra (``pip install 'relaystore[adk]'``).
"""

from __future__ import annotations

try:
    import google.adk.sessions  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    from relaystore._extras import missing_extra

    raise missing_extra("relaystore.integrations.adk", "adk") from exc

from relaystore.integrations.adk.artifacts import RelayArtifactService
from relaystore.integrations.adk.sessions import RelaySessionService

__all__ = ["RelayArtifactService", "RelaySessionService"]
