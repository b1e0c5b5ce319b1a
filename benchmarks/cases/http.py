"""Outputs over HTTP (``relaystore serve``) with 16 concurrent clients, beside the same work in-process.

Each contender gets its own fresh SQLite file at the defaults (``synchronous=full``); the HTTP ones
each start ``relaystore serve`` on a free loopback port in front of theirs (setup, untimed). One
timed call is a burst: every one of the 16 clients does a few calls concurrently, so the figures
are appends (gets) per second across all clients. Contenders: the ``http://`` backend (one
``relaystore.connect`` per client, what a Python agent uses), a raw ``POST /v1/outputs`` /
``GET /v1/outputs/{ref}`` with httpx (what a curl or non-Python agent does), and the ``sqlite://``
backend in this process (the ratio is what going over HTTP costs). Each contender's p50/p99
latencies are printed as its facts (``python -m benchmarks --only http/``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

import relaystore
from benchmarks.harness import (
    PG_URL,
    Contender,
    Context,
    Matchup,
    Op,
    Target,
    case,
    drop_pg_schema,
    unique_name,
)
from benchmarks.loadgen import LeanClient

CLIENTS = 16
PER_CLIENT = 4  # calls per client per timed burst
PREFILL = 200  # outputs stored before timing get
HTTP_BACKEND = "relaystore http:// backend"
RAW = "raw httpx (POST/GET /v1/outputs)"
IN_PROCESS = "relaystore sqlite:// in-process"
SERVE = "relaystore serve (lean client)"
BARE = "bare Starlette endpoint (lean client)"

EVENT = {"type": "final", "ok": True, "content": {"kind": "inline", "value": {"summary": "x" * 200}}}
ADMIN = "bench-admin-token"

Call = Callable[[int], Awaitable[Any]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(store_url: str, state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``relaystore serve`` on a free loopback port, once its /healthz answers: (process, base URL)."""
    port = _free_port()
    binary = str(Path(sys.executable).parent / "relaystore")
    argv = [binary, "serve", "--url", store_url, "--port", str(port), "--state-dir", str(state_dir)]
    return _spawn([*argv, "--log-level", "warning"], port)


def _start_bare(db_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """The bare Starlette peer (``benchmarks.peers.bare_http``) in its own process: (process, base URL)."""
    port = _free_port()
    argv = [sys.executable, "-m", "benchmarks.peers.bare_http", "--url", db_url, "--port", str(port)]
    return _spawn([*argv, "--token", ADMIN], port)


def _spawn(argv: list[str], port: int) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        argv,
        env={**os.environ, "RELAYSTORE_ADMIN_TOKEN": ADMIN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{argv[0]} did not start: {' '.join(argv[1:4])}")


def _burst(calls: list[Call]) -> Op:
    async def client(call: Call, i: int) -> None:
        for k in range(PER_CLIENT):
            await call(i * PER_CLIENT + k)

    async def burst(i: int) -> None:
        await asyncio.gather(*(client(call, i) for call in calls))

    return burst


@asynccontextmanager
async def _server(ctx: Context, name: str) -> AsyncIterator[str]:
    db = ctx.path(f"{name}.db")
    async with _process(_start_server, f"sqlite:///{db}", ctx.path(f"{name}-state")) as url:
        yield url


@asynccontextmanager
async def _process(
    start: Callable[..., tuple[subprocess.Popen[bytes], str]], *args: Any
) -> AsyncIterator[str]:
    """``start(*args)`` on a thread; its base URL; SIGTERM (then kill) when done."""
    process, url = await asyncio.to_thread(start, *args)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except Exception:
            process.kill()
            process.wait()


async def _library_clients(stack: AsyncExitStack, url: str, **options: Any) -> list[relaystore.Store]:
    return [await stack.enter_async_context(relaystore.connect(url, **options)) for _ in range(CLIENTS)]


def _contender(ctx: Context, label: str, timed: str) -> Contender:
    """``timed`` is "append" or "get"; the label says which way the calls go.

    Each call's latency is kept too, and reported as p50/p99 (ms) beside the throughput.
    """
    latencies: list[float] = []
    facts: dict[str, Any] = {}

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with AsyncExitStack() as stack:
            if label == IN_PROCESS:
                store = await stack.enter_async_context(
                    relaystore.connect(f"sqlite:///{ctx.path('local.db')}")
                )
                stores = [store] * CLIENTS  # one store in-process: concurrency is its own business
                seed = store
            else:
                url = await stack.enter_async_context(_server(ctx, "raw" if label == RAW else "lib"))
                stores = await _library_clients(stack, url, token=ADMIN) if label == HTTP_BACKEND else []
                seed = await stack.enter_async_context(relaystore.connect(url, token=ADMIN))
            refs = await _prefill(seed, PREFILL if timed == "get" else 0)
            if label == RAW:
                clients = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"})
                    )
                    for _ in range(CLIENTS)
                ]
                calls = [_raw_call(client, c, timed, refs) for c, client in enumerate(clients)]
            else:
                calls = [_store_call(store, c, timed, refs) for c, store in enumerate(stores)]
            yield _burst([_timed(call, latencies) for call in calls])
        facts.update(_percentiles(latencies))

    return Contender(label, setup, facts)


