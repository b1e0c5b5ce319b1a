"""The HTTP protocol between ``relaystore serve`` and the ``http://`` backend, stated once.

Both sides import this module: the server (:mod:`relaystore.server.routes`) declares its routes on
these path templates and answers errors from :data:`ERROR_STATUS`; the client
(:mod:`relaystore.backends.http`) builds its URLs from the same templates and turns an error answer
back into the same :mod:`relaystore.errors` class with :func:`error_from_answer`. It needs only
pydantic (no Starlette, no httpx), so neither side imports the other. The route table itself, with
its parameters and OpenAPI descriptions, is ``docs/server.md``.

Ids (thread, task, agent, document key) travel in query strings, never in paths, because they may
contain ``/``; only refs, digests and document kinds (fixed alphabets) fill a ``{template}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from relaystore import errors
from relaystore.errors import (
    BackendUnavailable,
    Conflict,
    CorruptRecord,
    Forbidden,
    InvalidInput,
    NotFound,
    NotSupported,
    RelayStoreError,
    TooLarge,
    Unauthorized,
)
from relaystore.models.checkpoints import CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.models.outputs import OutputEvent, OutputRef

# --------------------------------------------------------------------------- paths

HEALTHZ = "/healthz"
INFO = "/v1/info"
OPENAPI = "/openapi.json"
METRICS = "/metrics"
TOKENS = "/v1/tokens"
TOKENS_REVOKE = "/v1/tokens/revoke"

OUTPUTS = "/v1/outputs"
DATA_EMIT = "/v1/data/emit"  # mlua-swarm's name of POST /v1/outputs
OUTPUTS_IMPORT = "/v1/outputs/import"
OUTPUTS_ATTEMPT = "/v1/outputs/attempt"
OUTPUTS_LATEST = "/v1/outputs/latest"
OUTPUTS_LATEST_IN_RUN = "/v1/outputs/latest-in-run"
OUTPUTS_BATCH = "/v1/outputs/batch"
OUTPUTS_CHILDREN = "/v1/outputs/children"
OUTPUT = "/v1/outputs/{ref}"
OUTPUT_ANCESTORS = "/v1/outputs/{ref}/ancestors"
OUTPUT_DESCENDANTS = "/v1/outputs/{ref}/descendants"

CHECKPOINTS = "/v1/checkpoints"
CHECKPOINTS_WITH_ATTACHMENTS = "/v1/checkpoints/with-attachments"
CHECKPOINTS_FULL = "/v1/checkpoints/full"
CHECKPOINTS_FULL_ONE = "/v1/checkpoints/full/one"
CHECKPOINTS_LATEST = "/v1/checkpoints/latest"
CHECKPOINT = "/v1/checkpoint"
CHECKPOINTS_WRITES = "/v1/checkpoints/writes"
THREADS = "/v1/threads"
THREADS_HEAD = "/v1/threads/head"
THREADS_COUNT = "/v1/threads/count"
THREADS_PRUNE = "/v1/threads/prune"
THREADS_ORPHAN_WRITES_DELETE = "/v1/threads/orphan-writes/delete"
ATTACHMENTS = "/v1/threads/attachments"
ATTACHMENTS_GET = "/v1/threads/attachments/get"
ATTACHMENTS_DELETE = "/v1/threads/attachments/delete"

ADAPTIVE_RUNS = "/v1/adaptive/runs"
ADAPTIVE_RUNS_COUNT = "/v1/adaptive/runs/count"
ADAPTIVE_RUNS_PRUNE = "/v1/adaptive/runs/prune"
ADAPTIVE_AGENTS = "/v1/adaptive/agents"
ADAPTIVE_KEYS = "/v1/adaptive/keys/{kind}"
ADAPTIVE_DOC = "/v1/adaptive/docs/{kind}"

BLOBS = "/v1/blobs"
BLOB = "/v1/blobs/{sha256}"
BLOB_STAT = "/v1/blobs/{sha256}/stat"
BLOB_DOWNLOAD_TOKEN = "/v1/blobs/{sha256}/download-token"

ITEMS_GET = "/v1/store/items/get"
ITEMS_SEARCH = "/v1/store/items/search"
ITEMS_WRITE = "/v1/store/items/write"
ITEMS_NAMESPACES = "/v1/store/namespaces"
ITEMS_COUNT = "/v1/store/count"
ITEMS_SWEEP = "/v1/store/sweep"
ITEMS_TOKENS = "/v1/store/tokens"

TENANT_PREFIX = "/t/{tenant}"  # before any path: the same routes on tenant ``tenant``'s store

# --------------------------------------------------------------------------- headers

METADATA_HEADER = "Relaystore-Metadata"
"""A checkpoint's metadata travels beside its raw state bytes: base64url (unpadded) of its JSON."""


def b64(text: str) -> str:
    """``text`` as unpadded base64url of its UTF-8 (the metadata header, checkpoint entity tags)."""
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode().rstrip("=")


def unb64(text: str, what: str) -> str:
    """The text :func:`b64` encoded; :class:`InvalidInput` naming ``what`` when it is not that."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{what} is not base64url of UTF-8 text") from exc


def checkpoint_etag(checkpoint_id: str) -> str:
    """A checkpoint's entity tag (``If-Match`` of a save): its id in base64url, quoted (ids may
    hold any character)."""
    return f'"{b64(checkpoint_id)}"'


# --------------------------------------------------------------------------- errors

ERROR_STATUS: tuple[tuple[type[RelayStoreError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),
    (InvalidInput, 422),
    (NotSupported, 501),
    (CorruptRecord, 500),
    (BackendUnavailable, 503),
)
"""The status of each :mod:`relaystore.errors` class, most specific first (``TooLarge`` is an
``InvalidInput``). Any other failure is a 500."""

PRECONDITION_FAILED = 412
"""A stale ``If-Match`` on a document: the client raises :class:`Conflict` for it."""


def status_of(exc: RelayStoreError) -> int:
    """The HTTP status that answers ``exc`` (500 for a class the table does not name)."""
    return next((status for cls, status in ERROR_STATUS if isinstance(exc, cls)), 500)


def error_code(error: str) -> str:
    """The stable, machine-readable code of an error class name: ``CorruptRecord`` →
    ``corrupt_record``. Clients may switch on it; it never changes for a class."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", error).lower()


