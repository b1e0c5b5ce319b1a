"""Thread checkpoints, as rust-ai-agents' CheckpointStore defines them. State is raw bytes."""

from __future__ import annotations

import time
import uuid
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt


class CheckpointMetadata(BaseModel):
    """Metadata of one checkpoint (the reference's fields).

    ``created_at`` is Unix seconds. ``state_size`` is set by the store to the stored state's
    length in bytes. ``custom`` maps strings to strings.
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
