"""How many callers are in flight in this process: a hint for backends that batch writes.

An embedded store cannot tell one caller from many by itself: a small SQLite write runs on the
event loop thread and finishes before the next caller's turn, so writes never overlap and never
share a commit. A front end that answers many callers at once (``relaystore serve``) counts its
requests here; while others are in flight, a backend sends its writes through its group commit
(``backends/_group_commit.py``) instead, so concurrent writes share one transaction and one fsync
and the event loop keeps serving while the disk syncs. Library callers never touch it (0).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_in_flight = 0


@contextmanager
def caller() -> Iterator[None]:
    """Count the enclosed block as one caller in flight (the server wraps each request in it)."""
    global _in_flight
    _in_flight += 1
    try:
        yield
    finally:
        _in_flight -= 1


def concurrent() -> bool:
    """True while more than one caller is in flight: a write would soon have company."""
    return _in_flight > 1
