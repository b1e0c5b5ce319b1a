"""Adaptive compare-and-set over HTTP loses no update; SIGTERM lets an in-flight upload finish."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx

import relaystore
from relaystore.models import AccumulatorState
from tests.support.relay_server import RelayServer, start_server


def bump(state: AccumulatorState | None) -> AccumulatorState:
    state = state or AccumulatorState()
    node = state.nodes.setdefault("", AccumulatorState.model_validate({"nodes": {"": {}}}).nodes[""])
    node.all_remaining_calls.count += 1
    return state


async def test_concurrent_updaters_over_http_lose_nothing(server: RelayServer) -> None:
    writers, rounds = 6, 8

    async def updater() -> None:
        async with relaystore.connect(server.url, token=server.admin_token) as store:
            for _ in range(rounds):
                await store.adaptive.update_accumulators("cas-agent", bump)

    await asyncio.gather(*(updater() for _ in range(writers)))
    async with relaystore.connect(server.url, token=server.admin_token) as store:
        final = await store.adaptive.load_accumulators("cas-agent")
    assert final is not None and final.nodes[""].all_remaining_calls.count == writers * rounds


def test_stale_if_match_is_412_and_writes_nothing(server: RelayServer, admin: dict[str, str]) -> None:
    url = f"{server.url}/v1/adaptive/docs/accumulators"
    first = httpx.put(url, params={"key": "cas-412"}, json={"nodes": {}}, headers=admin)
    etag = first.headers["etag"]
    second = httpx.put(
        url, params={"key": "cas-412"}, json={"nodes": {"a": {}}}, headers={**admin, "If-Match": etag}
    )
    assert second.status_code == 200
    stale = httpx.put(
        url, params={"key": "cas-412"}, json={"nodes": {"b": {}}}, headers={**admin, "If-Match": etag}
    )
    assert (stale.status_code, stale.json()["error"]) == (412, "Conflict")
    current = httpx.get(url, params={"key": "cas-412"}, headers=admin)
    assert '"a"' in current.text and current.headers["etag"] == second.headers["etag"]


def test_sigterm_lets_an_in_flight_upload_finish(tmp_path: Path) -> None:
    database = tmp_path / "graceful.db"
    running = start_server(f"sqlite:///{database}", tmp_path)
    first_sent = threading.Event()
    data = [hashlib.shake_256(bytes([i])).digest(256 * 1024) for i in range(8)]

    def body() -> Iterator[bytes]:
        yield data[0]
        first_sent.set()
        yield from data[1:]

    def stop_when_started() -> None:
        first_sent.wait()
        running.process.send_signal(signal.SIGTERM)

    stopper = threading.Thread(target=stop_when_started)
    stopper.start()
    try:
        response = httpx.post(
            f"{running.url}/v1/blobs",
            content=body(),
            headers={"Authorization": f"Bearer {running.admin_token}"},
        )
    finally:
        stopper.join()
        code = running.stop()
    assert response.status_code == 201
    assert response.json()["sha256"] == hashlib.sha256(b"".join(data)).hexdigest()
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    # The store was closed in the lifespan: SQLite removes the WAL file when its last connection closes.
    assert not database.with_name(database.name + "-wal").exists()
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT size FROM blobs").fetchall() == [(len(data) * 256 * 1024,)]
