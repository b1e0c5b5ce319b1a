"""Many large requests at once cannot exhaust the server's memory (issue 8: 100 × 8 MiB)."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from tests.server.test_limits_and_blobs import MB, RssSampler
from tests.support.relay_server import RelayServer, start_server

CLIENTS = 100
SIZE = 8 * MB
RSS_BOUND = 300 * MB  # the bodies alone would be 800 MiB if the server held them all


@pytest.fixture
def big_server(tmp_path_factory: pytest.TempPathFactory) -> RelayServer:
    directory = tmp_path_factory.mktemp("memory-bound")
    running = start_server(f"sqlite:///{directory}/m.db?synchronous=normal", directory)
    yield running  # type: ignore[misc]  # one server per test: RSS never shrinks back
    running.stop()


def content(index: int) -> bytes:
    return hashlib.shake_256(index.to_bytes(4, "big")).digest(SIZE)


async def upload_all(server: RelayServer, request: object) -> list[int]:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits, timeout=300) as client:
        responses = await asyncio.gather(*(request(client, i) for i in range(CLIENTS)))  # type: ignore[operator]
    return [r.status_code for r in responses]


async def post_json(client: httpx.AsyncClient, index: int) -> httpx.Response:
    # just under the 8 MiB body limit, and invalid (attempt -1): parsed, refused, nothing stored
    filler = "x" * (SIZE - 300)
    body = {
        "task_id": f"t{index}",
        "attempt": -1,
        "producer_agent": "p",
        "event": {"type": "final", "ok": True, "content": {"kind": "inline", "value": filler}},
    }
    return await client.post("/v1/outputs", json=body)


async def post_blob(client: httpx.AsyncClient, index: int) -> httpx.Response:
    data = content(index)

    async def stream():  # type: ignore[no-untyped-def]
        for start in range(0, SIZE, MB):
            yield data[start : start + MB]

    return await client.post("/v1/blobs", content=stream())


@pytest.mark.slow
async def test_100_concurrent_8_mib_json_bodies_keep_rss_bounded(big_server: RelayServer) -> None:
    with RssSampler(big_server.pid) as rss:
        statuses = await upload_all(big_server, post_json)
    assert statuses == [422] * CLIENTS
    print(f"server RSS peak, {CLIENTS} x 8 MiB JSON bodies: {rss.peak / MB:.0f} MB")
    assert rss.peak < RSS_BOUND, f"server RSS peaked at {rss.peak / MB:.0f} MB"


@pytest.mark.slow
async def test_100_concurrent_8_mib_blob_uploads_keep_rss_bounded(big_server: RelayServer) -> None:
    with RssSampler(big_server.pid) as rss:
        statuses = await upload_all(big_server, post_blob)
    assert statuses == [201] * CLIENTS
    print(f"server RSS peak, {CLIENTS} x 8 MiB blob uploads: {rss.peak / MB:.0f} MB")
    assert rss.peak < RSS_BOUND, f"server RSS peaked at {rss.peak / MB:.0f} MB"
