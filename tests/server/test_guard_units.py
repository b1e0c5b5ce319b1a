"""The pieces behind the hostile-client defences, without a server: the memory budget's per-token
share, the log rate limit, token redaction and coalesced writes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from relaystore.server.guard import CoalescedWrites, RateLimitedLog, redact
from relaystore.server.web import ByteBudget


async def test_one_owner_cannot_take_more_than_its_share() -> None:
    budget = ByteBudget(100, share=0.5, header_share=0.1)
    assert await budget.reserve(50, "hog") == 50
    blocked = asyncio.create_task(budget.reserve(10, "hog"))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # over its share: waits
    assert await asyncio.wait_for(budget.reserve(40, "other"), 1) == 40  # the rest (bar headers') is theirs
    budget.give(50, "hog")
    assert await asyncio.wait_for(blocked, 1) == 10


async def test_a_cancelled_waiter_gives_nothing_away() -> None:
    budget = ByteBudget(10, share=1.0, header_share=0.0001)  # 1 byte kept for headers
    assert await budget.reserve(9, "a") == 9
    waiter = asyncio.create_task(budget.reserve(5, "b"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.give(9, "a")
    assert budget.free == 10 and budget.held == {}


def test_headers_have_a_slice_that_bodies_never_take() -> None:
    budget = ByteBudget(100, share=1.0, header_share=0.25)
    assert budget.try_take(25, "headers")
    assert not budget.try_take(1, "headers")  # its slice is full: refused, not queued
    budget.give(25, "headers")
    assert not budget.try_take(76, "body")  # bodies leave the header slice alone
    assert budget.try_take(75, "body")
    assert budget.try_take(25, "headers")


def test_the_log_limit_drops_repeats_and_counts_them() -> None:
    limiter = RateLimitedLog(burst=3, window=60)
    record = logging.LogRecord("uvicorn.error", logging.WARNING, "x", 1, "refused %d", (1,), None)
    passed = [limiter.filter(record) for _ in range(100)]
    assert passed.count(True) == 3
    other = logging.LogRecord("uvicorn.error", logging.WARNING, "x", 1, "another message", (), None)
    assert limiter.filter(other)


def test_tokens_are_redacted_from_paths() -> None:
    assert redact("GET /v1/blobs/ab?via=out-1&token=secret HTTP/1.1") == (
        "GET /v1/blobs/ab?via=out-1&token=REDACTED HTTP/1.1"
    )
    assert redact("/v1/blobs/ab?TOKEN=s&x=1") == "/v1/blobs/ab?TOKEN=REDACTED&x=1"


class Recorder:
    """The part of a transport CoalescedWrites writes to: what reached it, in order."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_the_writes_of_one_loop_step_leave_in_one_send() -> None:
    real = Recorder()
    transport = CoalescedWrites(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.write(b"body")
    assert real.writes == []  # nothing until the step ends
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert transport.is_closing() is False  # everything else reaches the real transport
    transport.write(b"last words")
    transport.close()  # a close sends what is pending first
    assert real.writes[-1] == b"last words" and real.closed
