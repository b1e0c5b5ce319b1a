"""How RelaySaver lays LangGraph's model onto relaystore records: keys, packed values, metadata.

Pure functions and constants, shared by the saver and its mixins.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointMetadata

from relaystore.errors import CorruptRecord, InvalidInput
from relaystore.integrations._shared import LANGGRAPH_SEPARATOR
from relaystore.models.checkpoints import CheckpointBundle
from relaystore.models.checkpoints import CheckpointMetadata as RelayMetadata

SEPARATOR = LANGGRAPH_SEPARATOR
"""Joins thread id and namespace (and channel and version); refused inside ids for that reason."""

_STATE_FORMAT = 1  # first byte of every packed value, so a later layout can be told apart
_ZLIB_FORMAT = 2  # …and of one whose data is zlib-compressed
_FORMATS = (_STATE_FORMAT, _ZLIB_FORMAT)
_ZLIB_TYPE = "zlib/"  # prefix of a compressed pending write's type (serde tags never start so)
COMPRESS_MIN = 512  # bytes: below it, zlib's framing and the call cost more than they save
# …and values larger than this stay raw. Small values and writes are where a row's overhead
# weighs most (and, on PostgreSQL, what TOAST leaves uncompressed); deflating every value up to
# 64 KB made the sqlite agent-loop benchmark 20-30% slower for a file a third the size.
COMPRESS_MAX = 4096
INLINE = "\x1e"  # marks a ref whose value is inline in the state (no attachment has that key)
_INLINE_TEXT = 1024  # strings up to this many characters stay inline
_PAGE = 500  # rows per listing round trip when scanning a whole thread
_LIST_PAGE = 100  # checkpoints (with values) per list_full round trip
_DELTA_KEYS = ("counters_since_delta_snapshot", "delta_writes_versioned")  # a thread uses a DeltaChannel
_METADATA_KEY = "lg_metadata"
_BLOBS_KEY = "lg_blobs"
# One encoder for every dump: json.dumps with options builds a new encoder per call.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)

# ---------------------------------------------------------------------- packing


def pack(typed: tuple[str, bytes], below: int = 0) -> bytes:
    """One ``(type, bytes)`` pair from a serde as bytes: format byte, type length, type, data.

    Data of :data:`COMPRESS_MIN` bytes or more but under ``below`` (the store's
    ``compress_below``: what it would keep uncompressed) is stored zlib-compressed under format
    byte 2, when that saves at least a third of it.
    """
    kind, data = typed
    packed = _squeeze(data, below)
    return _header(kind) + data if packed is None else _header(kind, _ZLIB_FORMAT) + packed


@functools.lru_cache(maxsize=64)  # a serde uses a handful of type tags
def _header(kind: str, fmt: int = _STATE_FORMAT) -> bytes:
    tag = kind.encode()
    if len(tag) > 255:
        raise InvalidInput(f"serializer type tag too long: {kind[:40]!r}…")
    return bytes((fmt, len(tag))) + tag


def _squeeze(data: bytes, below: int) -> bytes | None:
    """``data`` deflated (level 1: most of the gain for a fraction of the time), or None when it
    is under :data:`COMPRESS_MIN`, at least ``below``, over :data:`COMPRESS_MAX` bytes, or would not
    shrink by a third (already compressed, encrypted, random: what is left would not pay for the
    time to inflate it on every read)."""
    if not COMPRESS_MIN <= len(data) <= min(below - 1, COMPRESS_MAX):
        return None
    squeezer = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate: no header, no checksum
    packed = squeezer.compress(data) + squeezer.flush()
    return packed if len(packed) <= len(data) * 2 // 3 else None


def unpack(blob: bytes, where: str) -> tuple[str, bytes]:
    """The inverse of :func:`pack`; :class:`CorruptRecord` naming ``where`` if it is not one."""
    if len(blob) < 2 or blob[0] not in _FORMATS or len(blob) < 2 + blob[1]:
        raise CorruptRecord(where, "not a packed LangGraph value")
    end = 2 + blob[1]
    try:
        kind = blob[2:end].decode()
    except UnicodeDecodeError as exc:
        raise CorruptRecord(where, "bad serializer type tag") from exc
    return kind, blob[end:] if blob[0] == _STATE_FORMAT else _inflate(blob[end:], where)


def pack_write(kind: str, data: bytes, below: int) -> tuple[str, bytes]:
    """A pending write's ``(type, value)`` as stored: compressed as :func:`pack` does, the type
    then prefixed with :data:`_ZLIB_TYPE` (the store keeps type and value in their own fields)."""
    packed = _squeeze(data, below)
    return (kind, data) if packed is None else (_ZLIB_TYPE + kind, packed)


def unpack_write(kind: str | None, data: bytes, where: str) -> tuple[str, bytes]:
    """The serde's ``(type, bytes)`` of a stored pending write (the inverse of :func:`pack_write`)."""
    if kind is not None and kind.startswith(_ZLIB_TYPE):
        return kind[len(_ZLIB_TYPE) :], _inflate(data, where)
    return kind or "null", data


