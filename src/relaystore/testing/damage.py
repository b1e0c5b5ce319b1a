"""How the corruption cases damage a stored record: the three failures a disk or a foreign writer
leaves behind, applied to the record's stored bytes.

- ``"utf8"``: one flipped high bit (bit 7 of the first letter of the first string value, else of
  the first letter), so the bytes are no longer UTF-8 (a lone lead byte followed by ASCII). A
  value is hit rather than a key where there is one, because a reader that decodes with
  replacement characters would then accept the damage silently;
- ``"json"``: the record cut in half, as a torn write leaves it: not JSON;
- ``"type"``: valid JSON of the wrong shape (a JSON string where an object or array belongs).

A factory's ``corrupt(store, what, key, how=...)`` hook reads the record's bytes, passes them
through :func:`damage` and writes them back behind the store's back.
"""

from __future__ import annotations

import re
from typing import Literal

How = Literal["utf8", "json", "type"]
HOWS: tuple[How, ...] = ("utf8", "json", "type")
WRONG_TYPE = b'"not a relaystore record"'
_FIRST_VALUE_LETTER = re.compile(rb'":\s*"([A-Za-z])')
_LETTER = re.compile(rb"[A-Za-z]")


def damage(raw: bytes, how: str) -> bytes:
    """``raw`` (a stored record's JSON bytes) damaged as ``how`` says; ValueError for another ``how``."""
    if how == "utf8":
        value = _FIRST_VALUE_LETTER.search(raw)
        letter = _LETTER.search(raw)
        if value is None and letter is None:
            return b"\xff" + raw
        at = value.start(1) if value is not None else letter.start()  # type: ignore[union-attr]
        return raw[:at] + bytes([raw[at] | 0x80]) + raw[at + 1 :]
    if how == "json":
        return raw[: max(1, len(raw) // 2)] if len(raw) > 1 else b"{"
    if how == "type":
        return WRONG_TYPE
    raise ValueError(f"unknown corruption {how!r}; expected one of {HOWS}")
