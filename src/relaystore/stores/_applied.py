"""Telling a retry from a new write: the "raised but applied" case.

A call can raise :class:`~relaystore.errors.BackendUnavailable` after the store committed it: a
PostgreSQL ``call_timeout`` or a dropped connection can cut the answer of a COMMIT that went
through, and over ``http://`` a request's answer can be lost after the server's store committed.
The caller cannot tell from the error, so it retries. A checkpoint save names its write (the
metadata id), so the retry can tell: when the thread already holds that id with the same
metadata, state and attachments, the earlier call landed, and the retry answers
:class:`AlreadyApplied` instead of the :class:`~relaystore.errors.Conflict` (stale head,
duplicate id) it would otherwise get; with different content, it stays a Conflict.
"""

from __future__ import annotations

from typing import Any

from relaystore.models.checkpoints import Checkpoint, CheckpointMetadata


class AlreadyApplied(str):
    """The id a save returns when an earlier call with the same id and content had landed.

    It is a ``str`` (the checkpoint id), so callers that ignore the distinction keep working;
    ``isinstance(result, AlreadyApplied)`` tells a retry that found its write already stored.
    """

    __slots__ = ()

    already_applied = True


def same_write(
    found: Checkpoint | None,
    metadata: CheckpointMetadata,
    state: bytes,
    attachments: dict[str, bytes],
    stored_attachments: dict[str, Any],
) -> bool:
    """True when ``found`` (the checkpoint stored under ``metadata.id``) is this very write."""
    if found is None or found.state != state:
        return False
    if found.metadata.model_dump() != metadata.model_dump():
        return False
    return stored_attachments == attachments
