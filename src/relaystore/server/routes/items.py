"""The ``/v1/store/...`` routes: the item face (``store.items``) over HTTP.

They carry LangGraph long-term memory (:class:`~relaystore.integrations.langgraph_store.RelayStore`
over ``http://``) between processes and languages. Every body is JSON; a namespace is a list of
labels; times are seconds since the epoch, ttl seconds, and the server's clock decides expiry.

Access: the admin token may do everything. A *memory token* (``POST /v1/store/tokens``) names
namespace prefixes; it may touch only items whose namespace starts with one of them, and a search,
count or listing only under one of them (a prefix that reaches outside is refused with 403, not
narrowed). Output agent tokens have no memory scope and are refused here.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, TypeAdapter
from starlette.responses import Response

from relaystore import wire
from relaystore.errors import Forbidden
from relaystore.server.routes._common import json_of, obj, ref
from relaystore.server.tokens import Principal, issue_memory_token, parse_ttl
from relaystore.server.web import Call, Op, reply, with_warnings
from relaystore.stores.items import Condition, ItemWrite, StoredItem, compile_filter

MAX_OPS = 10_000  # keys or writes in one request (the body limit bounds it too)
Labels = list[str]


class ConditionModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: list[str | int]
    op: str = Field(pattern="^(eq|ne|gt|gte|lt|lte|len)$")
    operand: str | int | float | bool | None = None


class ItemKeysRequest(BaseModel):
    """Body of ``POST /v1/store/items/get``: ``[namespace, key]`` pairs."""

    model_config = ConfigDict(extra="forbid")

    keys: list[tuple[Labels, str]] = Field(max_length=MAX_OPS)
    refresh: bool = False


class ItemSearchRequest(BaseModel):
    """Body of ``POST /v1/store/items/search``: a LangGraph ``filter`` dict or ``conditions``."""

    model_config = ConfigDict(extra="forbid")

    prefix: Labels = Field(default_factory=list)
    filter: dict[str, Any] | None = None
    conditions: list[ConditionModel] = Field(default_factory=list, max_length=1000)
    limit: NonNegativeInt | None = 10
    offset: NonNegativeInt = 0
    refresh: bool = False
    vectors: bool = False
    newest_first: bool = True


class ItemWriteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: Labels
    key: str
    value: dict[str, Any] | None
    ttl: float | None = None
    vectors: dict[str, list[float]] | None = None


class ItemWriteRequest(BaseModel):
    """Body of ``POST /v1/store/items/write``: puts and deletes (``value`` null), applied atomically
    after touching the expiry of the ``touch`` items."""

    model_config = ConfigDict(extra="forbid")

    writes: list[ItemWriteModel] = Field(default_factory=list, max_length=MAX_OPS)
    touch: list[tuple[Labels, str]] = Field(default_factory=list, max_length=MAX_OPS)


class NamespacesRequest(BaseModel):
    """Body of ``POST /v1/store/namespaces`` (``"*"`` matches any one label)."""

    model_config = ConfigDict(extra="forbid")

    prefix: Labels = Field(default_factory=list)
    suffix: Labels = Field(default_factory=list)
    max_depth: NonNegativeInt | None = None
    limit: NonNegativeInt = 100
    offset: NonNegativeInt = 0


class CountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefix: Labels = Field(default_factory=list)
    include_expired: bool = False


class MemoryTokenRequest(BaseModel):
    """Body of ``POST /v1/store/tokens``: the namespace prefixes a memory token may use."""

    model_config = ConfigDict(extra="forbid")

    namespaces: list[Labels] = Field(min_length=1, max_length=100)
    ttl: str | float = "1h"


_KEYS: TypeAdapter[ItemKeysRequest] = TypeAdapter(ItemKeysRequest)
_SEARCH: TypeAdapter[ItemSearchRequest] = TypeAdapter(ItemSearchRequest)
_WRITE: TypeAdapter[ItemWriteRequest] = TypeAdapter(ItemWriteRequest)
_NAMESPACES: TypeAdapter[NamespacesRequest] = TypeAdapter(NamespacesRequest)
_COUNT_REQUEST: TypeAdapter[CountRequest] = TypeAdapter(CountRequest)
_TOKEN: TypeAdapter[MemoryTokenRequest] = TypeAdapter(MemoryTokenRequest)


# --------------------------------------------------------------------------- scope checks


def _scoped(principal: Principal) -> tuple[tuple[str, ...], ...] | None:
    """The prefixes a token may use; None for the admin. Raises Forbidden for other tokens."""
    if principal.admin:
        return None
    if principal.namespaces is None:
        raise Forbidden("this token has no memory scope; ask for one with POST /v1/store/tokens")
    return principal.namespaces


def _require(principal: Principal, namespace: list[str] | tuple[str, ...], what: str = "namespace") -> None:
    """Refuse unless ``namespace`` (literal labels) lies under one of the token's prefixes."""
    scopes = _scoped(principal)
    if scopes is None:
        return
    labels = tuple(namespace)
    if not any(labels[: len(scope)] == scope for scope in scopes):
        raise Forbidden(f"the token may not use {what} {labels!r}")


def _require_listing(principal: Principal, prefix: list[str]) -> None:
    literal = []
    for label in prefix:
        if label == "*":
            break
        literal.append(label)
    _require(principal, literal, "prefix")


# --------------------------------------------------------------------------- handlers


def item_json(item: StoredItem | None) -> dict[str, Any] | None:
    if item is None:
        return None
    body: dict[str, Any] = {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "expires_at": item.expires_at,
        "ttl": item.ttl,
    }
    if item.vectors is not None:
        body["vectors"] = {name: list(vector) for name, vector in item.vectors.items()}
    return body


