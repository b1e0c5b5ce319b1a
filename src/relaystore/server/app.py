"""The ASGI app: routes from :mod:`relaystore.server.routes`, auth, tenants, metrics and errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relaystore._load import caller
from relaystore.errors import Forbidden, TooLarge
from relaystore.server.openapi import build_openapi
from relaystore.server.routes import OPERATIONS, json_of
from relaystore.server.stores import StoreSet
from relaystore.server.tokens import Principal, bearer, verify_token
from relaystore.server.ui import ui_routes
from relaystore.server.web import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MEMORY_BUDGET,
    ROUTE_KEY,
    STORE_KEY,
    TENANT_KEY,
    ByteBudget,
    Call,
    ClientGone,
    MiB,
    Op,
    ServerConfig,
    collect_warnings,
    error_body,
    error_response,
    refuse_revoked,
)
from relaystore.stores import Store

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
_NOBODY = Principal(admin=False)


def create_app(
    store_url: str,
    *,
    admin_token: str,
    signing_key: str,
    body_limit: int = 8 * MiB,
    blob_limit: int = 4096 * MiB,
    file_roots: Iterable[str | Path] = (),
    tenant_url: str | None = None,
    max_open_tenants: int = 32,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    token_share: float = 0.5,
) -> Starlette:
    """The relaystore HTTP server for the store at ``store_url``.

    ``body_limit`` bounds every JSON or checkpoint body and ``blob_limit`` every blob upload
    (bytes; 413 past them). ``file_roots`` are the directories a ``file_ref`` may point into.
    ``tenant_url`` (a store URL with ``{tenant}``) serves one more store per ``/t/NAME`` prefix.
    ``memory_budget`` (bytes) bounds the request data held at once across all requests: a
    request waits, unread, until its worst case fits (3 × a JSON body, 2 MiB for a stream), and
    one token holds at most ``token_share`` of it. A body that sends nothing for
    ``body_timeout`` seconds is answered 408.
    The store opens at startup and closes at shutdown, after in-flight requests have finished.
    """
    config = ServerConfig(
        admin_token=admin_token,
        signing_key=signing_key,
        body_limit=body_limit,
        blob_limit=blob_limit,
        file_roots=tuple(Path(r).resolve() for r in file_roots),
        budget=ByteBudget(memory_budget, token_share),
        body_timeout=body_timeout,
        store_url=store_url,
        tenant_url=tenant_url,
    )
    stores = StoreSet(store_url, tenant_url, max_open=max_open_tenants)
    metrics = Metrics()
    operations = [*OPERATIONS, *server_operations(metrics)]
    spec = build_openapi(operations)

    async def openapi(call: Call) -> Response:
        return JSONResponse(spec)

    operations.append(
        Op("GET", "/openapi.json", openapi, "This document.", "token", responses={200: json_of({})})
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await stores.open()
        try:
            yield
        finally:
            await stores.close()

    app = Starlette(
        routes=[
            *(Route(op.path, endpoint(op, config), methods=[op.method]) for op in operations),
            *ui_routes(config),  # the read-only inspector (docs/ui.md)
        ],
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(TenantMiddleware, stores=stores),
        ],
        exception_handlers={HTTPException: http_exception, Exception: unexpected},
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.stores = stores
    return app


# --------------------------------------------------------------------------- one route


def endpoint(op: Op, config: ServerConfig) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of ``op``: authenticate, run the handler, answer errors as JSON."""

    async def run(request: Request) -> Response:
        request.scope[ROUTE_KEY] = op.path
        collect_warnings()
        call: Call | None = None
        try:
            principal = authenticate(request, op, config)
            tenant = request.scope.get(TENANT_KEY)
            # public routes (liveness) need no store, so they never open a tenant's
            store = None if op.access == "public" else await request.scope[STORE_KEY]()
            if principal.token_id is not None and store is not None:
                await refuse_revoked(principal.token_id, store, tenant, config)
            call = Call(request, principal, store, config, tenant)  # type: ignore[arg-type]
            return await op.handler(call)
        except ClientGone:
            return JSONResponse(error_body("InvalidInput", "the client went away"), 400)
        except Exception as exc:
            if isinstance(exc, TooLarge) and call is not None:
                await call.drain()
            return error_response(exc)
        finally:
            if call is not None:
                await call.release()

    return run


def authenticate(request: Request, op: Op, config: ServerConfig) -> Principal:
    """Who sent the request: 401 without a valid token, 403 for a token of another tenant or an
    agent token on an admin route."""
    if op.access == "public":
        return _NOBODY
    tenant = request.scope.get(TENANT_KEY)
    token = bearer(request.headers, request.query_params, query_allowed=op.query_token)
    principal = verify_token(
        token,
        admin_token=config.admin_token,
        signing_key=config.signing_key,
        audience=config.audience(tenant),
    )
    principal.require_tenant(tenant)
    if principal.blob is not None and not op.query_token:
        raise Forbidden("a download token opens only GET /v1/blobs/{its blob}")
    if op.access == "admin":
        principal.require_admin()
    return principal


async def http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    name = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return JSONResponse(error_body(name, str(exc.detail)), exc.status_code, headers=exc.headers)


async def unexpected(_request: Request, exc: Exception) -> Response:
    return error_response(exc)


# --------------------------------------------------------------------------- tenants


class TenantMiddleware:
    """Serves ``/t/NAME/…`` from tenant NAME's store and everything else from the main store.

    The prefix becomes the ASGI ``root_path``, so one route table serves both. The tenant's store
    is opened only once the endpoint has verified a token for that tenant (an unauthenticated
    request never creates a tenant's files), and stays leased for the whole exchange, streamed
    bodies included.
    """

    def __init__(self, app: ASGIApp, stores: StoreSet) -> None:
        self.app = app
        self.stores = stores

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tenant = None
        path: str = scope["path"]
        if path.startswith("/t/"):
            tenant = path[3:].split("/", 1)[0]
            scope["root_path"] = scope.get("root_path", "") + f"/t/{tenant}"
        async with AsyncExitStack() as leases:

            async def open_store() -> Store:
                return await leases.enter_async_context(self.stores.lease(tenant))

            scope[STORE_KEY] = open_store
            scope[TENANT_KEY] = tenant
            await self.app(scope, receive, send)


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Request counts and latency by route template and status, in a registry of this app's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "relaystore_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "relaystore_http_request_duration_seconds",
            "Time from request start to the last byte of the answer.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.in_flight = Gauge(
            "relaystore_http_requests_in_flight", "Requests being answered.", registry=self.registry
        )


# Label values come from a fixed set, so a client cannot make /metrics grow (route is the matched
# template or "unmatched"; status is a three-digit code).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                scope["relaystore.started"] = True
            await send(message)

        self.metrics.in_flight.inc()
        try:
            with caller():  # while others are in flight, store writes share commits (relaystore._load)
                await self.app(scope, receive, sending)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get(ROUTE_KEY, "unmatched")
            method = method_label(scope["method"])
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


def server_operations(metrics: Metrics) -> list[Op]:
    async def prometheus(call: Call) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Op(
            "GET",
            "/metrics",
            prometheus,
            "Prometheus metrics (admin token).",
            responses={200: {"text/plain": {"type": "string"}}},
        )
    ]


__all__ = ["create_app"]
