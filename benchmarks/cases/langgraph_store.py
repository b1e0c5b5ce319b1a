"""LangGraph long-term memory: RelayStore against LangGraph's own stores, in the same run.

Peers: ``InMemoryStore`` on memory, ``AsyncSqliteStore`` on sqlite, ``AsyncPostgresStore`` on
postgres (each in its own file or schema). Every contender is driven through the async
``BaseStore`` API (``aput``/``aget``/``asearch``), as a graph node calling ``await store.aput``
would. Reads run over 10,000 prefilled items (prefilled in batches, untimed); each contender
records how much its process RSS grew during that prefill (``prefill RSS MiB``), the memory row
the issue asks for.

The vector-search case (sqlite) embeds with a deterministic hash embedding (64 dims, numpy): it
times the store's search, not a model. Its peer is InMemoryStore with the same index, since
``AsyncSqliteStore``'s vector search needs sqlite-vec loaded into a stdlib ``sqlite3`` that
cannot load extensions here.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import psycopg
from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, PutOp
from langgraph.store.memory import InMemoryStore
from langgraph.store.postgres import AsyncPostgresStore
from langgraph.store.sqlite.aio import AsyncSqliteStore
from psycopg import sql

from benchmarks.harness import PG_URL, Contender, Context, Matchup, Op, Target, case
from benchmarks.report import rss_mb
from relaystore.integrations.langgraph_store import RelayStore

RELAY = "RelayStore"
PEERS = {"memory": "InMemoryStore", "sqlite": "AsyncSqliteStore", "postgres": "AsyncPostgresStore"}
ITEMS = 10_000
NAMESPACES = 20
FILL_BATCH = 500
DIMS = 64


class HashEmbeddings(Embeddings):
    """A vector per text from a seeded RNG: deterministic, fast, no model."""

    def _one(self, text: str) -> list[float]:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(DIMS).tolist()  # type: ignore[no-any-return]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._one(text)


def namespace(i: int) -> tuple[str, ...]:
    return ("users", f"u{i % NAMESPACES}", "memories")


def value(i: int) -> dict[str, Any]:
    return {"text": f"memory number {i} about topic {i % 97}", "n": i, "kind": ("fact", "pref")[i % 2]}


@asynccontextmanager
async def opened(ctx: Context, label: str, relay: bool, index: bool) -> AsyncIterator[BaseStore]:
    config: Any = {"dims": DIMS, "embed": HashEmbeddings(), "fields": ["text"]} if index else None
    if relay:
        async with RelayStore.from_url(ctx.store_url(label), index=config) as store:
            yield store
    elif ctx.backend == "memory" or index:
        yield InMemoryStore(index=config)
    elif ctx.backend == "sqlite":
        async with AsyncSqliteStore.from_conn_string(str(ctx.path(f"{label}.db"))) as store:
            await store.setup()
            yield store
    else:
        from benchmarks.cases.checkpoints import private_schema

        schema = private_schema(ctx, f"lgs_{label}")
        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
            await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        async with AsyncPostgresStore.from_conn_string(f"{PG_URL}?options=-csearch_path%3D{schema}") as store:
            await store.setup()
            yield store


async def prefill(store: BaseStore, count: int) -> None:
    for start in range(0, count, FILL_BATCH):
        ops = [PutOp(namespace(i), f"k{i}", value(i)) for i in range(start, min(start + FILL_BATCH, count))]
        await store.abatch(ops)


def contender(ctx: Context, label: str, relay: bool, op: str, index: bool = False) -> Contender:
    facts: dict[str, Any] = {}

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with opened(ctx, label.lower(), relay, index) as store:
            before = rss_mb()
            if op != "put":
                await prefill(store, ITEMS)
            after = rss_mb()
            if before is not None and after is not None:
                facts["prefill RSS MiB"] = round(after - before, 1)
            if op == "put":
                yield lambda i: store.aput(namespace(i), f"new{i}", value(i))
            elif op == "get":  # an item that exists: k lives in namespace(k)
                yield lambda i: store.aget(namespace((i * 7919) % ITEMS), f"k{(i * 7919) % ITEMS}")
            elif op == "search filter":
                yield lambda i: store.asearch(
                    ("users", f"u{i % NAMESPACES}"), filter={"n": {"$gt": (i * 37) % ITEMS}}, limit=10
                )
            else:
                yield lambda i: store.asearch(("users",), query=f"topic {i % 97}", limit=10)

    return Contender(label, setup, facts)


def matchup(ctx: Context, op: str) -> Matchup:
    peer = PEERS[ctx.backend]
    return Matchup(contender(ctx, RELAY, True, op), [contender(ctx, peer, False, op)])


TARGETS = {
    "InMemoryStore": Target.at_least(1.0),
    "AsyncPostgresStore": Target.at_least(1.5),
    "AsyncSqliteStore": Target.at_least(1.0),
}
REASONS = {
    "InMemoryStore": (
        "InMemoryStore files the caller's dict as is; RelayStore checks labels and key, proves the "
        "value is storable JSON, copies it (so a caller mutating it cannot change the store) and "
        "keeps created_at: per-call Python that no database hides on memory."
    ),
    "AsyncPostgresStore": (
        "A RelayStore put is one upsert statement and one durable commit, which alone (the WAL "
        "fdatasync, about 0.8 ms on the dev machine) is most of either store's put; a filtered search "
        "checks each operand's JSON type before comparing (what makes $gt 50 right), one round trip "
        "as the peer's."
    ),
    "AsyncSqliteStore": "RelayStore commits with synchronous=FULL (durable).",
}


def _case(op: str, n: int, quick_n: int, backends: tuple[str, ...]) -> None:
    @case(
        "langgraph-store",
        op if op == "put" else f"{op} at 10k items",
        n=n,
        quick_n=quick_n,
        repeats=5,
        quick_repeats=3,
        backends=backends,
        quick_backends=("memory",),
        n_scale={"memory": 4},
        targets=TARGETS,
        reasons=REASONS,
        note=f"{ITEMS:,} items in {NAMESPACES} namespaces ('users', uN, 'memories') for reads; "
        "search: filter n > X within one user, limit 10",
    )
    def build(ctx: Context) -> Matchup:
        return matchup(ctx, op)


_case("put", 300, 100, ("memory", "sqlite", "postgres"))
_case("get", 500, 150, ("memory", "sqlite", "postgres"))
_case("search filter", 200, 60, ("memory", "sqlite", "postgres"))


@case(
    "langgraph-store",
    "search query (vectors) at 10k items",
    n=40,
    quick_n=10,
    repeats=5,
    quick_repeats=3,
    backends=("sqlite",),
    in_quick=False,
    targets={"InMemoryStore": Target.at_least(0.5)},
    reasons={
        "InMemoryStore": "both scan every vector under the prefix; RelayStore ranks inside SQLite with "
        "sqlite-vec (numpy over the vectors read from SQLite where sqlite-vec cannot be loaded)"
    },
    note=f"{ITEMS:,} items with one {DIMS}-dim vector each, query over ('users',), limit 10; exact cosine",
)
def vector_search(ctx: Context) -> Matchup:
    return Matchup(
        contender(ctx, RELAY, True, "search query", index=True),
        [contender(ctx, "InMemoryStore", False, "search query", index=True)],
    )
