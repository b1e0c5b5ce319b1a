"""The checkpoint routes: ``/v1/checkpoint(s)`` and ``/v1/threads``, with pending writes and attachments.

State travels as raw bytes and its metadata in the :data:`~relaystore.wire.METADATA_HEADER`; a
save's compare-and-set is ``If-Match`` on the head's entity tag (``If-None-Match: *`` for an empty
thread). Bodies that carry bytes (writes, attachments, full reads) carry them in base64.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from starlette.responses import Response

from relaystore import wire
from relaystore.errors import InvalidInput, NotFound
from relaystore.models.checkpoints import Checkpoint, CheckpointMetadata, PendingWrite
from relaystore.server.routes._common import (
    COUNT,
    DELETED_BOOL,
    DELETED_INT,
    IF_MATCH,
    IF_NONE,
    OCTETS,
    PAGE,
    STORED_INT,
    STR,
    items_of,
    json_of,
    json_param,
    obj,
    opt,
    page_of,
    parse_binary_json,
    q,
    ref,
)
from relaystore.server.web import Call, Op, Param, page_reply, reply, strict_json, with_warnings
from relaystore.stores import ANY
from relaystore.stores._applied import AlreadyApplied
from relaystore.stores._common import validate
from relaystore.wire import (
    METADATA_HEADER,
    AttachmentsRequest,
    BundlePageWire,
    BundleWire,
    CheckpointWithAttachmentsRequest,
    KeysRequest,
    WritesRequest,
    b64,
    checkpoint_etag,
    unb64,
)

# Bytes travel as base64 only in JSON mode, so bodies carrying bytes are validated from the raw text.
_WRITES: TypeAdapter[WritesRequest] = TypeAdapter(WritesRequest)
_ATTACHMENTS: TypeAdapter[AttachmentsRequest] = TypeAdapter(AttachmentsRequest)
_KEYS: TypeAdapter[KeysRequest] = TypeAdapter(KeysRequest)
_BUNDLE: TypeAdapter[CheckpointWithAttachmentsRequest] = TypeAdapter(CheckpointWithAttachmentsRequest)
_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)

BASE64 = {"type": "string", "contentEncoding": "base64"}
BUNDLE = obj(
    metadata=ref("CheckpointMetadata"),
    state=BASE64,
    attachments={"type": "object", "additionalProperties": BASE64},
    writes={"type": "array", "items": ref("PendingWrite")},
)
BASE64URL = {"type": "string", "format": "base64url"}
THREAD_CHECKPOINT = (q("thread_id"), q("checkpoint_id"))


def expected_head(call: Call) -> Any:
    """``If-Match: "<etag>"`` names the head to compare with; ``If-None-Match: *`` wants an empty
    thread; neither means no compare-and-set."""
    if_match = call.request.headers.get("if-match")
    if_none = call.request.headers.get("if-none-match")
    if if_match is not None and if_none is not None:
        raise InvalidInput("send If-Match or If-None-Match, not both")
    if if_none is not None:
        if if_none.strip() != "*":
            raise InvalidInput("If-None-Match accepts only * (the thread must be empty)")
        return None
    if if_match is None:
        return ANY
    tag = if_match.strip()
    if len(tag) < 3 or not (tag.startswith('"') and tag.endswith('"')):
        raise InvalidInput('If-Match must be a quoted entity tag: "<base64url of the head id>"')
    return unb64(tag[1:-1], "If-Match")


def metadata_header(call: Call) -> CheckpointMetadata:
    """The checkpoint metadata a save carries in its :data:`METADATA_HEADER`."""
    header = call.request.headers.get(METADATA_HEADER)
    if header is None:
        raise InvalidInput(f"the {METADATA_HEADER} header (base64url of the metadata JSON) is required")
    metadata_json = strict_json(unb64(header, METADATA_HEADER), METADATA_HEADER)
    return validate(_METADATA, metadata_json, "checkpoint metadata")


async def save_checkpoint(call: Call) -> Response:
    thread_id = call.need("thread_id")
    metadata = metadata_header(call)
    head = expected_head(call)
    state = await call.body()
    saved = await call.store.checkpoints.save(thread_id, metadata, state, expected_head=head)
    return saved_reply(saved)


async def save_checkpoint_with_attachments(call: Call) -> Response:
    """A save whose attachments go in the store's same transaction: a Conflict writes neither."""
    thread_id = call.need("thread_id")
    metadata = metadata_header(call)
    head = expected_head(call)
    body: CheckpointWithAttachmentsRequest = await parse_binary_json(call, _BUNDLE, "checkpoint")
    saved = await call.store.checkpoints.save(
        thread_id, metadata, body.state, expected_head=head, attachments=body.attachments
    )
    return saved_reply(saved)


