"""Swarm outputs, as mlua-swarm's OutputStore defines them, plus ``seq``, ``created_at`` and blobs.

- :class:`OutputRef` is ``"out-"`` plus 32 lowercase hex digits (128 random bits); mlua-swarm's
  shorter 10-digit refs are still accepted where a ref is read.
- :data:`OutputEvent` is tagged by ``"type"``: progress, partial, artifact, final.
- :data:`ContentRef` is tagged by ``"kind"``: inline, file_ref, and our ``blob``.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    NonNegativeInt,
)
from pydantic_core import CoreSchema, core_schema

from relaystore.models.common import Timestamp

_REF = re.compile(r"^out-[0-9a-f]{10,64}$")


class OutputRef(str):
    """An output id: ``out-`` plus lowercase hex. Serializes as a bare JSON string."""

    __slots__ = ()

    def __new__(cls, value: str) -> OutputRef:
        if not isinstance(value, str) or not _REF.match(value):
            raise ValueError(f"not an output ref (out- plus 10 to 64 lowercase hex digits): {value!r}")
        return super().__new__(cls, value)

    @classmethod
    def generate(cls) -> OutputRef:
        """A fresh ref with 128 random bits: unguessable and collision-free in practice."""
        return cls("out-" + secrets.token_hex(16))

    @classmethod
    def _checked(cls, value: str) -> OutputRef:
        return str.__new__(cls, value)

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: GetCoreSchemaHandler) -> CoreSchema:
        # The pattern runs in pydantic's Rust core, so a listing of thousands of records does
        # not call Python's re for every ref; only the wrapping into OutputRef is Python.
        return core_schema.no_info_after_validator_function(
            cls._checked,
            core_schema.str_schema(pattern=_REF.pattern),
            serialization=core_schema.to_string_ser_schema(),
        )


class _Tagged(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InlineContent(_Tagged):
    kind: Literal["inline"] = "inline"
    value: Any


class FileRefContent(_Tagged):
    kind: Literal["file_ref"] = "file_ref"
    path: str
    mime: str | None = None
    size_hint: NonNegativeInt | None = None


class BlobContent(_Tagged):
    """Content kept by the store as a content-addressed blob (SHA-256 hex, size in bytes)."""

    kind: Literal["blob"] = "blob"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: NonNegativeInt
    mime: str | None = None


ContentRef = Annotated[InlineContent | FileRefContent | BlobContent, Field(discriminator="kind")]


class ProgressEvent(_Tagged):
    type: Literal["progress"] = "progress"
    stage: str
    note: str | None = None


class PartialEvent(_Tagged):
    type: Literal["partial"] = "partial"
    chunk: ContentRef


class ArtifactEvent(_Tagged):
    type: Literal["artifact"] = "artifact"
    name: str
    content: ContentRef


class FinalEvent(_Tagged):
    type: Literal["final"] = "final"
    content: ContentRef
    ok: bool


OutputEvent = Annotated[
    ProgressEvent | PartialEvent | ArtifactEvent | FinalEvent, Field(discriminator="type")
]


class OutputRecord(BaseModel):
    """A stored output. ``seq`` is the store order (from the database); ``created_at`` is UTC."""

    model_config = ConfigDict(extra="forbid")

    id: OutputRef
    task_id: str
    attempt: NonNegativeInt
    producer_agent: str
    event: OutputEvent
    parent_refs: list[OutputRef] = Field(default_factory=list)
    seq: NonNegativeInt = 0
    created_at: Timestamp


def inline(value: Any) -> InlineContent:
    """Inline JSON content (a string, number, list or object)."""
    return InlineContent(value=value)


def file_ref(path: str, mime: str | None = None, size_hint: int | None = None) -> FileRefContent:
    """A locator for content kept outside the store."""
    return FileRefContent(path=path, mime=mime, size_hint=size_hint)
