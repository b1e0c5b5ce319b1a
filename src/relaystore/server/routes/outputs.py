"""The ``/v1/outputs`` routes: append, import, read and list outputs, and walk their lineage.

An agent token appends only as its own ``(task, attempt, producer)`` and reads only its task's
outputs and the refs it was handed (:class:`~relaystore.server.tokens.Principal`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter
from starlette.responses import Response

from relaystore import wire
from relaystore.errors import CorruptRecord, Forbidden, InvalidInput, OutputNotFound
from relaystore.models.outputs import OutputRecord
from relaystore.server.blob_rules import blob_digests, check_blob_refs, content_refs, remember_blobs
from relaystore.server.routes._common import (
    PAGE,
    REF_PATTERN,
    STR,
    U32,
    items_of,
    json_of,
    obj,
    opt,
    page_of,
    q,
    ref,
)
from relaystore.server.web import Call, Op, Param, page_reply, reply
from relaystore.wire import EmitRequest, RefsRequest

_EMIT: TypeAdapter[EmitRequest] = TypeAdapter(EmitRequest)
_REFS: TypeAdapter[RefsRequest] = TypeAdapter(RefsRequest)
_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)

REF = Param("ref", {"type": "string", "pattern": REF_PATTERN}, True, "path")
DEPTH = opt("max_depth", {"type": "integer", "minimum": 0})
RECORD = ref("OutputRecord")


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
    for wanted in dict.fromkeys(body.refs):
        try:
            found.append(await read_record(call, wanted))
        except OutputNotFound:
            continue
    return reply({"items": found})


async def children(call: Call) -> Response:
    body: RefsRequest = await call.parse(_REFS, "refs")
    found: dict[str, OutputRecord] = {}
    for parent in dict.fromkeys(body.refs):
        try:
            for record in await call.store.outputs.descendants(parent, max_depth=1):
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


OPERATIONS: list[Op] = [
    Op(
        "POST",
        wire.OUTPUTS,
        emit,
        "Append an output (as mlua-swarm's /v1/data/emit, but scoped).",
        "agent",
        request=json_of(ref("EmitRequest")),
        responses={201: json_of(obj(out_id=STR))},
        tag="outputs",
    ),
    Op(
        "POST",
        wire.DATA_EMIT,
        emit,
        "Alias of POST /v1/outputs for mlua-swarm sub-agents.",
        "agent",
        request=json_of(ref("EmitRequest")),
        responses={201: json_of(obj(out_id=STR))},
        tag="outputs",
    ),
    Op(
        "POST",
        wire.OUTPUTS_IMPORT,
        import_output,
        "Insert a whole record (id and created_at kept).",
        "agent",
        request=json_of(RECORD),
        responses={201: json_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        wire.OUTPUTS,
        list_outputs,
        "List outputs in store order (agents: their task only).",
        "agent",
        (opt("task_id"), opt("producer_agent"), *PAGE),
        responses={200: page_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        wire.OUTPUTS_ATTEMPT,
        list_for_attempt,
        "Outputs of one (task, attempt).",
        "agent",
        (q("task_id"), q("attempt", U32), *PAGE),
        responses={200: page_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        wire.OUTPUTS_LATEST,
        latest_by_name,
        "Newest output of a producer across all tasks.",
        params=(q("name"),),
        responses={200: json_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        wire.OUTPUTS_LATEST_IN_RUN,
        latest_in_run,
        "Newest output of a producer in one run.",
        "agent",
        (q("task_id"), q("attempt", U32), q("name")),
        responses={200: json_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "POST",
        wire.OUTPUTS_BATCH,
        get_many,
        "The stored records among refs (missing ones left out).",
        "agent",
        request=json_of(ref("RefsRequest")),
        responses={200: items_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "POST",
        wire.OUTPUTS_CHILDREN,
        children,
        "Records naming any of refs as a parent.",
        request=json_of(ref("RefsRequest")),
        responses={200: items_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        wire.OUTPUT,
        get_output,
        "One output record.",
        "agent",
        (REF,),
        responses={200: json_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        wire.OUTPUT_ANCESTORS,
        ancestors,
        "Lineage upwards, nearest first.",
        params=(REF, DEPTH),
        responses={200: items_of(RECORD)},
        tag="outputs",
    ),
    Op(
        "GET",
        wire.OUTPUT_DESCENDANTS,
        descendants,
        "Lineage downwards, nearest first.",
        params=(REF, DEPTH),
        responses={200: items_of(RECORD)},
        tag="outputs",
    ),
]

REQUEST_MODELS: list[type[BaseModel]] = [EmitRequest, RefsRequest, OutputRecord]
