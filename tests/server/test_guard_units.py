"""The pieces behind the hostile-client defences, without a server: the memory budget's per-token
share, the log rate limit and token redaction."""

from __future__ import annotations

import asyncio
import logging

import pytest

from relaystore.server.guard import RateLimitedLog, redact
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
