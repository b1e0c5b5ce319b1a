"""Revoked agent tokens: a deny-list of token ids (``jti``) kept in the store itself.

Because the list lives in the store, every replica serving that store refuses a revoked token.
It is kept as attachments of one reserved thread, :data:`REVOKED_THREAD` (attachments need no
checkpoint, so the thread never shows in ``list_threads``): key = the jti, value = when the token
expires (Unix seconds, ASCII). Each server caches a "not revoked" answer for
:data:`CACHE_SECONDS`, so a revocation takes effect everywhere within that time.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from relaystore.errors import InvalidInput
from relaystore.stores import Store
from relaystore.stores._common import check_id

REVOKED_THREAD = "relaystore/revoked-tokens"
CACHE_SECONDS = 1.0
CACHE_SIZE = 10_000


async def revoke(store: Store, jti: str, expires_at: int | None = None) -> None:
    """Put token id ``jti`` on ``store``'s deny-list. Raises :class:`InvalidInput` for a bad id."""
    check_id(jti, "jti")
    if expires_at is not None and expires_at < 0:
        raise InvalidInput("expires_at is Unix seconds, not negative")
    value = b"" if expires_at is None else str(expires_at).encode()
    await store.checkpoints.put_attachments(REVOKED_THREAD, {jti: value})


class RevocationCache:
    """Answers "is this token id revoked?" for one server, from the store, with a short cache."""

    def __init__(self, seconds: float = CACHE_SECONDS, size: int = CACHE_SIZE) -> None:
        self.seconds = seconds
        self.size = size
        self._checked: OrderedDict[tuple[str | None, str], tuple[float, bool]] = OrderedDict()

    async def is_revoked(self, store: Store, jti: str, tenant: str | None = None) -> bool:
        """True if ``jti`` is on the deny-list of ``store`` (tenant ``tenant``'s, or the main one)."""
        key = (tenant, jti)
        now = time.monotonic()
        cached = self._checked.get(key)
        if cached is not None and (cached[1] or now - cached[0] < self.seconds):
            return cached[1]  # a revocation is final; a "no" is rechecked after `seconds`
        found = await store.checkpoints.get_attachments(REVOKED_THREAD, [jti])
        self._checked[key] = (now, jti in found)
        self._checked.move_to_end(key)
        while len(self._checked) > self.size:
            self._checked.popitem(last=False)
        return jti in found


__all__ = ["REVOKED_THREAD", "RevocationCache", "revoke"]
