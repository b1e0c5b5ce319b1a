"""Every route of the server, as :class:`~relaystore.server.web.Op` declarations and handlers.

Handlers call only the public store API, so the server behaves exactly as the library does; the
route table in ``docs/server.md`` is this module's ``OPERATIONS``. Ids (thread, task, agent,
document key) travel in query strings, never in paths, because they may contain ``/``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, TypeAdapter, ValidationError
from starlette.responses import Response, StreamingResponse

import relaystore
from relaystore.errors import Conflict, CorruptRecord, Forbidden, InvalidInput, NotFound, OutputNotFound
from relaystore.models.adaptive import RunRecord
from relaystore.models.checkpoints import (
    BundlePageWire,
    BundleWire,
    Checkpoint,
    CheckpointMetadata,
    PendingWrite,
)
from relaystore.models.outputs import BlobContent, OutputEvent, OutputRecord, OutputRef
from relaystore.server.blob_rules import (
    blob_digests,
    blob_headers,
    check_blob_refs,
    check_mime,
    content_refs,
    remember_blobs,
    safe_mime,
)
from relaystore.server.items_api import ITEM_OPERATIONS, ITEM_REQUEST_MODELS
from relaystore.server.revocation import revoke
from relaystore.server.tokens import issue_download_token, issue_token, parse_ttl, unverified_claims
from relaystore.server.web import Call, HttpError, Op, Param, log, page_reply, reply, strict_json
from relaystore.stores import ANY, DOC_KINDS
from relaystore.stores._common import summarize, validate

METADATA_HEADER = "Relaystore-Metadata"

# --------------------------------------------------------------------------- request bodies


class EmitRequest(BaseModel):
    """Body of ``POST /v1/outputs`` (as mlua-swarm's ``DataEmitReq``, any task id accepted)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    attempt: NonNegativeInt
    producer_agent: str
    event: OutputEvent
    parent_refs: list[OutputRef] = Field(default_factory=list)


class RefsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refs: list[OutputRef] = Field(max_length=1000)


class TokenRequest(BaseModel):
    """Body of ``POST /v1/tokens``: the scope of one sub-agent."""

    model_config = ConfigDict(extra="forbid")

    task: str
    attempt: NonNegativeInt
    producer: str
    ttl: str | float = "1h"
    read: list[OutputRef] = Field(default_factory=list)


class WritesRequest(BaseModel):
    """Body of ``POST /v1/checkpoints/writes``: pending writes, each ``value`` in base64."""

    model_config = ConfigDict(extra="forbid")

    writes: list[PendingWrite]


class AttachmentsRequest(BaseModel):
    """Body of ``POST /v1/threads/attachments``: key → value in base64 (standard or url-safe)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    attachments: dict[str, bytes]


class CheckpointWithAttachmentsRequest(BaseModel):
    """Body of ``POST /v1/checkpoints/with-attachments``: the state and the attachments to store
    with it, in base64 (the metadata and compare-and-set travel in headers, as for a plain save)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    state: bytes
    attachments: dict[str, bytes]


class KeysRequest(BaseModel):
    """Body of the attachment routes that take keys (get, delete)."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] = Field(max_length=1000)


# Bytes travel as base64 only in JSON mode, so bodies carrying bytes are validated from the raw text.
ATTACHMENTS: TypeAdapter[dict[str, bytes]] = TypeAdapter(
    dict[str, bytes], config=ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
)
_WRITES: TypeAdapter[WritesRequest] = TypeAdapter(WritesRequest)
_ATTACHMENTS: TypeAdapter[AttachmentsRequest] = TypeAdapter(AttachmentsRequest)
_KEYS: TypeAdapter[KeysRequest] = TypeAdapter(KeysRequest)
_BUNDLE: TypeAdapter[CheckpointWithAttachmentsRequest] = TypeAdapter(CheckpointWithAttachmentsRequest)
_EMIT: TypeAdapter[EmitRequest] = TypeAdapter(EmitRequest)
_REFS: TypeAdapter[RefsRequest] = TypeAdapter(RefsRequest)
_TOKEN: TypeAdapter[TokenRequest] = TypeAdapter(TokenRequest)
_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)
_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)


# --------------------------------------------------------------------------- content checks


def check_file_refs(event: Any, roots: tuple[Path, ...]) -> None:
    """Refuse a ``file_ref`` whose path is not under a configured root (mlua-swarm stores any path).

    Symlinks and ``..`` are resolved first, so a link out of a root is refused too.
    """
    for content in content_refs(event):
        if content.kind != "file_ref":
            continue
        if "\x00" in content.path or not os.path.isabs(content.path):
            raise InvalidInput(f"file_ref path must be absolute: {content.path!r}")
        real = Path(os.path.realpath(content.path))
        if not any(real == root or root in real.parents for root in roots):
            raise InvalidInput(f"file_ref path {content.path!r} is not under a --file-root of this server")


# --------------------------------------------------------------------------- outputs


async def emit(call: Call) -> Response:
    body: EmitRequest = await call.parse(_EMIT, "emit request")
    call.principal.require_writer(body.task_id, body.attempt, body.producer_agent)
    check_file_refs(body.event, call.config.file_roots)
    await check_blob_refs(call, body.task_id, body.event)
    ref = await call.store.outputs.append(
        body.task_id, body.attempt, body.producer_agent, body.event, body.parent_refs
    )
    await remember_blobs(call, body.task_id, blob_digests(body.event))
    return reply({"out_id": ref}, 201)


async def import_output(call: Call) -> Response:
    record: OutputRecord = await call.parse(_RECORD, "output record")
    call.principal.require_writer(record.task_id, record.attempt, record.producer_agent)
    check_file_refs(record.event, call.config.file_roots)
    await check_blob_refs(call, record.task_id, record.event)
    stored = await call.store.outputs.import_record(record)
    await remember_blobs(call, record.task_id, blob_digests(record.event))
    return reply(stored, 201)


async def read_record(call: Call, ref: str) -> OutputRecord:
    """The output at ``ref`` if the caller may read it.

    A record that does not decode has no task to check an agent's scope against, so an agent
    learns it is corrupt only for a ref it was handed; otherwise it gets the 403 a record of
    another task would give (the scope is checked before anything about the record is told).
    """
    try:
        record = await call.store.outputs.get(ref)
    except CorruptRecord:
        if call.principal.admin or ref in call.principal.reads:
            raise
        raise Forbidden(f"output {ref} was not handed to this token") from None
    call.principal.require_read(record)
    return record


async def get_output(call: Call) -> Response:
    return reply(await read_record(call, call.path("ref")))


async def get_many(call: Call) -> Response:
    body: RefsRequest = await call.parse(_REFS, "refs")
    found = []
    for ref in dict.fromkeys(body.refs):
        try:
            found.append(await read_record(call, ref))
        except OutputNotFound:
            continue
    return reply({"items": found})


async def children(call: Call) -> Response:
    body: RefsRequest = await call.parse(_REFS, "refs")
    found: dict[str, OutputRecord] = {}
    for ref in dict.fromkeys(body.refs):
        try:
            for record in await call.store.outputs.descendants(ref, max_depth=1):
                found.setdefault(record.id, record)
        except OutputNotFound:
            continue
    return reply({"items": list(found.values())})


async def list_outputs(call: Call) -> Response:
    task_id = call.query("task_id")
    call.principal.require_task(task_id)
    page = await call.store.outputs.list(
        task_id=task_id, producer_agent=call.query("producer_agent"), **call.page_args()
    )
    return page_reply(page)


async def list_for_attempt(call: Call) -> Response:
    task_id = call.need("task_id")
    call.principal.require_task(task_id)
    page = await call.store.outputs.list_for_attempt(task_id, call.need_int("attempt"), **call.page_args())
    return page_reply(page)


async def latest_by_name(call: Call) -> Response:
    return reply(await call.store.outputs.get_latest_by_name(call.need("name")))


async def latest_in_run(call: Call) -> Response:
    task_id = call.need("task_id")
    call.principal.require_task(task_id)
    attempt = call.need_int("attempt")
    return reply(await call.store.outputs.get_latest_by_name_in_run(task_id, attempt, call.need("name")))


async def ancestors(call: Call) -> Response:
    found = await call.store.outputs.ancestors(call.path("ref"), max_depth=call.integer("max_depth"))
    return reply({"items": found})


async def descendants(call: Call) -> Response:
    found = await call.store.outputs.descendants(call.path("ref"), max_depth=call.integer("max_depth"))
    return reply({"items": found})


# --------------------------------------------------------------------------- checkpoints


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode().rstrip("=")


def unb64(text: str, what: str) -> str:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{what} is not base64url of UTF-8 text") from exc


def checkpoint_etag(checkpoint_id: str) -> str:
    """A checkpoint's entity tag: its id, base64url-encoded (ids may hold any character)."""
    return f'"{b64(checkpoint_id)}"'


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
    return reply({"id": saved}, 201, headers={"ETag": checkpoint_etag(saved)})


async def save_checkpoint_with_attachments(call: Call) -> Response:
    """A save whose attachments go in the store's same transaction: a Conflict writes neither."""
    thread_id = call.need("thread_id")
    metadata = metadata_header(call)
    head = expected_head(call)
    body: CheckpointWithAttachmentsRequest = await parse_binary_json(call, _BUNDLE, "checkpoint")
    saved = await call.store.checkpoints.save(
        thread_id, metadata, body.state, expected_head=head, attachments=body.attachments
    )
    return reply({"id": saved}, 201, headers={"ETag": checkpoint_etag(saved)})


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
        filter=_json_param(call, "filter"),
        values=call.flag("values", default=True),
        **call.page_args(),
    )
    body = BundlePageWire(items=[BundleWire.of(b) for b in page], next_cursor=page.next_cursor)
    return Response(body.model_dump_json(), media_type="application/json")


