"""Rules every backend shares, stated once: options, stale uploads, compare-and-set retries.

A backend states its own *mechanism* (a Lua script, a SQL statement, a lock file); the numbers that
decide when to give up, how long to wait and what counts as abandoned live here, so that two
backends never disagree about them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

STALE_UPLOAD_SECONDS = 86_400
"""An unfinished blob upload older than this (seconds) belongs to a writer that died; it is removed."""


class BackendOptions(BaseModel):
    """Typed options of one backend, parsed once from a URL and keyword options by its ``parse_url``.

    Each backend subclasses it with its own fields; ``scheme`` and ``url`` (password removed where
    the backend has one) are common to all. A backend whose data lives in local files adds
    ``local_path`` (the database file or root directory; None for a private in-memory one): the
    server keeps its secrets beside it. Frozen, so a parsed value can be shared.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    scheme: str
    url: str


@dataclass(frozen=True)
class RetryBudget:
    """How often an optimistic (compare-and-set) update retries, and how long it backs off.

    ``attempts`` rounds at most; between rounds, a randomized exponential backoff measured in units
    of the last round's own duration (at least ``floor`` seconds), capped at ``cap`` seconds.
    Losers step aside instead of all redoing a large decode-apply-encode at once and mostly losing
    again.
    """

    attempts: int = 1000
    floor: float = 0.001
    cap: float = 0.05

    def pause(self, attempt: int, spent: float) -> float:
        """Seconds to wait after losing round ``attempt`` (0-based) that took ``spent`` seconds."""
        unit = max(spent, self.floor)
        return min(random.random() * unit * 2 ** min(attempt, 5), self.cap)

    async def run(
        self, round_: Callable[[], Awaitable[tuple[bool, T]]], gave_up: Callable[[], Exception]
    ) -> T:
        """Call ``round_`` until it returns ``(True, value)``; then return ``value``.

        ``round_`` returns ``(False, _)`` when another writer won. After ``attempts`` lost rounds,
        raises ``gave_up()``.
        """
        for attempt in range(self.attempts):
            began = time.monotonic()
            done, value = await round_()
            if done:
                return value
            await asyncio.sleep(self.pause(attempt, time.monotonic() - began))
        raise gave_up()


CAS_BUDGET = RetryBudget()
"""The one compare-and-set budget of every backend's ``update_*`` (Redis, HTTP, …)."""


def describe(options: BackendOptions) -> dict[str, Any]:
    """The options as plain values for ``info()`` and logs (the URL already carries no password)."""
    return options.model_dump(mode="json")
