"""Thread checkpoints, as rust-ai-agents' CheckpointStore defines them. State is raw bytes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PrivateAttr


class CheckpointMetadata(BaseModel):
    """Metadata of one checkpoint (the reference's fields).

    ``created_at`` is Unix seconds. ``state_size`` is set by the store to the stored state's
    length in bytes. ``custom`` maps strings to strings.

    Past the reference (both left out of the JSON while empty, so a plain record is unchanged):

    - ``attributes``: arbitrary JSON metadata of the runtime (LangGraph's checkpoint metadata),
      stored as JSON, not as a string in ``custom``, so listings can filter on it inside the
      backend (``list_full(..., filter=...)``);
    - ``refs``: the attachment keys this checkpoint reads. ``load_full`` / ``list_full`` return
      exactly those attachments with the checkpoint, in one round trip where the backend can.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    thread_id: str
    created_at: NonNegativeInt = Field(default_factory=lambda: int(time.time()))
    parent_id: str | None = None
    step: NonNegativeInt = 0
    label: str | None = None
    tags: list[str] = Field(default_factory=list)
    state_size: NonNegativeInt = 0
    custom: dict[str, str] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict, exclude_if=lambda value: not value)
    refs: list[str] = Field(default_factory=list, exclude_if=lambda value: not value)
    # The JSON text ``CheckpointStore.save`` already made (and checked) of this exact object, so
    # a backend does not encode it again; a copy starts without it.
    _json: str | None = PrivateAttr(default=None)

    def json_text(self) -> str:
        """This metadata as JSON text (encoded once per save)."""
        return self._json if self._json is not None else self.model_dump_json()

    def __eq__(self, other: object) -> bool:  # the cached text is not part of the value
        if not isinstance(other, CheckpointMetadata):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        copied._json = None
        return copied

    @classmethod
    def new(cls, thread_id: str, step: int = 0, **fields: object) -> CheckpointMetadata:
        """Fresh metadata with a UUID v4 id and ``created_at`` now, as the reference's ``new``."""
        return cls(id=str(uuid.uuid4()), thread_id=thread_id, step=step, **fields)  # type: ignore[arg-type]

    def with_parent(self, parent_id: str) -> CheckpointMetadata:
        return self.model_copy(update={"parent_id": parent_id})

    def with_label(self, label: str) -> CheckpointMetadata:
        return self.model_copy(update={"label": label})

    def with_tag(self, tag: str) -> CheckpointMetadata:
        return self.model_copy(update={"tags": [*self.tags, tag]})

    def with_custom(self, key: str, value: str) -> CheckpointMetadata:
        return self.model_copy(update={"custom": {**self.custom, key: value}})


class PendingWrite(BaseModel):
    """A write attached to a checkpoint by a task that has not finished (LangGraph's pending
    writes), keyed by ``(task_id, idx)`` within the checkpoint.

    ``value`` is opaque bytes (base64 in JSON) and ``type`` an optional serializer tag.
    """

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    task_id: str
    idx: int = Field(ge=-(2**63), lt=2**63)
    channel: str
    value: bytes
    type: str | None = None
    task_path: str = ""


class Checkpoint(NamedTuple):
    """What ``load`` returns; unpacks as ``metadata, state`` like the reference's tuple."""

    metadata: CheckpointMetadata
    state: bytes


class CheckpointBundle(NamedTuple):
    """A checkpoint with everything a runtime reads with it (``load_full`` / ``list_full``).

    ``attachments`` holds those of ``metadata.refs`` that exist (``{}`` when the caller asked for
    metadata only); ``writes`` its pending writes sorted by ``(task_path, task_id, idx)``.
    ``state`` is ``b""`` when the caller asked for metadata only.
    """

    metadata: CheckpointMetadata
    state: bytes
    attachments: dict[str, bytes]
    writes: list[PendingWrite]