async def load_full(call: Call) -> Response:
    found = await call.store.checkpoints.load_full(call.need("thread_id"), call.query("checkpoint_id"))
    if found is None:
        raise NotFound("no such checkpoint")
    return Response(BundleWire.of(found).model_dump_json(), media_type="application/json")


def _json_param(call: Call, name: str) -> Any:
    raw = call.query(name)
    return None if raw is None else strict_json(raw, f"query parameter {name!r}")


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


async def parse_binary_json(call: Call, adapter: TypeAdapter[Any], what: str) -> Any:
    """Validate a JSON body that carries bytes as base64 (decoded only in JSON mode)."""
    try:
        return adapter.validate_json(await call.body())
    except ValidationError as exc:
        raise InvalidInput(f"invalid {what}: {summarize(exc)}") from None


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
    return reply({"attachments": ATTACHMENTS.dump_python(found, mode="json")})


async def delete_attachments(call: Call) -> Response:
    body: KeysRequest = await call.parse(_KEYS, "attachment keys")
    deleted = await call.store.checkpoints.delete_attachments(call.need("thread_id"), body.keys)
    return reply({"deleted": deleted})


async def list_attachments(call: Call) -> Response:
    page = await call.store.checkpoints.list_attachments(call.need("thread_id"), **call.page_args())
    return page_reply(page)