async def get_items(call: Call) -> Response:
    body: ItemKeysRequest = await call.parse(_KEYS, "item keys")
    for namespace, _ in body.keys:
        _require(call.principal, namespace)
    found = await call.store.items.get_many([(tuple(ns), key) for ns, key in body.keys], refresh=body.refresh)
    return reply({"items": [item_json(item) for item in found]})


async def search_items(call: Call) -> Response:
    body: ItemSearchRequest = await call.parse(_SEARCH, "item search")
    _require(call.principal, body.prefix, "prefix")
    given = [Condition(tuple(c.path), c.op, c.operand) for c in body.conditions]  # type: ignore[arg-type]
    conditions = compile_filter(body.filter) + given
    found = await call.store.items.search(
        tuple(body.prefix),
        conditions=conditions,
        limit=body.limit,
        offset=body.offset,
        refresh=body.refresh,
        vectors=body.vectors,
        newest_first=body.newest_first,
    )
    return reply(with_warnings({"items": [item_json(item) for item in found]}))


async def write_items(call: Call) -> Response:
    body: ItemWriteRequest = await call.parse(_WRITE, "item writes")
    for write in body.writes:
        _require(call.principal, write.namespace)
    for namespace, _ in body.touch:
        _require(call.principal, namespace)
    writes = [ItemWrite(tuple(w.namespace), w.key, w.value, w.ttl, w.vectors) for w in body.writes]
    await call.store.items.write(writes, touch=[(tuple(ns), key) for ns, key in body.touch])
    return reply({"written": len(writes)})


async def list_namespaces(call: Call) -> Response:
    body: NamespacesRequest = await call.parse(_NAMESPACES, "namespace listing")
    _require_listing(call.principal, body.prefix)
    found = await call.store.items.list_namespaces(
        prefix=body.prefix, suffix=body.suffix, max_depth=body.max_depth, limit=body.limit, offset=body.offset
    )
    return reply({"namespaces": [list(ns) for ns in found]})


async def count_items(call: Call) -> Response:
    body: CountRequest = await call.parse(_COUNT_REQUEST, "item count")
    _require(call.principal, body.prefix, "prefix")
    count = await call.store.items.count(tuple(body.prefix), include_expired=body.include_expired)
    return reply({"count": count})


async def sweep_items(call: Call) -> Response:
    _scoped(call.principal)  # any memory token: it deletes only what has expired
    return reply({"removed": await call.store.items.sweep()})


async def issue_store_token(call: Call) -> Response:
    body: MemoryTokenRequest = await call.parse(_TOKEN, "memory token request")
    ttl = parse_ttl(body.ttl)
    token = issue_memory_token(
        call.config.signing_key,
        namespaces=body.namespaces,
        audience=call.config.audience(call.tenant),
        ttl=ttl,
        tenant=call.tenant,
    )
    return reply({"token": token, "expires_at": int(time.time() + ttl)}, 201)


# --------------------------------------------------------------------------- the table


def _body(name: str) -> dict[str, Any]:
    return json_of(ref(name))


def _answer(**props: dict[str, Any]) -> dict[str, Any]:
    return json_of(obj(**props))


_ITEM = {"type": ["object", "null"]}
_ITEMS = {"type": "array", "items": _ITEM}
_COUNT = {"type": "integer", "minimum": 0}

OPERATIONS: list[Op] = [
    Op(
        "POST",
        wire.ITEMS_GET,
        get_items,
        "Items at [namespace, key] pairs (null where none is live).",
        "agent",
        request=_body("ItemKeysRequest"),
        responses={200: _answer(items=_ITEMS)},
        tag="store",
    ),
    Op(
        "POST",
        wire.ITEMS_SEARCH,
        search_items,
        "Live items under a namespace prefix matching a filter, newest first.",
        "agent",
        request=_body("ItemSearchRequest"),
        responses={200: _answer(items=_ITEMS)},
        tag="store",
    ),
    Op(
        "POST",
        wire.ITEMS_WRITE,
        write_items,
        "Put and delete items atomically (and refresh the expiry of others).",
        "agent",
        request=_body("ItemWriteRequest"),
        responses={200: _answer(written=_COUNT)},
        tag="store",
    ),
    Op(
        "POST",
        wire.ITEMS_NAMESPACES,
        list_namespaces,
        "Namespaces holding a live item, by prefix and suffix.",
        "agent",
        request=_body("NamespacesRequest"),
        responses={200: _answer(namespaces={"type": "array", "items": {"type": "array"}})},
        tag="store",
    ),
    Op(
        "POST",
        wire.ITEMS_COUNT,
        count_items,
        "How many items lie under a prefix.",
        "agent",
        request=_body("CountRequest"),
        responses={200: _answer(count=_COUNT)},
        tag="store",
    ),
    Op(
        "POST",
        wire.ITEMS_SWEEP,
        sweep_items,
        "Delete expired items now (the server's RelayStore sweeps on its own too).",
        "agent",
        responses={200: _answer(removed=_COUNT)},
        tag="store",
    ),
    Op(
        "POST",
        wire.ITEMS_TOKENS,
        issue_store_token,
        "Issue a memory token limited to namespace prefixes.",
        request=_body("MemoryTokenRequest"),
        responses={201: _answer(token={"type": "string"}, expires_at={"type": "integer"})},
        tag="store",
    ),
]

REQUEST_MODELS: list[type[BaseModel]] = [
    ItemKeysRequest,
    ItemSearchRequest,
    ItemWriteRequest,
    NamespacesRequest,
    CountRequest,
    MemoryTokenRequest,
]