def saved_reply(saved: str) -> Response:
    """201 ``{"id"}`` for a new checkpoint; 200 ``{"id", "already_applied": true}`` for a retry
    that found its own earlier write stored (see ``stores/_applied.py``)."""
    headers = {"ETag": checkpoint_etag(saved)}
    if isinstance(saved, AlreadyApplied):
        return reply({"id": saved, "already_applied": True}, 200, headers=headers)
    return reply({"id": saved}, 201, headers=headers)


def checkpoint_reply(checkpoint: Checkpoint) -> Response:
    metadata, state = checkpoint
    headers = {METADATA_HEADER: b64(metadata.model_dump_json()), "ETag": checkpoint_etag(metadata.id)}
    return Response(state, 200, headers=headers, media_type="application/octet-stream")


async def load_checkpoint(call: Call) -> Response:
    return checkpoint_reply(
        await call.store.checkpoints.load(call.need("thread_id"), call.need("checkpoint_id"))
    )


async def load_latest(call: Call) -> Response:
    return checkpoint_reply(await call.store.checkpoints.load_latest(call.need("thread_id")))


async def list_checkpoints(call: Call) -> Response:
    page = await call.store.checkpoints.list(
        call.need("thread_id"), newest_first=call.flag("newest_first"), **call.page_args()
    )
    return page_reply(page)


async def list_full(call: Call) -> Response:
    page = await call.store.checkpoints.list_full(
        call.need("thread_id"),
        newest_first=call.flag("newest_first", default=True),
        before=call.query("before"),
        filter=json_param(call, "filter"),
        values=call.flag("values", default=True),
        **call.page_args(),
    )
    skipped = with_warnings({})
    body = BundlePageWire(items=[BundleWire.of(b) for b in page], next_cursor=page.next_cursor, **skipped)
    text = body.model_dump_json(exclude=None if skipped else {"warnings", "corrupt"})
    return Response(text, media_type="application/json")


async def load_full(call: Call) -> Response:
    found = await call.store.checkpoints.load_full(call.need("thread_id"), call.query("checkpoint_id"))
    if found is None:
        raise NotFound("no such checkpoint")
    return Response(BundleWire.of(found).model_dump_json(), media_type="application/json")


async def delete_checkpoint(call: Call) -> Response:
    deleted = await call.store.checkpoints.delete(call.need("thread_id"), call.need("checkpoint_id"))
    return reply({"deleted": deleted})


async def thread_head(call: Call) -> Response:
    head = await call.store.checkpoints.head(call.need("thread_id"))
    return reply({"head": head}, headers={"ETag": checkpoint_etag(head)} if head else None)


async def thread_count(call: Call) -> Response:
    return reply({"count": await call.store.checkpoints.count(call.need("thread_id"))})


async def delete_thread(call: Call) -> Response:
    return reply({"deleted": await call.store.checkpoints.delete_thread(call.need("thread_id"))})


async def prune_thread(call: Call) -> Response:
    deleted = await call.store.checkpoints.prune(call.need("thread_id"), call.need_int("keep"))
    return reply({"deleted": deleted})


async def delete_orphan_writes(call: Call) -> Response:
    deleted = await call.store.checkpoints.delete_orphan_writes(call.need("thread_id"))
    return reply({"deleted": deleted})