# --------------------------------------------------------------------------- adaptive


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


# --------------------------------------------------------------------------- blobs


async def upload_blob(call: Call) -> Response:
    mime = call.query("mime") or call.request.headers.get("content-type") or None
    if mime is not None:
        check_mime(mime)
    blob = await call.store.blobs.put(
        call.chunks(call.config.blob_limit), mime=mime, expected_sha256=call.query("sha256")
    )
    if call.principal.task is not None:  # an agent's upload: its task may now carry the blob
        await remember_blobs(call, call.principal.task, {blob.sha256})
    return reply(blob, 201, headers={"ETag": f'"{blob.sha256}"'})


async def may_read_blob(call: Call, sha256: str) -> Any:
    """The admin reads any blob; an agent only one carried by an output it may read (``?via=REF``).

    A download token reads its one blob. Returns the blob's ContentRef in that output (its mime is
    the one to serve), or None.
    """
    if call.principal.blob is not None:
        if call.principal.blob != sha256:
            raise Forbidden("this download token opens another blob")
        return BlobContent(sha256=sha256, size=0, mime=call.principal.blob_mime)
    via = call.query("via")
    if via is None:
        if call.principal.admin:
            return None
        raise Forbidden("an agent token reads a blob through ?via=<output ref that carries it>")
    record = await read_record(call, via)
    for content in content_refs(record.event):
        if getattr(content, "sha256", None) == sha256:
            return content
    raise Forbidden(f"output {via} does not carry blob {sha256}")


