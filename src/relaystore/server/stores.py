"""The stores a server holds: its main store and, optionally, one store per tenant.

A tenant is a path prefix, ``/t/NAME/…``, mapped to its own store by a URL template such as
``sqlite:///var/lib/relaystore/{tenant}.db``. Tenant stores open on first use and are closed
least-recently-used first once more than ``max_open`` are open, but never while a request
(including a streamed download) still holds one.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from relaystore.backends import open_backend
from relaystore.errors import InvalidInput, NotFound
from relaystore.stores import Store

TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class _Entry:
    __slots__ = ("leases", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.leases = 0


class StoreSet:
    """Opens, lends and closes the server's stores."""

    def __init__(self, store_url: str, tenant_url: str | None = None, *, max_open: int = 32) -> None:
        if tenant_url is not None and "{tenant}" not in tenant_url:
            raise InvalidInput(f"the tenant URL template must contain {{tenant}}: {tenant_url!r}")
        self.store_url = store_url
        self.tenant_url = tenant_url
        self.max_open = max_open
        self.main: Store | None = None
        self._tenants: OrderedDict[str, _Entry] = OrderedDict()
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        self.main = await open_backend(self.store_url)

    async def close(self) -> None:
        """Close every store (the server is shutting down; in-flight requests have finished)."""
        entries = list(self._tenants.values())
        self._tenants.clear()
        for entry in entries:
            await entry.store.close()
        if self.main is not None:
            await self.main.close()

    @asynccontextmanager
    async def lease(self, tenant: str | None) -> AsyncIterator[Store]:
        """The store for ``tenant`` (None: the main store), kept open until the block exits.

        Raises :class:`NotFound` when tenants are not enabled, :class:`InvalidInput` for a bad
        tenant name and whatever opening the backend raises.
        """
        if tenant is None:
            assert self.main is not None, "StoreSet.open() was not awaited"
            yield self.main
            return
        entry = await self._acquire(tenant)
        try:
            yield entry.store
        finally:
            entry.leases -= 1

    async def _acquire(self, tenant: str) -> _Entry:
        if self.tenant_url is None:
            raise NotFound("this server has no tenants (start it with --tenant-url)")
        if not TENANT.match(tenant):
            raise InvalidInput("a tenant name is 1 to 64 of a-z, 0-9, '_' and '-', starting alphanumeric")
        async with self._opening:  # one opener per tenant, and eviction sees a stable map
            entry = self._tenants.get(tenant)
            if entry is None:
                entry = _Entry(await open_backend(self.tenant_url.replace("{tenant}", tenant)))
                self._tenants[tenant] = entry
            self._tenants.move_to_end(tenant)
            entry.leases += 1
            await self._evict()
        return entry

    async def _evict(self) -> None:
        idle = [name for name, e in self._tenants.items() if e.leases == 0]
        for name in idle[: max(0, len(self._tenants) - self.max_open)]:
            await self._tenants.pop(name).store.close()
