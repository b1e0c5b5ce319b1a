"""The file store's ``seq`` counter, written so that damage to it is seen, never trusted.

The counter file holds one fixed-width line, ``"<last seq, 20 digits> <CRC-32 of the digits, 8
hex>\\n"``, overwritten in place (one fsync, where a rename costs two; the width never changes,
so an overwrite cannot leave a longer old tail). A flipped digit (``24`` → ``04``) or a torn
overwrite no longer matches its check, so the store refuses to hand out numbers from it: the
next writes would otherwise reuse seq numbers already on disk, and a compare-and-set save would
land in the middle of its thread. A counter of the older form (``"<last seq>\\n"``, no check)
is checked against the data once: accepted if no file on disk carries a higher seq, refused
otherwise.

A missing counter is rebuilt from the highest seq on disk, as before (its loss cannot mislead).
A refused counter raises :class:`~relaystore.errors.CorruptRecord` naming the repair command;
``relaystore doctor --url file:///DIR --repair`` (:func:`check`) rebuilds it from the data.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Protocol

from relaystore.errors import CorruptRecord
from relaystore.stores.doctor import CounterCheck


class FileRoot(Protocol):
    """What the counter needs of :class:`~relaystore.backends.filesystem.layout.FileRoot`
    (which imports this module to advance the counter)."""

    path: Path

    def read_bytes(self, path: Path) -> bytes | None: ...

    def write_file(self, path: Path, data: bytes) -> None: ...

    def highest_seq_on_disk(self) -> int: ...


WIDTH = 20
_CHECKED = re.compile(rb"^([0-9]{20}) ([0-9a-f]{8})\n?$")
_LEGACY = re.compile(rb"^\s*([0-9]+)\s*$")


def _check_of(digits: bytes) -> str:
    return f"{zlib.crc32(digits):08x}"


def encode(value: int) -> bytes:
    """The counter file's bytes for ``value``: always the same length."""
    digits = f"{value:0{WIDTH}d}".encode()
    return digits + b" " + _check_of(digits).encode() + b"\n"


def is_checked(raw: bytes | None) -> bool:
    """Whether ``raw`` is a counter of the current form that passes its check (so it can be
    overwritten in place)."""
    return raw is not None and decode(raw)[1] is None


def decode(raw: bytes) -> tuple[int | None, str | None]:
    """``(value, problem)``: problem None for a counter that checks, ``"unchecked"`` for the older
    form (to be compared with the data), else why it cannot be trusted (value None then)."""
    if match := _CHECKED.match(raw):
        value = int(match.group(1))
        if match.group(2).decode() == _check_of(match.group(1)):
            return value, None
        return None, f"it holds {value}, which its check does not match (a damaged digit or a torn write)"
    if match := _LEGACY.match(raw):
        return int(match.group(1)), "unchecked"
    return None, "it is not a number"


def untrusted(root: FileRoot, why: str) -> CorruptRecord:
    """The error a write meets when the counter cannot be trusted: it names the repair."""
    return CorruptRecord(
        str(root.path / "seq"),
        f"the seq counter cannot be trusted: {why}. No seq was handed out; rebuild the counter "
        f"from the records with `relaystore doctor --url file://{root.path} --repair`",
    )


def last_trusted(root: FileRoot, raw: bytes | None) -> int:
    """The last seq handed out, as the counter file ``raw`` says it once checked (lock held).

    Raises :class:`CorruptRecord` (see :func:`untrusted`) for a counter that fails its check, or
    an unchecked one behind the data."""
    if raw is None:
        return -1  # missing: the caller rebuilds it from the data
    value, problem = decode(raw)
    if problem == "unchecked":
        assert value is not None
        highest = root.highest_seq_on_disk()
        if value < highest:
            raise untrusted(root, f"it says {value} but the records use seq {highest}")
        return value
    if problem is not None or value is None:
        raise untrusted(root, problem or "it is unreadable")
    return value


def check(root: FileRoot, repair: bool) -> list[CounterCheck]:
    """The counter against the highest seq on disk (a walk of the store); with ``repair``
    rewrite it as that seq when it cannot be trusted. Blocking; run it under the write lock to
    repair (:meth:`FileRoot.write`)."""
    path = root.path / "seq"
    raw = root.read_bytes(path)
    highest = root.highest_seq_on_disk()
    value, problem = decode(raw) if raw is not None else (None, "it is missing")
    if problem in (None, "unchecked") and value is not None and value < highest:
        problem = f"it says {value} but the records use seq {highest}"
    trusted = problem in (None, "unchecked")
    stored = None if raw is None else raw.decode("utf-8", "backslashreplace").strip()
    if not trusted and repair:
        root.write_file(path, encode(highest))
    detail = "" if trusted else str(problem)
    return [CounterCheck(str(path), stored, highest, trusted, repaired=not trusted and repair, detail=detail)]