def _timed(call: Call, latencies: list[float]) -> Call:
    async def run(i: int) -> Any:
        started = time.perf_counter()
        result = await call(i)
        latencies.append(time.perf_counter() - started)
        return result

    return run


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        return {}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50 ms": round(1000 * cuts[49], 2), "p99 ms": round(1000 * cuts[98], 2)}


async def _prefill(store: relaystore.Store, count: int) -> list[str]:
    """``count`` outputs appended by CLIENTS concurrent loops (untimed); their refs."""

    async def loop(c: int) -> list[str]:
        return [await store.outputs.append(f"seed-{c}", 0, "agent", EVENT) for _ in range(c, count, CLIENTS)]

    return [ref for refs in await asyncio.gather(*(loop(c) for c in range(CLIENTS))) for ref in refs]


def _store_call(store: relaystore.Store, c: int, timed: str, refs: list[str]) -> Call:
    if timed == "append":
        return lambda i: store.outputs.append(f"task-{c}", 0, "agent", EVENT)
    return lambda i: store.outputs.get(refs[(i * 7919 + c) % len(refs)])


def _raw_call(client: httpx.AsyncClient, c: int, timed: str, refs: list[str]) -> Call:
    body = {"task_id": f"raw-{c}", "attempt": 0, "producer_agent": "agent", "event": EVENT}

    async def emit(_i: int) -> None:
        (await client.post("/v1/outputs", json=body)).raise_for_status()

    async def get(i: int) -> None:
        (await client.get(f"/v1/outputs/{refs[(i * 7919 + c) % len(refs)]}")).raise_for_status()

    return emit if timed == "append" else get


@case(
    "http",
    f"append (emit), {CLIENTS} concurrent clients",
    n=30,
    quick_n=3,
    repeats=5,
    quick_repeats=3,
    unit="appends/s",
    ops_per_call=CLIENTS * PER_CLIENT,
    note=f"a small `final` output (~0.3 KB); one call = {CLIENTS} clients × {PER_CLIENT} appends "
    "concurrently; server and in-process store on fresh SQLite files, synchronous=full",
)
def http_append(ctx: Context) -> Matchup:
    return Matchup(
        _contender(ctx, HTTP_BACKEND, "append"),
        [_contender(ctx, RAW, "append"), _contender(ctx, IN_PROCESS, "append")],
    )


@case(
    "http",
    f"get by ref, {CLIENTS} concurrent clients",
    n=40,
    repeats=5,
    in_quick=False,  # two servers and a prefill over HTTP: ~15 s, too much for the 2-minute subset
    unit="gets/s",
    ops_per_call=CLIENTS * PER_CLIENT,
    note=f"random refs among {PREFILL} stored outputs; one call = {CLIENTS} clients × {PER_CLIENT} gets",
)
def http_get(ctx: Context) -> Matchup:
    return Matchup(
        _contender(ctx, HTTP_BACKEND, "get"),
        [_contender(ctx, RAW, "get"), _contender(ctx, IN_PROCESS, "get")],
    )


# --------------------------------------------------------------------------- serve vs a bare endpoint


def _bare_db(ctx: Context) -> str:
    """The bare peer's own database: a file beside ours, or a schema of its own (dropped after)."""
    if ctx.backend == "sqlite":
        return f"sqlite:///{ctx.path('bare.db')}"
    schema = unique_name("bare http")
    ctx.defer(lambda: drop_pg_schema(schema))
    return f"{PG_URL}?schema={schema}"