async def stat_blob(call: Call) -> Response:
    sha256 = call.path("sha256")
    carried = await may_read_blob(call, sha256)
    blob = await call.store.blobs.stat(sha256)
    return reply(blob if carried is None else blob.model_copy(update={"mime": carried.mime}))


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single ``Range: bytes=…`` header, or None to send everything.

    Multiple or malformed ranges are ignored (RFC 9110 allows it); an unsatisfiable one is a 416.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, dash, last = header[6:].strip().partition("-")
    if not dash or not _position(first) or not _position(last):
        return None
    if first == "":
        if last == "" or int(last) == 0:
            raise _unsatisfiable(size)
        return max(0, size - int(last)), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise _unsatisfiable(size)
    return start, end


def _position(text: str) -> bool:
    """An empty or ASCII-decimal byte position of at most 19 digits (``isdigit`` alone takes '²')."""
    return text == "" or (len(text) <= 19 and text.isascii() and text.isdigit())


def _unsatisfiable(size: int) -> HttpError:
    return HttpError(
        416,
        "InvalidInput",
        f"the range is outside the blob's {size} bytes",
        {"Content-Range": f"bytes */{size}"},
    )


async def download_blob(call: Call) -> Response:
    sha256 = call.path("sha256")
    carried = await may_read_blob(call, sha256)
    blob = await call.store.blobs.stat(sha256)
    wanted = byte_range(call.request.headers.get("range"), blob.size)
    start, end = wanted or (0, blob.size)
    media_type = safe_mime(blob.mime if carried is None else carried.mime)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{sha256}"', "Content-Length": str(end - start)}
    headers.update(blob_headers(media_type))
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
    status = 206 if wanted is not None else 200
    if call.request.method == "HEAD":
        return Response(None, status, headers=headers, media_type=media_type)
    stream = await call.store.blobs.read(sha256, start, end)
    return StreamingResponse(_logged(stream, sha256), status, headers=headers, media_type=media_type)


async def _logged(stream: AsyncIterator[bytes], sha256: str) -> AsyncIterator[bytes]:
    # Headers are gone by the time a chunk fails: the only honest signal left is a cut connection.
    try:
        async for chunk in stream:
            yield chunk
    except Exception:
        log.exception("blob %s failed while streaming", sha256)
        raise


async def download_token(call: Call) -> Response:
    """A short-lived token for a browser link to one blob (instead of ``?token=<admin token>``)."""
    sha256 = call.path("sha256")
    carried = await may_read_blob(call, sha256)
    mime = carried.mime if carried is not None else (await call.store.blobs.stat(sha256)).mime
    ttl = parse_ttl(call.query("ttl") or "5m")
    token = issue_download_token(
        call.config.signing_key,
        sha256=sha256,
        audience=call.config.audience(call.tenant),
        mime=safe_mime(mime),
        ttl=ttl,
        tenant=call.tenant,
    )
    prefix = f"/t/{call.tenant}" if call.tenant else ""
    expires_at = unverified_claims(token)["exp"]
    return reply(
        {"token": token, "url": f"{prefix}/v1/blobs/{sha256}?token={token}", "expires_at": expires_at}, 201
    )


async def delete_blob(call: Call) -> Response:
    return reply({"deleted": await call.store.blobs.delete(call.path("sha256"))})


async def list_blobs(call: Call) -> Response:
    return page_reply(await call.store.blobs.list(**call.page_args()))


# --------------------------------------------------------------------------- server


async def healthz(call: Call) -> Response:
    return reply({"status": "ok"})


async def info(call: Call) -> Response:
    details = await call.store.info()
    store = {"store_id": call.config.audience(call.tenant)}
    return reply({"relaystore_version": relaystore.__version__, "tenant": call.tenant, **store, **details})


async def issue(call: Call) -> Response:
    body: TokenRequest = await call.parse(_TOKEN, "token request")
    ttl = parse_ttl(body.ttl)
    token = issue_token(
        call.config.signing_key,
        task=body.task,
        attempt=body.attempt,
        producer=body.producer,
        ttl=ttl,
        reads=body.read,
        tenant=call.tenant,
        audience=call.config.audience(call.tenant),
    )
    claims = unverified_claims(token)
    return reply({"token": token, "jti": claims["jti"], "expires_at": claims["exp"]}, 201)


