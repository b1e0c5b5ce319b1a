"""Body limits (413 while streaming), file_ref roots, ranged blob downloads and a 50 MB round trip."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import relaystore
from relaystore.errors import TooLarge
from relaystore.models import CheckpointMetadata
from relaystore.server.tokens import issue_token
from tests.server.conftest import BODY_LIMIT
from tests.support.relay_server import RelayServer

MB = 1024 * 1024


def final(content: dict[str, Any], task: str = "task-limits") -> dict[str, Any]:
    return {
        "task_id": task,
        "attempt": 0,
        "producer_agent": "p",
        "event": {"type": "final", "ok": True, "content": content},
    }


def test_json_body_over_the_limit_is_413_while_streaming(server: RelayServer, admin: dict[str, str]) -> None:
    def chunked() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield b'{"task_id": "t", "attempt": 0, "producer_agent": "p", '
        yield b'"event": {"type": "progress", "stage": "'
        for _ in range(4):
            yield b"x" * BODY_LIMIT
        yield b'"}}'

    response = httpx.post(f"{server.url}/v1/outputs", content=chunked(), headers=admin)
    assert response.status_code == 413
    assert response.json()["error"] == "TooLarge"


def test_declared_length_over_the_limit_is_413(server: RelayServer, admin: dict[str, str]) -> None:
    response = httpx.post(f"{server.url}/v1/outputs", content=b"x" * (BODY_LIMIT + 1), headers=admin)
    assert response.status_code == 413


async def test_checkpoint_over_the_limit_raises_too_large_and_writes_nothing(server: RelayServer) -> None:
    async with relaystore.connect(server.url, token=server.admin_token) as store:
        metadata = CheckpointMetadata.new("big-thread")
        with pytest.raises(TooLarge):
            await store.checkpoints.save("big-thread", metadata, b"s" * (BODY_LIMIT + 1))
        assert await store.checkpoints.count("big-thread") == 0


@pytest.mark.parametrize(
    ("where", "status"),
    [("inside", 201), ("dotdot", 422), ("symlink", 422), ("elsewhere", 422), ("relative", 422)],
)
def test_file_refs_only_under_file_roots(
    server: RelayServer, admin: dict[str, str], files: Path, tmp_path: Path, where: str, status: int
) -> None:
    (files / "link-out").unlink(missing_ok=True)
    (files / "link-out").symlink_to(tmp_path)
    path = {
        "inside": f"{files}/report.json",
        "dotdot": f"{files}/../outside.json",
        "symlink": f"{files}/link-out/secret.json",
        "elsewhere": "/etc/passwd",
        "relative": "report.json",
    }[where]
    response = httpx.post(
        f"{server.url}/v1/outputs", json=final({"kind": "file_ref", "path": path}), headers=admin
    )
    assert response.status_code == status, response.text


def test_ranged_download(server: RelayServer, admin: dict[str, str]) -> None:
    data = bytes(range(256)) * 40
    blob = httpx.post(f"{server.url}/v1/blobs", content=data, headers={**admin, "Content-Type": "x/y"}).json()
    url = f"{server.url}/v1/blobs/{blob['sha256']}"
    whole = httpx.get(url, headers=admin)
    assert (whole.status_code, whole.content, whole.headers["content-type"]) == (200, data, "x/y")
    part = httpx.get(url, headers={**admin, "Range": "bytes=100-199"})
    assert (part.status_code, part.content) == (206, data[100:200])
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = httpx.get(url, headers={**admin, "Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, data[-10:])
    outside = httpx.get(url, headers={**admin, "Range": f"bytes={len(data)}-"})
    assert outside.status_code == 416
    assert outside.headers["content-range"] == f"bytes */{len(data)}"


def test_agent_reads_a_blob_only_through_an_output_it_may_read(
    server: RelayServer, admin: dict[str, str], signing_key: str, audience: str
) -> None:
    blob = httpx.post(f"{server.url}/v1/blobs", content=b"agent blob", headers=admin).json()
    ref = httpx.post(f"{server.url}/v1/outputs", json=final(blob, task="task-blob"), headers=admin).json()[
        "out_id"
    ]
    url = f"{server.url}/v1/blobs/{blob['sha256']}"

    def status(task: str, **params: str) -> int:
        token = issue_token(signing_key, task=task, attempt=0, producer="p", audience=audience)
        return httpx.get(url, params=params, headers={"Authorization": f"Bearer {token}"}).status_code

    assert status("task-blob", via=ref) == 200
    assert status("task-blob") == 403  # no ?via
    assert status("task-elsewhere", via=ref) == 403  # via an output it may not read


class RssSampler:
    """Samples a process's resident set size on a thread until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.samples += 1

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
async def test_50_mb_blob_round_trips_with_bounded_server_memory(server: RelayServer) -> None:
    size = 50 * MB
    sent = hashlib.sha256()

    async def produce() -> AsyncIterator[bytes]:
        for index in range(size // MB):
            piece = hashlib.shake_256(index.to_bytes(4, "big")).digest(MB)
            sent.update(piece)
            yield piece

    async with relaystore.connect(server.url, token=server.admin_token) as store:
        with RssSampler(server.pid) as rss:
            blob = await store.blobs.put(produce(), mime="application/x-test")
            received = hashlib.sha256()
            async for chunk in await store.blobs.read(blob.sha256):
                received.update(chunk)
    assert blob.size == size
    assert blob.sha256 == sent.hexdigest() == received.hexdigest()
    assert rss.samples > 0
    assert rss.peak < 150 * MB, f"server RSS peaked at {rss.peak / MB:.0f} MB"
    print(f"server RSS peak during 50 MB up+down: {rss.peak / MB:.1f} MB over {rss.samples} samples")


def test_upload_over_the_blob_limit_keeps_nothing(tmp_path: Path) -> None:
    from tests.support.relay_server import start_server

    small = start_server(f"sqlite:///{tmp_path}/b.db", tmp_path, "--blob-limit", "1MiB")
    try:
        admin = {"Authorization": f"Bearer {small.admin_token}"}
        data = os.urandom(MB + 1)
        response = httpx.post(f"{small.url}/v1/blobs", content=iter([data[:MB], data[MB:]]), headers=admin)
        assert response.status_code == 413
        assert httpx.get(f"{small.url}/v1/blobs", headers=admin).json()["items"] == []
    finally:
        small.stop()
