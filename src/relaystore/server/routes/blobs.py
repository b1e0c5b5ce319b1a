"""The ``/v1/blobs`` routes: streamed, content-addressed uploads and ranged downloads.

The admin reads any blob; an agent one carried by an output it may read (``?via=REF``); a
download token (for a browser link) its one blob.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response, StreamingResponse

from relaystore import wire
from relaystore.errors import Forbidden
from relaystore.models.outputs import BlobContent
from relaystore.server.blob_rules import blob_headers, check_mime, content_refs, remember_blobs, safe_mime
from relaystore.server.routes._common import (
    DELETED_BOOL,
    OCTETS,
    PAGE,
    REF_PATTERN,
    STR,
    json_of,
    obj,
    opt,
    page_of,
    ref,
)
from relaystore.server.routes.outputs import read_record
from relaystore.server.tokens import issue_download_token, parse_ttl, unverified_claims
from relaystore.server.web import Call, HttpError, Op, Param, log, page_reply, reply

SHA_PATTERN = "^[0-9a-f]{64}$"
SHA = Param("sha256", {"type": "string", "pattern": SHA_PATTERN}, True, "path")
VIA = opt("via", {"type": "string", "pattern": REF_PATTERN}, "Agent tokens: an output that carries the blob.")
RANGE = Param("Range", STR, where="header", description="bytes=START-END (one range).")
BLOB_BYTES = {"*/*": {"type": "string", "format": "binary"}}


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
    prefix = wire.TENANT_PREFIX.format(tenant=call.tenant) if call.tenant else ""
    url = f"{prefix}{wire.BLOB.format(sha256=sha256)}?token={token}"
    expires_at = unverified_claims(token)["exp"]
    return reply({"token": token, "url": url, "expires_at": expires_at}, 201)


async def delete_blob(call: Call) -> Response:
    return reply({"deleted": await call.store.blobs.delete(call.path("sha256"))})


async def list_blobs(call: Call) -> Response:
    return page_reply(await call.store.blobs.list(**call.page_args()))


OPERATIONS: list[Op] = [
    Op(
        "POST",
        wire.BLOBS,
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
        wire.BLOBS,
        list_blobs,
        "Stored blobs by digest.",
        params=PAGE,
        responses={200: page_of(ref("BlobContent"))},
        tag="blobs",
    ),
    Op(
        "GET",
        wire.BLOB,
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
        wire.BLOB_STAT,
        stat_blob,
        "Size and mime type of a blob.",
        "agent",
        (SHA, VIA),
        responses={200: json_of(ref("BlobContent"))},
        tag="blobs",
    ),
    Op(
        "POST",
        wire.BLOB_DOWNLOAD_TOKEN,
        download_token,
        "A token for a browser link that downloads this one blob (ttl default 5m, at most 1h).",
        "agent",
        (SHA, VIA, opt("ttl", description="90s, 5m, 1h (at most 1h).")),
        responses={201: json_of(obj(token=STR, url=STR, expires_at={"type": "integer"}))},
        tag="blobs",
    ),
    Op(
        "DELETE",
        wire.BLOB,
        delete_blob,
        "Delete a blob.",
        params=(SHA,),
        responses={200: DELETED_BOOL},
        tag="blobs",
    ),
]

REQUEST_MODELS: list[type[BaseModel]] = [BlobContent]
