"""The HTTP floor: a bare Starlette app under uvicorn, one INSERT + COMMIT (or one SELECT) per request.

``python -m benchmarks.peers.bare_http --url URL --port PORT --token TOKEN`` serves

- ``POST /v1/outputs``: parses the JSON body, draws a 128-bit id, runs one ``INSERT`` of the
  output row and commits it; answers ``201 {"out_id": …}``;
- ``GET /v1/outputs/{out_id}``: one ``SELECT`` by primary key; answers the stored row's JSON text
  as it is (no decoding, no model).

The same ASGI server as ``relaystore serve`` (uvicorn, its h11 protocol, access log off at
``--log-level warning``), in a process of its own, with a bearer-token string compare for auth.
No scopes, no validation beyond JSON, no lineage, no limits: what is left is what a request costs
the web stack plus the database's own commit. SQLite runs at relaystore's settings (WAL,
``synchronous=FULL``) on one connection owned by one worker thread, so commits never wait on
SQLite's busy sleeps and the event loop never waits for the disk. PostgreSQL uses a psycopg
async pool of relaystore's default size (1–10), one autocommit statement per request, in a
schema of its own (``?schema=`` of the URL, created here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

COLUMNS = "out_id, task_id, attempt, producer_agent, body"
Insert = Callable[[tuple[str, str, int, str, str]], Awaitable[None]]
Select = Callable[[str], Awaitable[str | None]]


class BareSqlite:
    """One connection on one worker thread: WAL, synchronous=FULL, a commit per insert."""

    def __init__(self, path: str) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "busy_timeout = 30000"):
            self._conn.execute(f"PRAGMA {pragma}")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS outputs (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "out_id TEXT NOT NULL UNIQUE, task_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
            "producer_agent TEXT NOT NULL, body TEXT NOT NULL)"
        )

    def _insert(self, row: tuple[str, str, int, str, str]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute(f"INSERT INTO outputs ({COLUMNS}) VALUES (?, ?, ?, ?, ?)", row)
        self._conn.execute("COMMIT")

    def _select(self, out_id: str) -> str | None:
        row = self._conn.execute("SELECT body FROM outputs WHERE out_id = ?", (out_id,)).fetchone()
        return None if row is None else str(row[0])

    async def insert(self, row: tuple[str, str, int, str, str]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._worker, self._insert, row)

    async def select(self, out_id: str) -> str | None:
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._select, out_id)


@asynccontextmanager
async def bare_postgres(url: str) -> AsyncIterator[tuple[Insert, Select]]:
    """A pool on ``url`` (its ``?schema=`` is created and used); yields (insert, select)."""
    from psycopg import sql
    from psycopg_pool import AsyncConnectionPool

    parts = urlsplit(url)
    schema = parse_qs(parts.query)["schema"][0]
    dsn = urlunsplit(parts._replace(query=""))
    table = sql.Identifier(schema, "outputs")
    async with AsyncConnectionPool(dsn, min_size=1, max_size=10, kwargs={"autocommit": True}) as pool:
        async with pool.connection() as conn:
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (seq BIGINT GENERATED ALWAYS AS IDENTITY, "
                    "out_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
                    "producer_agent TEXT NOT NULL, body JSONB NOT NULL)"
                ).format(table)
            )
        insert_sql = sql.SQL(f"INSERT INTO {{}} ({COLUMNS}) VALUES (%s, %s, %s, %s, %s)").format(table)
        select_sql = sql.SQL("SELECT body::text FROM {} WHERE out_id = %s").format(table)

        async def insert(row: tuple[str, str, int, str, str]) -> None:
            async with pool.connection() as conn:
                await conn.execute(insert_sql, row)

        async def select(out_id: str) -> str | None:
            async with pool.connection() as conn:
                found = await (await conn.execute(select_sql, (out_id,))).fetchone()
            return None if found is None else str(found[0])

        yield insert, select


def create_app(url: str, token: str) -> Starlette:
    """The two routes over the database at ``url`` (``sqlite:///path`` or ``postgresql://…?schema=``)."""
    expected = f"Bearer {token}"
    calls: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if url.startswith("sqlite:///"):
            db = BareSqlite(url.removeprefix("sqlite:///"))
            calls.update(insert=db.insert, select=db.select)
            yield
        else:
            async with bare_postgres(url) as (insert, select):
                calls.update(insert=insert, select=select)
                yield

    async def emit(request: Request) -> Response:
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "Unauthorized"}, 401)
        body = json.loads(await request.body())
        out_id = "out-" + secrets.token_hex(16)
        row = (out_id, body["task_id"], body["attempt"], body["producer_agent"], json.dumps(body))
        await calls["insert"](row)
        return JSONResponse({"out_id": out_id}, 201)

    async def get(request: Request) -> Response:
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "Unauthorized"}, 401)
        text = await calls["select"](request.path_params["out_id"])
        if text is None:
            return JSONResponse({"error": "NotFound"}, 404)
        return Response(text, media_type="application/json")

    routes = [Route("/v1/outputs", emit, methods=["POST"]), Route("/v1/outputs/{out_id}", get)]
    routes.append(Route("/healthz", lambda _r: JSONResponse({"ok": True})))
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    app = create_app(args.url, args.token)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", http="h11")


if __name__ == "__main__":
    main()