class RevokeRequest(BaseModel):
    """Body of ``POST /v1/tokens/revoke``: the ``jti`` of the agent token to refuse from now on."""

    model_config = ConfigDict(extra="forbid")

    jti: str = Field(min_length=1, max_length=256)
    expires_at: NonNegativeInt | None = None


_REVOKE: TypeAdapter[RevokeRequest] = TypeAdapter(RevokeRequest)


async def revoke_token(call: Call) -> Response:
    body: RevokeRequest = await call.parse(_REVOKE, "revoke request")
    await revoke(call.store, body.jti, body.expires_at)
    return reply({"revoked": body.jti})


# --------------------------------------------------------------------------- the table


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": schema}


def obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return json_of(obj(items={"type": "array", "items": item}, next_cursor={"type": ["string", "null"]}))


def items_of(item: dict[str, Any]) -> dict[str, Any]:
    return json_of(obj(items={"type": "array", "items": item}))


STR = {"type": "string"}
BASE64 = {"type": "string", "contentEncoding": "base64"}
BUNDLE = obj(
    metadata=ref("CheckpointMetadata"),
    state=BASE64,
    attachments={"type": "object", "additionalProperties": BASE64},
    writes={"type": "array", "items": ref("PendingWrite")},
)
U32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
OCTETS = {"application/octet-stream": {"type": "string", "format": "binary"}}
REF_PATTERN = "^out-[0-9a-f]{10,64}$"
SHA_PATTERN = "^[0-9a-f]{64}$"
PAGE = (
    Param("limit", {"type": "integer", "minimum": 1}, description="At most this many items."),
    Param("cursor", STR, description="next_cursor of the previous page."),
)


def q(name: str, schema: dict[str, Any] | None = None, description: str = "") -> Param:
    return Param(name, schema or STR, required=True, description=description)


def opt(name: str, schema: dict[str, Any] | None = None, description: str = "") -> Param:
    return Param(name, schema or STR, description=description)


REF = Param("ref", {"type": "string", "pattern": REF_PATTERN}, True, "path")
SHA = Param("sha256", {"type": "string", "pattern": SHA_PATTERN}, True, "path")
KIND = Param("kind", {"type": "string", "enum": list(DOC_KINDS)}, True, "path")
VIA = opt("via", {"type": "string", "pattern": REF_PATTERN}, "Agent tokens: an output that carries the blob.")
IF_MATCH = Param("If-Match", STR, where="header", description="Compare-and-set on the current version.")
IF_NONE = Param(
    "If-None-Match", {"type": "string", "enum": ["*"]}, where="header", description="Only if absent."
)
RANGE = Param("Range", STR, where="header", description="bytes=START-END (one range).")
DEPTH = opt("max_depth", {"type": "integer", "minimum": 0})
RECORD = ref("OutputRecord")
DELETED_BOOL = json_of(obj(deleted={"type": "boolean"}))
DELETED_INT = json_of(obj(deleted={"type": "integer", "minimum": 0}))
STORED_INT = json_of(obj(stored={"type": "integer", "minimum": 0}))
BASE64 = {"type": "string", "format": "base64url"}
THREAD_CHECKPOINT = (q("thread_id"), q("checkpoint_id"))
COUNT = json_of(obj(count={"type": "integer", "minimum": 0}))
BLOB_BYTES = {"*/*": {"type": "string", "format": "binary"}}

