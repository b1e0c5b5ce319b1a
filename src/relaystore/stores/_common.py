"""Input checks, cursors and decoding shared by the three contracts."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from relaystore.errors import CorruptRecord, InvalidInput
from relaystore.models.common import Page

T = TypeVar("T")
log = logging.getLogger("relaystore")

MAX_ID_BYTES = 1024
MAX_U32 = 2**32 - 1
# Limits, retention counts and cursor positions fit a signed 64-bit column (SQLite, PostgreSQL);
# a larger Python int would escape a driver as OverflowError instead of InvalidInput.
MAX_COUNT = 2**62
_SAFE_DEPTH = 200  # pydantic reads JSON nested up to 201 levels


class _Any:
    """Sentinel for "no compare-and-set": ``save(..., expected_head=ANY)`` is the default."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


def check_id(value: object, what: str) -> str:
    """Return ``value`` if it is a usable id, else raise :class:`InvalidInput`.

    An id is a non-empty ``str`` of at most 1024 UTF-8 bytes with no NUL character.
    Every backend can store such a string unchanged (PostgreSQL rejects NUL in text).
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput(f"{what} must not be empty")
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain NUL")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode text") from exc
    if size > MAX_ID_BYTES:
        raise InvalidInput(f"{what} is {size} bytes; the limit is {MAX_ID_BYTES}")
    return value


def check_text(value: str, what: str) -> str:
    """Return ``value`` if every backend can store it as text (may be empty): no NUL, no lone
    surrogate; else raise :class:`InvalidInput`."""
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode text") from exc
    return value


def check_u32(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_U32:
        raise InvalidInput(f"{what} must be an integer in 0..{MAX_U32}, got {value!r}")
    return value


def check_limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_COUNT:
        raise InvalidInput(f"limit must be an integer in 1..{MAX_COUNT} or None, got {limit!r}")
    return limit


def check_keep(keep: object) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= MAX_COUNT:
        raise InvalidInput(f"keep must be an integer in 0..{MAX_COUNT}, got {keep!r}")
    return keep


def validate(adapter: TypeAdapter[T], value: Any, what: str) -> T:
    """Validate caller input, turning pydantic's error into :class:`InvalidInput`."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise InvalidInput(f"invalid {what}: {summarize(exc)}") from exc


def storable_json(adapter: TypeAdapter[Any], value: Any, what: str, **options: Any) -> str:
    """``value`` as JSON text, refused with :class:`InvalidInput` unless it can be read back.

    JSON cannot carry everything a caller can hand over: a lone surrogate, ``bytes`` that are not
    UTF-8, an unknown type, or very deep nesting. pydantic writes up to 254 levels but reads only
    201, so a deeper value would be acknowledged and then be unreadable forever (a lost write);
    parsing the text once here refuses it before any backend sees it.
    """
    try:
        text = adapter.dump_json(value, **options)
        if text.count(b"[") + text.count(b"{") > _SAFE_DEPTH:  # fewer brackets cannot nest deeper
            from_json(text)
    except ValueError as exc:  # pydantic's serialization and parse errors, UnicodeError too
        raise InvalidInput(f"{what} cannot be stored as JSON: {str(exc).splitlines()[0]}") from exc
    return text.decode()


def summarize(exc: ValidationError, most: int = 3) -> str:
    """pydantic's report on one line: ``loc: message`` for the first few errors."""
    errors = exc.errors(include_url=False)
    parts = [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in errors[:most]]
    if len(errors) > most:
        parts.append(f"and {len(errors) - most} more")
    return "; ".join(parts)


# --------------------------------------------------------------------------- cursors
# A cursor is base64url(JSON position) so callers treat it as opaque and a typo is caught.


def encode_cursor(position: int | str) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: object, kind: type) -> Any:
    if cursor is None:
        return None
    try:
        assert isinstance(cursor, str)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except Exception as exc:  # any malformed cursor is the caller's error
        raise InvalidInput(f"malformed cursor: {cursor!r}") from exc
    if type(position) is not kind or (isinstance(position, int) and not 0 <= position <= MAX_COUNT):
        raise InvalidInput(f"cursor {cursor!r} does not belong to this listing")
    return position


def decode_seq_cursor(cursor: object) -> int | None:
    """The store-order position (an int) encoded in ``cursor``, or None for the first page."""
    return _decode_cursor(cursor, int)


def decode_key_cursor(cursor: object) -> str | None:
    """The last key (a str) of the previous page, or None for the first page."""
    return _decode_cursor(cursor, str)


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix`` (None: no bound).

    Ids that start with ``prefix`` are exactly those in ``[prefix, bound)`` in code point order,
    which is also UTF-8 byte order, so a backend can answer a prefix with an index range.
    """
    for cut in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[cut]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates are not valid text
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:cut] + chr(code)
    return None


def fetch_size(limit: int | None) -> int | None:
    """Rows to ask a backend for: one more than ``limit`` tells whether another page exists."""
    return None if limit is None else limit + 1


def make_page(
    rows: list[tuple[Any, T]], limit: int | None, position: Callable[[Any], int | str] = lambda p: p
) -> Page[T]:
    """Build a page from ``(position, item)`` rows fetched with :func:`fetch_size`.

    :class:`Skipped` items (corrupt rows) count for the cursor and are then dropped, so a corrupt
    row never ends a listing early; such a page may hold fewer than ``limit`` items.
    """
    next_cursor = None
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(position(rows[-1][0]))
    return Page([item for _, item in rows if not isinstance(item, Skipped)], next_cursor)


# --------------------------------------------------------------------------- decoding


def parse_json(adapter: TypeAdapter[T], text: str | bytes, key: str) -> T:
    """Decode one stored document or raise :class:`CorruptRecord` naming ``key``."""
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        raise CorruptRecord(key, summarize(exc)) from exc
    except ValueError as exc:
        raise CorruptRecord(key, str(exc).splitlines()[0]) from exc


class Skipped:
    """Stands in for a corrupt row in a listing, keeping its position (``seq``) for paging."""

    __slots__ = ("key", "seq")

    def __init__(self, seq: Any, key: str) -> None:
        self.seq = seq
        self.key = key

    def __repr__(self) -> str:
        return f"Skipped({self.key})"


def parse_rows(adapter: TypeAdapter[T], rows: Iterable[tuple[Any, str, str | bytes]]) -> list[tuple[Any, T]]:
    """Decode listed ``(position, key, text)`` rows; a corrupt one becomes :class:`Skipped`.

    A listing never fails as a whole because of one bad record (NeMo Relay's ``list_runs`` does):
    the record is logged on the ``relaystore`` logger and left out by :func:`make_page`, while
    its own read (``get``/``load``) raises :class:`CorruptRecord`.
    """
    # typed as T: callers carry a Skipped as an item until make_page or without_skipped drops it
    decoded: list[tuple[Any, Any]] = [
        (position, or_skipped(position, parse_json, adapter, text, key)) for position, key, text in rows
    ]
    return decoded


def or_skipped(position: Any, decode: Callable[..., T], *args: Any) -> T | Skipped:
    """``decode(*args)``, or a :class:`Skipped` at ``position`` (logged on ``relaystore``) when it
    raises :class:`CorruptRecord`: how a listing leaves one bad record out and goes on."""
    try:
        return decode(*args)
    except CorruptRecord as exc:
        log.warning("skipping %s", exc)
        return Skipped(position, exc.key)


def without_skipped(items: Iterable[T | Skipped]) -> list[T]:
    return [item for item in items if not isinstance(item, Skipped)]
