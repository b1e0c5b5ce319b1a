"""Liveness and store facts: ``GET /healthz`` (no token) and ``GET /v1/info``."""

from __future__ import annotations

from starlette.responses import Response

import relaystore
from relaystore import wire
from relaystore.server.routes._common import json_of, obj
from relaystore.server.web import Call, Op, reply


async def healthz(call: Call) -> Response:
    return reply({"status": "ok"})


async def info(call: Call) -> Response:
    details = await call.store.info()
    store = {"store_id": call.config.audience(call.tenant)}
    return reply({"relaystore_version": relaystore.__version__, "tenant": call.tenant, **store, **details})


OPERATIONS: list[Op] = [
    Op(
        "GET",
        wire.HEALTHZ,
        healthz,
        "Liveness: no token needed.",
        "public",
        responses={200: json_of(obj(status={"type": "string"}))},
    ),
    Op(
        "GET",
        wire.INFO,
        info,
        "Backend facts of the store behind the server.",
        responses={200: json_of({"type": "object"})},
    ),
]
