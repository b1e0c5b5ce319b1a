"""Every exception relaystore raises on purpose.

Callers can catch :class:`RelayStoreError` for all of them, or a narrower class:

- :class:`NotFound` and its subclasses: the thing asked for does not exist.
- :class:`Conflict`: a compare-and-set lost, or a unique id is taken. Nothing was written.
- :class:`InvalidInput`: the arguments are wrong (bad id, mismatched thread, bad cursor).
- :class:`CorruptRecord`: a stored record cannot be decoded. Only the read that touches it fails.
- :class:`BackendUnavailable`: the database or server cannot be reached; a later call may succeed.
- :class:`NotSupported`: the backend lacks a capability (``capability`` names it); no call will succeed.
- :class:`AuthError` (:class:`Unauthorized`, :class:`Forbidden`): a relaystore server refused the
  token (``http://`` backend only).
"""

from __future__ import annotations


class RelayStoreError(Exception):
    """Base class of every relaystore error."""


class NotFound(RelayStoreError, KeyError):
    """The requested record does not exist.

    Subclasses ``KeyError`` so that dict-style ``except KeyError`` code keeps working.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


class CheckpointNotFound(NotFound):
    """No checkpoint with that id in the thread (as rust-ai-agents' ``NotFound``)."""


class ThreadNotFound(NotFound):
    """The thread has no checkpoints (as rust-ai-agents' ``ThreadNotFound``)."""


class OutputNotFound(NotFound):
    """No output matches (as mlua-swarm's ``OutputStoreError::NotFound``)."""


class BlobNotFound(NotFound):
    """No blob with that SHA-256 is stored."""


class Conflict(RelayStoreError):
    """A compare-and-set or uniqueness check failed; the write was not applied."""


class InvalidInput(RelayStoreError, ValueError):
    """An argument is malformed or inconsistent; nothing was read or written."""


class CorruptRecord(RelayStoreError):
    """A stored record cannot be decoded.

    ``key`` names the record (a Redis key, a table and row id, a file path).
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"corrupt record {key}: {reason}")
        self.key = key
        self.reason = reason


class BackendUnavailable(RelayStoreError):
    """The backend cannot be reached or timed out; the call may be retried."""


class NotSupported(RelayStoreError):
    """The backend does not provide a capability (``capability`` names it, as in
    :class:`relaystore.testing.Capability`); nothing was read or written, and retrying won't help."""

    def __init__(self, backend: str, capability: str) -> None:
        super().__init__(f"the {backend} backend does not support {capability}")
        self.backend = backend
        self.capability = capability


class TooLarge(InvalidInput):
    """A request body or upload is over the server's size limit (HTTP 413); nothing was written."""


class AuthError(RelayStoreError):
    """A relaystore server refused the caller (only the ``http://`` backend raises it)."""


class Unauthorized(AuthError):
    """No token, or one that is malformed, expired or wrongly signed (HTTP 401)."""


class Forbidden(AuthError):
    """A valid token whose scope does not cover the request (HTTP 403)."""


__all__ = [
    "AuthError",
    "BackendUnavailable",
    "BlobNotFound",
    "CheckpointNotFound",
    "Conflict",
    "CorruptRecord",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "OutputNotFound",
    "RelayStoreError",
    "ThreadNotFound",
    "TooLarge",
    "Unauthorized",
]