def _served(ctx: Context, label: str, timed: str) -> Contender:
    """``relaystore serve`` (SERVE) or the bare peer (BARE) on this case's backend, driven by the
    same 16 lean clients (benchmarks/loadgen.py); p50/p99 (ms) of their calls as facts."""
    latencies: list[float] = []
    facts: dict[str, Any] = {}

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with AsyncExitStack() as stack:
            if label == SERVE:
                started = _process(_start_server, ctx.store_url("serve"), ctx.path("serve-state"))
            else:
                started = _process(_start_bare, _bare_db(ctx))
            port = int((await stack.enter_async_context(started)).rsplit(":", 1)[1])
            clients = [
                await stack.enter_async_context(LeanClient("127.0.0.1", port, ADMIN)) for _ in range(CLIENTS)
            ]
            refs = await _prefill_lean(clients, PREFILL if timed == "get" else 0)
            calls = [_lean_call(client, c, timed, refs) for c, client in enumerate(clients)]
            yield _burst([_timed(call, latencies) for call in calls])
        facts.update(_percentiles(latencies))

    return Contender(label, setup, facts)


def _emit_body(task: str) -> bytes:
    return json.dumps({"task_id": task, "attempt": 0, "producer_agent": "agent", "event": EVENT}).encode()


def _ok(answer: tuple[int, bytes]) -> bytes:
    status, body = answer
    if status >= 300:
        raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
    return body


async def _prefill_lean(clients: list[LeanClient], count: int) -> list[str]:
    body = _emit_body("seed")

    async def loop(c: int) -> list[str]:
        answers = [_ok(await clients[c].post("/v1/outputs", body)) for _ in range(c, count, CLIENTS)]
        return [json.loads(answer)["out_id"] for answer in answers]

    return [ref for refs in await asyncio.gather(*(loop(c) for c in range(CLIENTS))) for ref in refs]


def _lean_call(client: LeanClient, c: int, timed: str, refs: list[str]) -> Call:
    body = _emit_body(f"lean-{c}")

    async def emit(_i: int) -> None:
        _ok(await client.post("/v1/outputs", body))

    async def get(i: int) -> None:
        _ok(await client.get(f"/v1/outputs/{refs[(i * 7919 + c) % len(refs)]}"))

    return emit if timed == "append" else get


BARE_NOTE = (
    "both servers under uvicorn (h11) in their own process, driven by the same {clients} lean "
    "clients (benchmarks/loadgen.py: httpx would cost more CPU than the servers); the bare peer "
    "(benchmarks/peers/bare_http.py) checks a bearer string and does {work} "
    "per request (SQLite: WAL, synchronous=FULL, one connection on one thread; PostgreSQL: a "
    "1–10 pool, autocommit); p50/p99 are per call"
)


@case(
    "http",
    f"serve vs bare Starlette: append (emit), {CLIENTS} concurrent clients",
    backends=("sqlite", "postgres"),
    n=30,
    repeats=5,
    in_quick=False,  # two servers per backend: the full run only
    unit="appends/s",
    ops_per_call=CLIENTS * PER_CLIENT,
    targets={BARE: Target.at_least(2.0)},
    note=BARE_NOTE.format(clients=CLIENTS, work="one INSERT and one COMMIT"),
    reasons={
        BARE: (
            "both servers are bound by CPU on this 2-core machine, not by the disk: a plain SQLite "
            "commit here takes about 0.4 ms, so group commit (which removes fsync time only) gives "
            "relaystore its lead on sqlite; 2x would need half the bare stack's CPU per request. "
            "On postgres relaystore's server spends about 270 µs more CPU per request than the bare "
            "one (measured with cProfile: auth, validation, models, routing; the database call is "
            "as cheap as the peer's)"
        )
    },
)
def http_append_vs_bare(ctx: Context) -> Matchup:
    return Matchup(_served(ctx, SERVE, "append"), [_served(ctx, BARE, "append")])


@case(
    "http",
    f"serve vs bare Starlette: get by ref, {CLIENTS} concurrent clients",
    backends=("sqlite", "postgres"),
    n=40,
    repeats=5,
    in_quick=False,
    unit="gets/s",
    ops_per_call=CLIENTS * PER_CLIENT,
    targets={BARE: Target.at_least(0.8)},
    note=BARE_NOTE.format(clients=CLIENTS, work="one SELECT by primary key, answered as stored"),
    reasons={
        BARE: (
            "the bare endpoint returns the row's JSON text as stored; relaystore's server checks the "
            "token's scope, reads the record into its model and answers it: about 270 µs more CPU "
            "per request on postgres (cProfile), where the database call costs the same"
        )
    },
)
def http_get_vs_bare(ctx: Context) -> Matchup:
    return Matchup(_served(ctx, SERVE, "get"), [_served(ctx, BARE, "get")])
