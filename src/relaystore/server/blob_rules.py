"""What the server allows around blobs (issue 15): valid mime types, inert downloads, and which
blobs an agent's output may carry.

- **Mime types** follow RFC 6838 (``type/subtype`` of restricted names, optional ``; name=value``
  parameters); anything else, CR/LF included, is refused (422) at upload and never served.
- **Downloads** carry ``nosniff``, a sandbox CSP and ``Content-Disposition: attachment`` (inline
  only for a few inert types), so a blob opened in a browser cannot run as a page of the server.
- **Blob scope**: an agent's output may carry only blobs its task knows (uploaded with a token of
  the task, carried by an output of the task) or that an output handed to the token carries. What
  a task knows is kept in the store, as attachment keys of a reserved thread per task.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from relaystore.errors import CorruptRecord, Forbidden, InvalidInput, OutputNotFound
from relaystore.server.web import Call

_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"  # RFC 6838 restricted-name
_MIME_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 token
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
MIME = re.compile(rf"{_NAME}/{_NAME}(?:[ \t]*;[ \t]*{_MIME_TOKEN}=(?:{_MIME_TOKEN}|{_QUOTED}))*")
# Types a browser shows inline without running anything (with nosniff and a sandbox CSP).
INLINE_TYPES = frozenset(
    {"text/plain", "image/png", "image/jpeg", "image/gif", "image/webp", "application/json"}
)


def check_mime(mime: str) -> str:
    """``mime`` if it is ``type/subtype`` (RFC 6838 names) with optional ``; name=value``
    parameters and at most 255 characters, else :class:`InvalidInput` (422)."""
    if len(mime) > 255 or not MIME.fullmatch(mime):
        raise InvalidInput(f"not a media type (type/subtype[; name=value]): {mime[:100]!r}")
    return mime


def blob_headers(mime: str | None) -> dict[str, str]:
    """Headers that keep a downloaded blob from running as a page of this server: the browser
    may not guess another type, saves it instead of showing it (bar a few inert types), and any
    page it is shown as runs sandboxed, without this origin's cookies or storage."""
    essence = (mime or "").split(";", 1)[0].strip().lower()
    disposition = "inline" if essence in INLINE_TYPES else "attachment"
    return {
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": disposition,
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }


def safe_mime(mime: str | None) -> str:
    """The type to serve a blob as: its mime if valid (stored before validation, or named by an
    output), else ``application/octet-stream``."""
    return (
        mime if mime is not None and len(mime) <= 255 and MIME.fullmatch(mime) else "application/octet-stream"
    )


def content_refs(event: Any) -> list[Any]:
    """The ContentRefs an output event carries (none for ``progress``)."""
    return [c for c in (getattr(event, "chunk", None), getattr(event, "content", None)) if c is not None]


BLOBS_OF_TASK = "relaystore/blobs-of-task/"  # + a digest of the task id: a reserved thread


def blob_digests(event: Any) -> set[str]:
    return {c.sha256 for c in content_refs(event) if c.kind == "blob"}


def task_blobs_thread(task_id: str) -> str:
    """The reserved thread whose attachment keys are the blobs task ``task_id`` knows (attachments
    need no checkpoint, so it never shows in ``list_threads``)."""
    return BLOBS_OF_TASK + hashlib.sha256(task_id.encode()).hexdigest()[:32]


async def remember_blobs(call: Call, task_id: str, digests: set[str]) -> None:
    if digests:
        await call.store.checkpoints.put_attachments(task_blobs_thread(task_id), dict.fromkeys(digests, b""))


async def check_blob_refs(call: Call, task_id: str, event: Any) -> None:
    """An agent's output may carry only blobs its task knows: uploaded with a token of the task,
    carried by an output of the task, or carried by an output the token was handed. Otherwise
    403, whether or not the blob exists, so the answer tells nothing about other tasks' content."""
    missing = blob_digests(event)
    if call.principal.admin or not missing:
        return
    missing -= set(await call.store.checkpoints.get_attachments(task_blobs_thread(task_id), missing))
    for ref in sorted(call.principal.reads):
        if not missing:
            return
        try:
            missing -= blob_digests((await call.store.outputs.get(ref)).event)
        except (OutputNotFound, CorruptRecord):
            continue
    if missing:
        raise Forbidden(f"blob {min(missing)} was not uploaded by this task nor handed to this token")
