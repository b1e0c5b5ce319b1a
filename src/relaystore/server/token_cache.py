"""Verified agent tokens, remembered: a JWT's signature check is ~40 µs of every agent request.

An agent sends the same token on every call. Once its signature, audience and claims have been
checked, the principal it stands for cannot change, only expire, so it is kept until its ``exp``
(re-checked on every hit) or until the cache is full (it is then emptied: the next calls verify
again). Keys hold the signing key and audience too, so a server's other tenants or a rotated key
never see an entry they did not verify. Revocation is checked apart from this, on every request
(``server/revocation.py``), so a revoked token is refused as before.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

Principal = TypeVar("Principal")  # what a verified token stands for (tokens.Principal)

MAX_ENTRIES = 4096

_Key = tuple[str, str, str]  # (token, audience, signing key)


class VerifiedTokens(Generic[Principal]):
    """``get(key)`` → the principal of a token verified before and not yet expired, else None."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[_Key, tuple[Principal, float]] = {}

    def get(self, key: _Key) -> Principal | None:
        found = self._entries.get(key)
        if found is None:
            return None
        principal, expires = found
        if time.time() >= expires:
            del self._entries[key]
            return None
        return principal

    def put(self, key: _Key, principal: Principal, expires: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # a flood of distinct tokens costs a re-verify, never memory
        self._entries[key] = (principal, expires)
