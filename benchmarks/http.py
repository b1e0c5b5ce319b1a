"""Output appends over HTTP (``relaystore serve``) beside the same appends in-process.

    python -m benchmarks.http                      # 16 clients x 200 appends each
    python -m benchmarks.http --clients 16 --per-client 500 --synchronous normal

``bench_http(...)`` starts ``relaystore serve`` on a free loopback port in front of a fresh SQLite
file, and measures three ways of appending the same small ``final`` output with ``clients``
concurrent writers: the ``http://`` backend (``store.outputs.append``, one connection pool per
client), a raw ``POST /v1/outputs`` with httpx (what a non-Python agent does), and the
``sqlite://`` backend in this process on another fresh file. It returns throughput (appends/s)
and per-call latency percentiles (ms) for each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

import relaystore

EVENT = {"type": "final", "ok": True, "content": {"kind": "inline", "value": {"summary": "x" * 200}}}
ADMIN = "bench-admin-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(store_url: str, state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    binary = str(Path(sys.executable).parent / "relaystore")
    process = subprocess.Popen(
        [
            binary,
            "serve",
            "--url",
            store_url,
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "RELAYSTORE_ADMIN_TOKEN": ADMIN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("relaystore serve did not start")


async def _drive(
    clients: int, per_client: int, make: Callable[[int], Awaitable[Callable[[int], Awaitable[Any]]]]
) -> dict[str, float]:
    """Run ``clients`` concurrent loops of ``per_client`` calls; throughput and latency figures."""
    calls = [await make(c) for c in range(clients)]
    latencies: list[float] = []

    async def loop(call: Callable[[int], Awaitable[Any]]) -> None:
        for i in range(per_client):
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop(call) for call in calls))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "appends": len(latencies),
        "seconds": round(elapsed, 3),
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


async def bench_http(clients: int = 16, per_client: int = 200, synchronous: str = "full") -> dict[str, Any]:
    """Appends/s and p50/p99 ms for the http backend, raw HTTP emit and in-process sqlite."""
    directory = Path(tempfile.mkdtemp(prefix="relaystore-bench-http-"))
    query = f"?synchronous={synchronous}"
    process, url = _start_server(f"sqlite:///{directory}/server.db{query}", directory / "state")
    closers: list[Callable[[], Awaitable[None]]] = []
    results: dict[str, Any] = {"clients": clients, "per_client": per_client, "synchronous": synchronous}
    try:

        async def library_client(c: int) -> Callable[[int], Awaitable[Any]]:
            store = await relaystore.connect(url, token=ADMIN)
            closers.append(store.close)
            return lambda i: store.outputs.append(f"bench-{c}", 0, "agent", EVENT)

        async def raw_client(c: int) -> Callable[[int], Awaitable[Any]]:
            client = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"})
            closers.append(client.aclose)
            body = {"task_id": f"raw-{c}", "attempt": 0, "producer_agent": "agent", "event": EVENT}

            async def emit(_i: int) -> None:
                (await client.post("/v1/outputs", json=body)).raise_for_status()

            return emit

        local = await relaystore.connect(f"sqlite:///{directory}/local.db{query}")
        closers.append(local.close)

        async def local_client(c: int) -> Callable[[int], Awaitable[Any]]:
            return lambda i: local.outputs.append(f"bench-{c}", 0, "agent", EVENT)

        results["http_backend"] = await _drive(clients, per_client, library_client)
        results["http_raw_emit"] = await _drive(clients, per_client, raw_client)
        results["in_process_sqlite"] = await _drive(clients, per_client, local_client)
    finally:
        for close in closers:
            await close()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=200)
    parser.add_argument("--synchronous", default="full", choices=["full", "normal", "off"])
    args = parser.parse_args()
    print(json.dumps(asyncio.run(bench_http(args.clients, args.per_client, args.synchronous)), indent=2))


if __name__ == "__main__":
    main()
