"""Runtime stores: RelaySession against the Agents SDK's SQLiteSession and RedisSession, and
RelaySessionService against ADK's DatabaseSessionService (SQLAlchemy, on SQLite and PostgreSQL).

Each side runs at its defaults. RelaySession is timed on an opened Store (as a server sharing one
store across sessions uses it) and, as a second contender without a target, from a URL (its
store on relaystore's loop thread: one thread hop per call). SQLiteSession runs on its own file,
RedisSession under its own key prefix, DatabaseSessionService on its own file or schema.
Sessions hold 1,000 items (Agents, one add_items per turn) or 200 events (ADK) before the reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents.memory import SQLiteSession
from google.adk.events import Event, EventActions
from google.adk.sessions import BaseSessionService, DatabaseSessionService

import relaystore
from benchmarks.harness import PG_URL, REDIS_URL, Contender, Context, Matchup, Op, Target, case, unique_name
from relaystore.integrations.adk import RelaySessionService
from relaystore.integrations.openai_agents import RelaySession

ITEMS = 1000
EVENTS = 200
AGENTS_PEERS = {"sqlite": "SQLiteSession", "redis": "RedisSession"}
ADK_PEER = "DatabaseSessionService"


def item(i: int) -> dict[str, Any]:
    """A chat message of the size a short turn has (~200 bytes)."""
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}: " + "lorem ipsum " * 12}


# ---------------------------------------------------------------------- Agents SDK


@asynccontextmanager
async def relay_session(ctx: Context, shared_store: bool) -> AsyncIterator[Any]:
    """RelaySession on an opened Store (calls run on the caller's loop), or from a URL (its store
    lives on relaystore's loop thread, one hop per call)."""
    url = ctx.store_url("relay-session")
    if shared_store:
        async with relaystore.connect(url) as store:
            yield RelaySession("bench", store)
        return
    session = RelaySession("bench", url)
    try:
        yield session
    finally:
        await session.close()


@asynccontextmanager
async def native_session(ctx: Context) -> AsyncIterator[Any]:
    if ctx.backend == "sqlite":
        session = SQLiteSession("bench", str(ctx.path("agents.db")))
        try:
            yield session
        finally:
            session.close()
        return
    from agents.extensions.memory.redis_session import RedisSession

    from benchmarks.harness import drop_redis_prefix

    prefix = unique_name("agents", ":")
    ctx.defer(lambda: drop_redis_prefix(prefix))
    redis_session = RedisSession.from_url("bench", url=REDIS_URL, key_prefix=prefix)
    try:
        yield redis_session
    finally:
        await redis_session.close()


def _agents_contender(ctx: Context, label: str, side: str, op: str) -> Contender:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        opener = native_session(ctx) if side == "native" else relay_session(ctx, side == "store")
        async with opener as session:
            if op == "add_items":
                yield lambda i: session.add_items([item(i)])
                return
            for start in range(0, ITEMS, 2):  # one add_items per turn, as the Runner does
                await session.add_items([item(start), item(start + 1)])
            yield lambda i: session.get_items(limit=20)

    return Contender(label, setup)


def _agents_matchup(ctx: Context, op: str) -> Matchup:
    return Matchup(
        _agents_contender(ctx, "RelaySession", "store", op),
        [
            _agents_contender(ctx, AGENTS_PEERS[ctx.backend], "native", op),
            _agents_contender(ctx, "RelaySession from a URL", "url", op),
        ],
    )


AGENT_TARGETS = {peer: Target.at_least(1.0) for peer in AGENTS_PEERS.values()}


@case(
    "runtimes",
    "agents add_items (1 item)",
    n=1000,
    quick_n=100,
    backends=("sqlite", "redis"),
    targets=AGENT_TARGETS,
    quick_backends=("sqlite",),
    note="one add_items call per op on one session; durable commit each",
)
def agents_add_items(ctx: Context) -> Matchup:
    return _agents_matchup(ctx, "add_items")


@case(
    "runtimes",
    "agents get_items(limit=20) of 1,000",
    n=1000,
    quick_n=100,
    backends=("sqlite", "redis"),
    targets=AGENT_TARGETS,
    quick_backends=("sqlite",),
    note="the newest 20 of a 1,000-item session",
    reasons={
        "RedisSession": (
            "RedisSession answers with one LRANGE of a list; RelaySession lists the newest checkpoints "
            "through the generic contract (a sorted-set range, then the metadata documents, each "
            "validated), so Redis round trips and per-row decoding dominate"
        )
    },
)
def agents_get_items(ctx: Context) -> Matchup:
    return _agents_matchup(ctx, "get_items")


# ---------------------------------------------------------------------- ADK


@asynccontextmanager
async def database_service(ctx: Context) -> AsyncIterator[BaseSessionService]:
    if ctx.backend == "sqlite":
        service = DatabaseSessionService(f"sqlite+aiosqlite:///{ctx.path('adk.db')}")
    else:
        import psycopg
        from psycopg import sql

        from benchmarks.cases.checkpoints import private_schema

        schema = private_schema(ctx, "adk")
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
            await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        url = PG_URL.replace("postgresql://", "postgresql+psycopg://")
        service = DatabaseSessionService(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield service
    finally:
        await service.close()


@asynccontextmanager
async def relay_service(ctx: Context) -> AsyncIterator[BaseSessionService]:
    service = RelaySessionService(ctx.store_url("relay-adk"))
    try:
        yield service
    finally:
        await service.close()


def event(i: int) -> Event:
    return Event(
        author="user" if i % 2 == 0 else "model",
        invocation_id=f"inv-{i // 2}",
        actions=EventActions(state_delta={"turn": i, "user:seen": i}),
    )


def _adk_contender(ctx: Context, label: str, native: bool, op: str) -> Contender:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with database_service(ctx) if native else relay_service(ctx) as service:
            session = await service.create_session(app_name="bench", user_id="u", session_id="s")
            if op == "append_event":

                async def append(i: int) -> None:
                    await service.append_event(session, event(i))

                yield append
                return
            for i in range(EVENTS):
                await service.append_event(session, event(i))
            yield lambda i: service.get_session(app_name="bench", user_id="u", session_id="s")

    return Contender(label, setup)


def _adk_matchup(ctx: Context, op: str) -> Matchup:
    return Matchup(
        _adk_contender(ctx, "RelaySessionService", False, op), [_adk_contender(ctx, ADK_PEER, True, op)]
    )


@case(
    "runtimes",
    "adk append_event",
    n=500,
    quick_n=50,
    backends=("sqlite", "postgres"),
    targets={ADK_PEER: Target.at_least(1.0)},
    quick_backends=("sqlite",),
    note="one event with a session and a user: delta per op",
)
def adk_append_event(ctx: Context) -> Matchup:
    return _adk_matchup(ctx, "append_event")


@case(
    "runtimes",
    "adk get_session of 200 events",
    n=300,
    quick_n=30,
    backends=("sqlite", "postgres"),
    targets={ADK_PEER: Target.at_least(1.0)},
    quick_backends=("sqlite",),
    note="whole session: events and merged state",
)
def adk_get_session(ctx: Context) -> Matchup:
    return _adk_matchup(ctx, "get_session")