async def list_threads(call: Call) -> Response:
    prefix = call.query("prefix")
    return page_reply(await call.store.checkpoints.list_threads(prefix=prefix, **call.page_args()))


async def put_writes(call: Call) -> Response:
    body: WritesRequest = await parse_binary_json(call, _WRITES, "pending writes")
    await call.store.checkpoints.put_writes(
        call.need("thread_id"), call.need("checkpoint_id"), body.writes, replace=call.flag("replace")
    )
    return reply({"stored": len(body.writes)})


async def list_writes(call: Call) -> Response:
    writes = await call.store.checkpoints.list_writes(call.need("thread_id"), call.need("checkpoint_id"))
    return reply({"items": writes})


async def put_attachments(call: Call) -> Response:
    body: AttachmentsRequest = await parse_binary_json(call, _ATTACHMENTS, "attachments")
    await call.store.checkpoints.put_attachments(call.need("thread_id"), body.attachments)
    return reply({"stored": len(body.attachments)})


async def get_attachments(call: Call) -> Response:
    body: KeysRequest = await call.parse(_KEYS, "attachment keys")
    found = await call.store.checkpoints.get_attachments(call.need("thread_id"), body.keys)
    return reply(AttachmentsRequest(attachments=found))


async def delete_attachments(call: Call) -> Response:
    body: KeysRequest = await call.parse(_KEYS, "attachment keys")
    deleted = await call.store.checkpoints.delete_attachments(call.need("thread_id"), body.keys)
    return reply({"deleted": deleted})


async def list_attachments(call: Call) -> Response:
    page = await call.store.checkpoints.list_attachments(call.need("thread_id"), **call.page_args())
    return page_reply(page)


# 200: a retry whose earlier try had landed (same id and content), told apart from a new save
SAVED = {201: json_of(obj(id=STR)), 200: json_of(obj(id=STR, already_applied={"type": "boolean"}))}