OPERATIONS: list[Op] = [
    # server
    Op(
        "GET",
        "/healthz",
        healthz,
        "Liveness: no token needed.",
        "public",
        responses={200: json_of(obj(status={"type": "string"}))},
    ),
    Op(
        "GET",
        "/v1/info",
        info,
        "Backend facts of the store behind the server.",
        responses={200: json_of({"type": "object"})},
    ),
    Op(
        "POST",
        "/v1/tokens",
        issue,
        "Issue an agent token for one (task, attempt, producer).",
        request=json_of(ref("TokenRequest")),
        responses={201: json_of(obj(token=STR, jti=STR, expires_at={"type": "integer"}))},
    ),
    Op(
        "POST",
        "/v1/tokens/revoke",
        revoke_token,
        "Revoke an agent token by its jti, on every server of this store.",
        request=json_of(ref("RevokeRequest")),
        responses={200: json_of(obj(revoked=STR))},
    ),
    # outputs
    Op(
        "POST",
        "/v1/outputs",
        emit,
        "Append an output (as mlua-swarm's /v1/data/emit, but scoped).",
        "agent",
        request=json_of(ref("EmitRequest")),
        responses={201: json_of(obj(out_id=STR))},
        tag="outputs",
    ),
    Op(
        "POST",
        "/v1/data/emit",
        emit,
        "Alias of POST /v1/outputs for mlua-swarm sub-agents.",
        "agent",
        request=json_of(ref("EmitRequest")),
        responses={201: json_of(obj(out_id=STR))},
        tag="outputs",
    ),
    Op(
        "POST",
        "/v1/outputs/import",
        import_output,
        "Insert a whole record (id and created_at kept).",
        "agent",
        request=json_of(RECORD),
        responses={201: json_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        "/v1/outputs",
        list_outputs,
        "List outputs in store order (agents: their task only).",
        "agent",
        (opt("task_id"), opt("producer_agent"), *PAGE),
        responses={200: page_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        "/v1/outputs/attempt",
        list_for_attempt,
        "Outputs of one (task, attempt).",
        "agent",
        (q("task_id"), q("attempt", U32), *PAGE),
        responses={200: page_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        "/v1/outputs/latest",
        latest_by_name,
        "Newest output of a producer across all tasks.",
        params=(q("name"),),
        responses={200: json_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        "/v1/outputs/latest-in-run",
        latest_in_run,
        "Newest output of a producer in one run.",
        "agent",
        (q("task_id"), q("attempt", U32), q("name")),
        responses={200: json_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "POST",
        "/v1/outputs/batch",
        get_many,
        "The stored records among refs (missing ones left out).",
        "agent",
        request=json_of(ref("RefsRequest")),
        responses={200: items_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "POST",
        "/v1/outputs/children",
        children,
        "Records naming any of refs as a parent.",
        request=json_of(ref("RefsRequest")),
        responses={200: items_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        "/v1/outputs/{ref}",
        get_output,
        "One output record.",
        "agent",
        (REF,),
        responses={200: json_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        "/v1/outputs/{ref}/ancestors",
        ancestors,
        "Lineage upwards, nearest first.",
        params=(REF, DEPTH),
        responses={200: items_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        "/v1/outputs/{ref}/descendants",
        descendants,
        "Lineage downwards, nearest first.",
        params=(REF, DEPTH),
        responses={200: items_of(RECORD)},
        tag="outputs",
    ),
    # checkpoints
    Op(
        "POST",
        "/v1/checkpoints",
        save_checkpoint,
        "Save a checkpoint: body = state bytes.",
        params=(
            q("thread_id"),
            Param(METADATA_HEADER, STR, True, "header", "base64url(metadata JSON)"),
            IF_MATCH,
            IF_NONE,
        ),
        request=OCTETS,
        responses={201: json_of(obj(id=STR))},
        tag="checkpoints",
    ),
    Op(
        "POST",
        "/v1/checkpoints/with-attachments",
        save_checkpoint_with_attachments,
        "Save a checkpoint and thread attachments atomically: body = state and attachments in base64.",
        params=(
            q("thread_id"),
            Param(METADATA_HEADER, STR, True, "header", "base64url(metadata JSON)"),
            IF_MATCH,
            IF_NONE,
        ),
        request=json_of(ref("CheckpointWithAttachmentsRequest")),
        responses={201: json_of(obj(id=STR))},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/checkpoints",
        list_checkpoints,
        "Metadata of a thread's checkpoints.",
        params=(q("thread_id"), opt("newest_first", {"type": "boolean"}), *PAGE),
        responses={200: page_of(ref("CheckpointMetadata"))},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/checkpoints/full",
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
        "/v1/checkpoints/full/one",
        load_full,
        "One checkpoint (the latest without checkpoint_id) with its attachments and pending writes.",
        params=(q("thread_id"), opt("checkpoint_id", STR)),
        responses={200: json_of(BUNDLE)},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/checkpoints/latest",
        load_latest,
        "The last saved checkpoint's state.",
        params=(q("thread_id"),),
        responses={200: OCTETS},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/checkpoint",
        load_checkpoint,
        "One checkpoint's state (metadata in a header).",
        params=(q("thread_id"), q("checkpoint_id")),
        responses={200: OCTETS},
        tag="checkpoints",
    ),
    Op(
        "DELETE",
        "/v1/checkpoint",
        delete_checkpoint,
        "Delete one checkpoint.",
        params=(q("thread_id"), q("checkpoint_id")),
        responses={200: DELETED_BOOL},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/threads",
        list_threads,
        "Threads that hold checkpoints, sorted; optionally only ids starting with `prefix`.",
        params=(opt("prefix", description="Keep ids that start with this."), *PAGE),
        responses={200: page_of(STR)},
        tag="checkpoints",
    ),
    Op(
        "DELETE",
        "/v1/threads",
        delete_thread,
        "Delete a whole thread.",
        params=(q("thread_id"),),
        responses={200: DELETED_INT},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/threads/head",
        thread_head,
        "The head id to pass as If-Match.",
        params=(q("thread_id"),),
        responses={200: json_of(obj(head={"type": ["string", "null"]}))},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/threads/count",
        thread_count,
        "Number of checkpoints in a thread.",
        params=(q("thread_id"),),
        responses={200: COUNT},
        tag="checkpoints",
    ),
    Op(
        "POST",
        "/v1/threads/prune",
        prune_thread,
        "Keep only the newest `keep` checkpoints.",
        params=(q("thread_id"), q("keep", {"type": "integer", "minimum": 0})),
        responses={200: DELETED_INT},
        tag="checkpoints",
    ),
    Op(
        "POST",
        "/v1/threads/orphan-writes/delete",
        delete_orphan_writes,
        "Delete the thread's pending writes whose checkpoint does not exist.",
        params=(q("thread_id"),),
        responses={200: DELETED_INT},
        tag="checkpoints",
    ),
    Op(
        "POST",
        "/v1/checkpoints/writes",
        put_writes,
        "Attach pending writes to a checkpoint (saved or not yet); repeats ignored unless `replace`.",
        params=(*THREAD_CHECKPOINT, opt("replace", {"type": "boolean"})),
        request=json_of(ref("WritesRequest")),
        responses={200: STORED_INT},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/checkpoints/writes",
        list_writes,
        "A checkpoint's pending writes, sorted by (task_path, task_id, idx).",
        params=THREAD_CHECKPOINT,
        responses={200: items_of(ref("PendingWrite"))},
        tag="checkpoints",
    ),
    Op(
        "GET",
        "/v1/threads/attachments",
        list_attachments,
        "Attachment keys of a thread, sorted.",
        params=(q("thread_id"), *PAGE),
        responses={200: page_of(STR)},
        tag="checkpoints",
    ),
    Op(
        "POST",
        "/v1/threads/attachments",
        put_attachments,
        "Store attachments of a thread (overwriting).",
        params=(q("thread_id"),),
        request=json_of(ref("AttachmentsRequest")),
        responses={200: STORED_INT},
        tag="checkpoints",
    ),
    Op(
        "POST",
        "/v1/threads/attachments/get",
        get_attachments,
        "The stored attachments among `keys` (missing ones left out).",
        params=(q("thread_id"),),
        request=json_of(ref("KeysRequest")),
        responses={200: json_of(obj(attachments={"type": "object", "additionalProperties": BASE64}))},
        tag="checkpoints",
    ),
    Op(
        "POST",
        "/v1/threads/attachments/delete",
        delete_attachments,
        "Delete attachments by key.",
        params=(q("thread_id"),),
        request=json_of(ref("KeysRequest")),
        responses={200: DELETED_INT},
        tag="checkpoints",
    ),
    # adaptive
    Op(
        "POST",
        "/v1/adaptive/runs",
        store_run,
        "Append a run record.",
        request=json_of(ref("RunRecord")),
        responses={201: json_of(obj(stored={"type": "boolean"}))},
        tag="adaptive",
    ),
    Op(
        "GET",
        "/v1/adaptive/runs",
        list_runs,
        "An agent's runs in store order.",
        params=(q("agent_id"), *PAGE),
        responses={200: page_of(ref("RunRecord"))},
        tag="adaptive",
    ),
    Op(
        "GET",
        "/v1/adaptive/runs/count",
        count_runs,
        "Number of an agent's runs.",
        params=(q("agent_id"),),
        responses={200: COUNT},
        tag="adaptive",
    ),
    Op(
        "POST",
        "/v1/adaptive/runs/prune",
        prune_runs,
        "Keep only an agent's newest `keep` runs.",
        params=(q("agent_id"), q("keep", {"type": "integer", "minimum": 0})),
        responses={200: DELETED_INT},
        tag="adaptive",
    ),
    Op(
        "GET",
        "/v1/adaptive/agents",
        list_agents,
        "Agents with runs, a plan, a trie or accumulators.",
        params=PAGE,
        responses={200: page_of(STR)},
        tag="adaptive",
    ),
    Op(
        "GET",
        "/v1/adaptive/keys/{kind}",
        list_keys,
        "Keys holding a document of `kind`.",
        params=(KIND, *PAGE),
        responses={200: page_of(STR)},
        tag="adaptive",
    ),
    Op(
        "GET",
        "/v1/adaptive/docs/{kind}",
        get_document,
        "A document, exactly as stored, with its ETag.",
        params=(KIND, q("key")),
        responses={200: json_of({})},
        tag="adaptive",
    ),
    Op(
        "PUT",
        "/v1/adaptive/docs/{kind}",
        put_document,
        "Store a document; If-Match makes it a compare-and-set (412 when stale).",
        params=(KIND, q("key"), IF_MATCH, IF_NONE),
        request=json_of({}),
        responses={200: json_of(obj(etag=STR))},
        tag="adaptive",
    ),
    Op(
        "DELETE",
        "/v1/adaptive/docs/{kind}",
        delete_document,
        "Delete a document.",
        params=(KIND, q("key")),
        responses={200: DELETED_BOOL},
        tag="adaptive",
    ),
    # blobs
    Op(
        "POST",
        "/v1/blobs",
        upload_blob,
        "Upload a blob (streamed, content-addressed, deduplicated).",
        "agent",
        (opt("mime"), opt("sha256", {"type": "string", "pattern": SHA_PATTERN})),
        request=OCTETS,
        responses={201: json_of(ref("BlobContent"))},
        tag="blobs",
    ),
    Op(
        "GET",
        "/v1/blobs",
        list_blobs,
        "Stored blobs by digest.",
        params=PAGE,
        responses={200: page_of(ref("BlobContent"))},
        tag="blobs",
    ),
    Op(
        "GET",
        "/v1/blobs/{sha256}",
        download_blob,
        "Download a blob; Range gives 206 (416 outside).",
        "agent",
        (SHA, VIA, RANGE),
        responses={200: BLOB_BYTES, 206: BLOB_BYTES},
        tag="blobs",
        query_token=True,
    ),
    Op(
        "GET",
        "/v1/blobs/{sha256}/stat",
        stat_blob,
        "Size and mime type of a blob.",
        "agent",
        (SHA, VIA),
        responses={200: json_of(ref("BlobContent"))},
        tag="blobs",
    ),
    Op(
        "POST",
        "/v1/blobs/{sha256}/download-token",
        download_token,
        "A token for a browser link that downloads this one blob (ttl default 5m, at most 1h).",
        "agent",
        (SHA, VIA, opt("ttl", description="90s, 5m, 1h (at most 1h).")),
        responses={201: json_of(obj(token=STR, url=STR, expires_at={"type": "integer"}))},
        tag="blobs",
    ),
    Op(
        "DELETE",
        "/v1/blobs/{sha256}",
        delete_blob,
        "Delete a blob.",
        params=(SHA,),
        responses={200: DELETED_BOOL},
        tag="blobs",
    ),
]

REQUEST_MODELS: list[type[BaseModel]] = [
    EmitRequest,
    RefsRequest,
    TokenRequest,
    RevokeRequest,
    OutputRecord,
    CheckpointMetadata,
    WritesRequest,
    PendingWrite,
    AttachmentsRequest,
    CheckpointWithAttachmentsRequest,
    KeysRequest,
    RunRecord,
    BlobContent,
]
OPERATIONS += ITEM_OPERATIONS
REQUEST_MODELS += ITEM_REQUEST_MODELS

__all__ = ["OPERATIONS", "REQUEST_MODELS"]
