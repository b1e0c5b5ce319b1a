"""The ``/v1/adaptive`` routes: run records and versioned documents (plan, trie, accumulators).

A document's entity tag is the sha256 of its stored text: ``If-Match`` makes a ``PUT`` a
compare-and-set, answered 412 when another writer got in first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from relaystore import wire
from relaystore.errors import Conflict, InvalidInput, NotFound
from relaystore.models.adaptive import RunRecord
from relaystore.server.routes._common import (
    COUNT,
    DELETED_BOOL,
    DELETED_INT,
    IF_MATCH,
    IF_NONE,
    PAGE,
    STR,
    json_of,
    obj,
    page_of,
    q,
    ref,
)
from relaystore.server.web import Call, HttpError, Op, Param, page_reply, reply
from relaystore.stores import ANY, DOC_KINDS

KIND = Param("kind", {"type": "string", "enum": list(DOC_KINDS)}, True, "path")


async def store_run(call: Call) -> Response:
    await call.store.adaptive.store_run(await call.json())
    return reply({"stored": True}, 201)


async def list_runs(call: Call) -> Response:
    return page_reply(await call.store.adaptive.list_runs(call.need("agent_id"), **call.page_args()))


async def count_runs(call: Call) -> Response:
    return reply({"count": await call.store.adaptive.count_runs(call.need("agent_id"))})


async def prune_runs(call: Call) -> Response:
    deleted = await call.store.adaptive.prune_runs(call.need("agent_id"), call.need_int("keep"))
    return reply({"deleted": deleted})


async def list_agents(call: Call) -> Response:
    return page_reply(await call.store.adaptive.list_agents(**call.page_args()))


async def list_keys(call: Call) -> Response:
    return page_reply(await call.store.adaptive.list_keys(call.path("kind"), **call.page_args()))  # type: ignore[arg-type]


def document_etag_header(etag: str) -> dict[str, str]:
    return {"ETag": f'"{etag}"'}


async def get_document(call: Call) -> Response:
    kind, key = call.path("kind"), call.need("key")
    found = await call.store.adaptive.load_versioned(kind, key)  # type: ignore[arg-type]
    if found is None:
        raise NotFound(f"no {kind} document at {key!r}")
    return Response(found.text, 200, headers=document_etag_header(found.etag), media_type="application/json")


def if_etag(call: Call) -> Any:
    """``If-Match: "<sha256>"`` (store only over that version) or ``If-None-Match: *`` (only if absent)."""
    if_match = call.request.headers.get("if-match")
    if_none = call.request.headers.get("if-none-match")
    if if_match is not None and if_none is not None:
        raise InvalidInput("send If-Match or If-None-Match, not both")
    if if_none is not None:
        if if_none.strip() != "*":
            raise InvalidInput("If-None-Match accepts only *")
        return None
    if if_match is None:
        return ANY
    return if_match.strip().removeprefix("W/").strip('"')


async def put_document(call: Call) -> Response:
    kind, key = call.path("kind"), call.need("key")
    expected = if_etag(call)
    value = await call.json()
    try:
        stored = await call.store.adaptive.put_versioned(kind, key, value, if_etag=expected)  # type: ignore[arg-type]
    except Conflict as exc:
        if expected is ANY:
            raise
        raise HttpError(412, "Conflict", str(exc)) from None
    return reply({"etag": stored.etag}, 200, headers=document_etag_header(stored.etag))


async def delete_document(call: Call) -> Response:
    deleted = await call.store.adaptive.delete_document(call.path("kind"), call.need("key"))  # type: ignore[arg-type]
    return reply({"deleted": deleted})


OPERATIONS: list[Op] = [
    Op(
        "POST",
        wire.ADAPTIVE_RUNS,
        store_run,
        "Append a run record.",
        request=json_of(ref("RunRecord")),
        responses={201: json_of(obj(stored={"type": "boolean"}))},
        tag="adaptive",
    ),
    Op(
        "GET",
        wire.ADAPTIVE_RUNS,
        list_runs,
        "An agent's runs in store order.",
        params=(q("agent_id"), *PAGE),
        responses={200: page_of(ref("RunRecord"))},
        tag="adaptive",
    ),
    Op(
        "GET",
        wire.ADAPTIVE_RUNS_COUNT,
        count_runs,
        "Number of an agent's runs.",
        params=(q("agent_id"),),
        responses={200: COUNT},
        tag="adaptive",
    ),
    Op(
        "POST",
        wire.ADAPTIVE_RUNS_PRUNE,
        prune_runs,
        "Keep only an agent's newest `keep` runs.",
        params=(q("agent_id"), q("keep", {"type": "integer", "minimum": 0})),
        responses={200: DELETED_INT},
        tag="adaptive",
    ),
    Op(
        "GET",
        wire.ADAPTIVE_AGENTS,
        list_agents,
        "Agents with runs, a plan, a trie or accumulators.",
        params=PAGE,
        responses={200: page_of(STR)},
        tag="adaptive",
    ),
    Op(
        "GET",
        wire.ADAPTIVE_KEYS,
        list_keys,
        "Keys holding a document of `kind`.",
        params=(KIND, *PAGE),
        responses={200: page_of(STR)},
        tag="adaptive",
    ),
    Op(
        "GET",
        wire.ADAPTIVE_DOC,
        get_document,
        "A document, exactly as stored, with its ETag.",
        params=(KIND, q("key")),
        responses={200: json_of({})},
        tag="adaptive",
    ),
    Op(
        "PUT",
        wire.ADAPTIVE_DOC,
        put_document,
        "Store a document; If-Match makes it a compare-and-set (412 when stale).",
        params=(KIND, q("key"), IF_MATCH, IF_NONE),
        request=json_of({}),
        responses={200: json_of(obj(etag=STR))},
        tag="adaptive",
    ),
    Op(
        "DELETE",
        wire.ADAPTIVE_DOC,
        delete_document,
        "Delete a document.",
        params=(KIND, q("key")),
        responses={200: DELETED_BOOL},
        tag="adaptive",
    ),
]

REQUEST_MODELS: list[type[BaseModel]] = [RunRecord]
