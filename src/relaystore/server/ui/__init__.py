"""The read-only browser inspector that ``relaystore serve`` mounts at ``/ui`` (see ``docs/ui.md``).

The page at ``/ui`` is a shell holding no data; its script keeps the token in ``sessionStorage``
and fetches every view as an HTML fragment from ``/ui/f/<view>`` with ``Authorization: Bearer``,
so the token never travels in a URL or a cookie and each fragment is authorised as an API call.
"""

from relaystore.server.ui.routes import ui_routes

__all__ = ["ui_routes"]
