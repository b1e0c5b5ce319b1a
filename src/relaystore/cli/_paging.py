"""Walking cursor-paged listings, shared by the view and transfer commands."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from relaystore.models.common import Page

T = TypeVar("T")

# Items asked for per round trip: large enough to be quick, small enough to bound memory.
PAGE_SIZE = 200

# A listing method such as ``store.outputs.list``, called as ``fetch(limit=..., cursor=...)``;
# bind any other argument with functools.partial.
Fetch = Callable[..., Awaitable[Page[T]]]


async def collect(fetch: Fetch[T], limit: int, cursor: str | None = None) -> tuple[list[T], str | None]:
    """Up to ``limit`` items (0 means all) from ``cursor`` on, and the cursor to continue from.

    ``fetch(limit=, cursor=)`` returns one page; the last page fetched is sized so that its
    ``next_cursor`` is exactly where the caller should resume.
    """
    items: list[T] = []
    while True:
        want = PAGE_SIZE if limit == 0 else min(PAGE_SIZE, limit - len(items))
        page = await fetch(limit=want, cursor=cursor)
        items.extend(page)
        cursor = page.next_cursor
        if cursor is None or (limit and len(items) >= limit):
            return items, cursor


async def every(fetch: Fetch[T]) -> AsyncIterator[T]:
    """Every item of a listing, one page in memory at a time."""
    cursor: str | None = None
    while True:
        page = await fetch(limit=PAGE_SIZE, cursor=cursor)
        for item in page:
            yield item
        cursor = page.next_cursor
        if cursor is None:
            return
