"""Peak memory of two large reads/writes on the sqlite store (full run only).

``await bench_memory()`` returns, per scenario, the process RSS before, its peak while the
operation ran (psutil, sampled every 2 ms on a thread) and the growth, in MB (10^6 bytes):

- ``list_runs`` of 10,000 runs (one agent, ~0.8 KB each) in one call (``limit=None``), parsed
  into RunRecord models: the growth is the page of 10,000 models.
- a 50 MB blob round trip: ``blobs.put`` from an async stream of 1 MB chunks, then
  ``blobs.read`` back chunk by chunk (digest checked, nothing kept): streaming keeps the growth
  far below the blob's size.

Run alone with ``python -m benchmarks --only extra/memory``.
"""

from __future__ import annotations

import gc
import hashlib
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

import relaystore
from benchmarks.payloads import run_record

RUNS = 10_000
BLOB_MB = 50
CHUNK = 1_000_000
MB = 1e6
BLOB_LIMIT_MB = 25.0  # a streaming round trip must grow RSS by less than half the blob


class PeakSampler:
    """Samples this process's RSS on a daemon thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.002) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


async def measure(work: Callable[[], Awaitable[Any]]) -> tuple[dict[str, float], Any]:
    """RSS before, peak during and growth (MB) while ``work()`` runs, and its result."""
    gc.collect()
    before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    with PeakSampler() as sampler:
        result = await work()
    seconds = time.perf_counter() - started
    figures = {
        "rss_before_mb": round(before / MB, 1),
        "peak_rss_mb": round(sampler.peak / MB, 1),
        "growth_mb": round((sampler.peak - before) / MB, 1),
        "seconds": round(seconds, 2),
    }
    return figures, result


async def list_runs_10k(directory: Path) -> dict[str, Any]:
    url = f"sqlite:///{directory / 'runs.db'}"
    async with relaystore.connect(url, synchronous="off") as store:
        for i in range(RUNS):
            await store.adaptive.store_run(run_record("mem-agent", i))
    async with relaystore.connect(url) as store:

        async def work() -> int:
            page = await store.adaptive.list_runs("mem-agent")
            return len(page)

        figures, count = await measure(work)
    assert count == RUNS, count
    return {"what": f"list_runs of {RUNS:,} runs in one call (parsed)", **figures}


async def blob_round_trip(directory: Path) -> dict[str, Any]:
    async with relaystore.connect(f"sqlite:///{directory / 'blobs.db'}") as store:
        digest = hashlib.sha256()

        async def stream() -> AsyncIterator[bytes]:
            for k in range(BLOB_MB):
                chunk = hashlib.sha256(str(k).encode()).digest() * (
                    CHUNK // 32
                )  # 1 MB, not compressible by SQLite
                chunk += bytes(CHUNK - len(chunk))
                digest.update(chunk)
                yield chunk

        async def work() -> tuple[int, str]:
            blob = await store.blobs.put(stream())
            back, size = hashlib.sha256(), 0
            async for chunk in await store.blobs.read(blob.sha256):
                back.update(chunk)
                size += len(chunk)
            return size, back.hexdigest()

        figures, (size, sha) = await measure(work)
    assert size == BLOB_MB * CHUNK and sha == digest.hexdigest()
    return {"what": f"{BLOB_MB} MB blob: put from an async stream, read back in chunks", **figures}


async def bench_memory() -> dict[str, Any]:
    """Both scenarios, each on a fresh sqlite file; figures in MB (10^6 bytes)."""
    with tempfile.TemporaryDirectory(prefix="relaystore-bench-memory-") as tmp:
        blob = await blob_round_trip(Path(tmp))  # first: list_runs leaves its page's arenas in RSS
        runs = await list_runs_10k(Path(tmp))
    blob["check"] = {
        "met": blob["growth_mb"] < BLOB_LIMIT_MB,
        "text": f"RSS grows {blob['growth_mb']} MB < {BLOB_LIMIT_MB:g} MB (streams, never holds the blob)",
    }
    return {
        "note": "sqlite store; RSS sampled every 2 ms on a thread (psutil); MB = 10^6 bytes; "
        "growth = peak during the call − RSS just before it.",
        "list_runs_10k": runs,
        "blob_50mb": blob,
    }