def _inflate(data: bytes, where: str) -> bytes:
    try:
        return zlib.decompress(data, -15)
    except zlib.error as exc:
        raise CorruptRecord(where, "bad compressed LangGraph value") from exc


def attachment_key(channel: str, version: Any) -> str:
    """Key of one channel value: stored once per ``(thread, namespace, channel, version)``."""
    return f"{channel}{SEPARATOR}{version}"


# ---------------------------------------------------------------------- helpers


def _config(thread_id: str, namespace: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {"thread_id": thread_id, "checkpoint_ns": namespace, "checkpoint_id": checkpoint_id}
    }


def _dump_json(value: Any) -> str:
    """Compact JSON; values JSON cannot hold (a datetime in user metadata) become strings."""
    return _JSON.encode(value)


def _json_safe(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """LangGraph metadata as JSON values: as is when it already is (the usual case), else
    through JSON with ``str`` for what JSON cannot hold (a datetime in user metadata)."""
    if _is_json(metadata):
        return dict(metadata)
    return json.loads(_dump_json(metadata))


def _is_json(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if depth > 32:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_json(v, depth + 1) for v in value)
    return False


def _is_primitive(value: Any) -> bool:
    """A value cheaper to keep in the checkpoint's state than as its own attachment."""
    if value is None or type(value) in (bool, int, float):
        return True
    return type(value) is str and len(value) <= _INLINE_TEXT


def _id_list(ids: Sequence[str], name: str) -> Sequence[str]:
    """``ids`` if it is a collection of ids; a plain string is refused, not split into letters."""
    if isinstance(ids, str | bytes):
        raise TypeError(f"{name} must be a list of ids, not a single string: use [{ids!r}]")
    return ids


def _uses_delta(record: RelayMetadata) -> bool:
    metadata = _metadata_of(record)
    return any(key in metadata for key in _DELTA_KEYS)


def _is_legacy(record: RelayMetadata) -> bool:
    """Written before refs and attributes: LangGraph metadata and value keys are in ``custom``."""
    return not record.refs and _METADATA_KEY in record.custom


def _metadata_of(record: RelayMetadata) -> CheckpointMetadata:
    """The LangGraph metadata: the record's ``attributes`` (or, for older records, ``custom``)."""
    if record.attributes:
        return record.attributes  # type: ignore[return-value]
    text = record.custom.get(_METADATA_KEY)
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CorruptRecord(f"{record.thread_id}/{record.id}", "bad LangGraph metadata JSON") from exc


def _blob_keys_of(record: RelayMetadata) -> Iterable[str]:
    """The attachment keys the checkpoint needs (for older records, those named in ``custom``)."""
    if record.refs:
        return record.refs
    text = record.custom.get(_BLOBS_KEY)
    return json.loads(text) if text else ()


async def _merge_newest_first(
    streams: list[AsyncIterator[tuple[str, CheckpointBundle]]],
) -> AsyncIterator[tuple[str, CheckpointBundle]]:
    """Merge per-thread newest-first streams into one, newest (highest uuid6 id) first, lazily."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield item
        return
    heads = [await anext(s, None) for s in streams]
    while True:
        live = [i for i, head in enumerate(heads) if head is not None]
        if not live:
            return
        best = max(live, key=lambda i: heads[i][1].metadata.id)  # type: ignore[index]
        yield heads[best]  # type: ignore[misc]
        heads[best] = await anext(streams[best], None)