def error_body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An error answer: ``{"error": "<ExceptionClass>", "code": "<snake_case>", "detail": ..., **extra}``."""
    return {"error": error, "code": error_code(error), "detail": detail, **extra}


_CORRUPT_REASONS = (
    (
        re.compile(r"relaystore doctor"),
        "an untrusted counter: run relaystore doctor --repair on the server's store",
    ),
    (re.compile(r"utf-?8|unicode|decode byte|invalid (start|continuation) byte", re.I), "not UTF-8 text"),
    (re.compile(r"json|unterminated|expecting|eof|delimiter|control character", re.I), "not JSON"),
)


def public_reason(reason: str) -> str:
    """What a corrupt record's answer says of it: a fixed phrase (not UTF-8 text, not JSON, not
    the expected record), never the decoder's message, which may quote the record's text."""
    for pattern, phrase in _CORRUPT_REASONS:
        if pattern.search(reason):
            return phrase
    return "not the expected record"


_CLIENT_ERRORS: dict[int, type[RelayStoreError]] = {s: cls for cls, s in ERROR_STATUS if s < 500}
_CLIENT_ERRORS[PRECONDITION_FAILED] = Conflict


def _error_class(name: str, status: int) -> type[RelayStoreError]:
    """The class an answer names, else the one its status implies (a proxy's answer names none)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, RelayStoreError):
        return cls
    if status >= 500:
        return BackendUnavailable
    return _CLIENT_ERRORS.get(status, InvalidInput)


def error_from_answer(status: int, content: bytes, reason: str = "") -> RelayStoreError:
    """The :mod:`relaystore.errors` exception that an error answer (status ≥ 400) stands for.

    The body's ``error`` names the class; a body that is not an error answer (a proxy's page)
    falls back to the status (5xx: :class:`BackendUnavailable`, other 4xx: :class:`InvalidInput`).
    """
    try:
        body = json.loads(content)
        name, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        body, name, detail = {}, "", content[:200].decode("utf-8", "replace") or reason
    cls = _error_class(name, status)
    if cls is CorruptRecord:
        return CorruptRecord(str(body.get("key", "?")), str(body.get("reason", detail)))
    if cls is NotSupported:
        return NotSupported(str(body.get("backend", "remote")), str(body.get("capability", detail)))
    return cls(detail)


def unreachable(url: str, exc: Exception) -> BackendUnavailable:
    """What a transport failure (refused, reset, timed out) on ``url`` raises."""
    return BackendUnavailable(f"relaystore server {url} is unreachable: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- bodies

_BASE64 = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")
# Bytes travel as base64 only in JSON mode, so bodies carrying bytes are validated from the raw text.


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


class RevokeRequest(BaseModel):
    """Body of ``POST /v1/tokens/revoke``: the ``jti`` of the agent token to refuse from now on."""

    model_config = ConfigDict(extra="forbid")

    jti: str = Field(min_length=1, max_length=256)
    expires_at: NonNegativeInt | None = None


class WritesRequest(BaseModel):
    """Body of ``POST /v1/checkpoints/writes``: pending writes, each ``value`` in base64."""

    model_config = ConfigDict(extra="forbid")

    writes: list[PendingWrite]


class AttachmentsRequest(BaseModel):
    """Body of ``POST /v1/threads/attachments`` (and the answer of ``…/get``): key → value in base64
    (standard or url-safe)."""

    model_config = _BASE64

    attachments: dict[str, bytes]


class CheckpointWithAttachmentsRequest(BaseModel):
    """Body of ``POST /v1/checkpoints/with-attachments``: the state and the attachments to store
    with it, in base64 (the metadata and compare-and-set travel in headers, as for a plain save)."""

    model_config = _BASE64

    state: bytes
    attachments: dict[str, bytes]


class KeysRequest(BaseModel):
    """Body of the attachment routes that take keys (get, delete)."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] = Field(max_length=1000)


class BundleWire(BaseModel):
    """A :class:`CheckpointBundle` as JSON (bytes as base64): the HTTP service's full reads."""

    model_config = _BASE64

    metadata: CheckpointMetadata
    state: bytes
    attachments: dict[str, bytes]
    writes: list[PendingWrite]

    @classmethod
    def of(cls, bundle: CheckpointBundle) -> BundleWire:
        return cls(
            metadata=bundle.metadata, state=bundle.state, attachments=bundle.attachments, writes=bundle.writes
        )

    def bundle(self) -> CheckpointBundle:
        return CheckpointBundle(self.metadata, self.state, self.attachments, self.writes)


class BundlePageWire(BaseModel):
    """A page of :class:`BundleWire` as the HTTP service sends it."""

    model_config = ConfigDict(extra="forbid")

    items: list[BundleWire]
    next_cursor: str | None = None
    warnings: list[str] = []
    """One line per warning the store logged while answering (a skipped corrupt record)."""
    corrupt: list[dict[str, str]] = []
    """The corrupt records the store skipped: ``{"key", "reason"}`` (a fixed phrase) each."""