OPERATIONS: list[Op] = [
    Op(
        "POST",
        wire.CHECKPOINTS,
        save_checkpoint,
        "Save a checkpoint: body = state bytes.",
        params=(
            q("thread_id"),
            Param(METADATA_HEADER, STR, True, "header", "base64url(metadata JSON)"),
            IF_MATCH,
            IF_NONE,
        ),
        request=OCTETS,
        responses=SAVED,
        tag="checkpoints",
    ),
    Op(
        "POST",
        wire.CHECKPOINTS_WITH_ATTACHMENTS,
        save_checkpoint_with_attachments,
        "Save a checkpoint and thread attachments atomically: body = state and attachments in base64.",
        params=(
            q("thread_id"),
            Param(METADATA_HEADER, STR, True, "header", "base64url(metadata JSON)"),
            IF_MATCH,
            IF_NONE,
        ),
        request=json_of(ref("CheckpointWithAttachmentsRequest")),
        responses=SAVED,
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.CHECKPOINTS,
        list_checkpoints,
        "Metadata of a thread's checkpoints.",
        params=(q("thread_id"), opt("newest_first", {"type": "boolean"}), *PAGE),
        responses={200: page_of(ref("CheckpointMetadata"))},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.CHECKPOINTS_FULL,
        list_full,
        "A page of checkpoints with their referenced attachments and pending writes (bytes as base64).",
        params=(
            q("thread_id"),
            opt("newest_first", {"type": "boolean"}),
            opt("before", STR),
            opt("filter", STR),
            opt("values", {"type": "boolean"}),
            *PAGE,
        ),
        responses={200: page_of(BUNDLE)},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.CHECKPOINTS_FULL_ONE,
        load_full,
        "One checkpoint (the latest without checkpoint_id) with its attachments and pending writes.",
        params=(q("thread_id"), opt("checkpoint_id", STR)),
        responses={200: json_of(BUNDLE)},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.CHECKPOINTS_LATEST,
        load_latest,
        "The last saved checkpoint's state.",
        params=(q("thread_id"),),
        responses={200: OCTETS},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.CHECKPOINT,
        load_checkpoint,
        "One checkpoint's state (metadata in a header).",
        params=(q("thread_id"), q("checkpoint_id")),
        responses={200: OCTETS},
        tag="checkpoints",
    ),
    Op(
        "DELETE",
        wire.CHECKPOINT,
        delete_checkpoint,
        "Delete one checkpoint.",
        params=(q("thread_id"), q("checkpoint_id")),
        responses={200: DELETED_BOOL},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.THREADS,
        list_threads,
        "Threads that hold checkpoints, sorted; optionally only ids starting with `prefix`.",
        params=(opt("prefix", description="Keep ids that start with this."), *PAGE),
        responses={200: page_of(STR)},
        tag="checkpoints",
    ),
    Op(
        "DELETE",
        wire.THREADS,
        delete_thread,
        "Delete a whole thread.",
        params=(q("thread_id"),),
        responses={200: DELETED_INT},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.THREADS_HEAD,
        thread_head,
        "The head id to pass as If-Match.",
        params=(q("thread_id"),),
        responses={200: json_of(obj(head={"type": ["string", "null"]}))},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.THREADS_COUNT,
        thread_count,
        "Number of checkpoints in a thread.",
        params=(q("thread_id"),),
        responses={200: COUNT},
        tag="checkpoints",
    ),
    Op(
        "POST",
        wire.THREADS_PRUNE,
        prune_thread,
        "Keep only the newest `keep` checkpoints.",
        params=(q("thread_id"), q("keep", {"type": "integer", "minimum": 0})),
        responses={200: DELETED_INT},
        tag="checkpoints",
    ),
    Op(
        "POST",
        wire.THREADS_ORPHAN_WRITES_DELETE,
        delete_orphan_writes,
        "Delete the thread's pending writes whose checkpoint does not exist.",
        params=(q("thread_id"),),
        responses={200: DELETED_INT},
        tag="checkpoints",
    ),
    Op(
        "POST",
        wire.CHECKPOINTS_WRITES,
        put_writes,
        "Attach pending writes to a checkpoint (saved or not yet); repeats ignored unless `replace`.",
        params=(*THREAD_CHECKPOINT, opt("replace", {"type": "boolean"})),
        request=json_of(ref("WritesRequest")),
        responses={200: STORED_INT},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.CHECKPOINTS_WRITES,
        list_writes,
        "A checkpoint's pending writes, sorted by (task_path, task_id, idx).",
        params=THREAD_CHECKPOINT,
        responses={200: items_of(ref("PendingWrite"))},
        tag="checkpoints",
    ),
    Op(
        "GET",
        wire.ATTACHMENTS,
        list_attachments,
        "Attachment keys of a thread, sorted.",
        params=(q("thread_id"), *PAGE),
        responses={200: page_of(STR)},
        tag="checkpoints",
    ),
    Op(
        "POST",
        wire.ATTACHMENTS,
        put_attachments,
        "Store attachments of a thread (overwriting).",
        params=(q("thread_id"),),
        request=json_of(ref("AttachmentsRequest")),
        responses={200: STORED_INT},
        tag="checkpoints",
    ),
    Op(
        "POST",
        wire.ATTACHMENTS_GET,
        get_attachments,
        "The stored attachments among `keys` (missing ones left out).",
        params=(q("thread_id"),),
        request=json_of(ref("KeysRequest")),
        responses={200: json_of(obj(attachments={"type": "object", "additionalProperties": BASE64URL}))},
        tag="checkpoints",
    ),
    Op(
        "POST",
        wire.ATTACHMENTS_DELETE,
        delete_attachments,
        "Delete attachments by key.",
        params=(q("thread_id"),),
        request=json_of(ref("KeysRequest")),
        responses={200: DELETED_INT},
        tag="checkpoints",
    ),
]

REQUEST_MODELS: list[type[BaseModel]] = [
    CheckpointMetadata,
    WritesRequest,
    PendingWrite,
    AttachmentsRequest,
    CheckpointWithAttachmentsRequest,
    KeysRequest,
]
