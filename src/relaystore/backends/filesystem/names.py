"""File names of the file backend: ids encoded into safe, case-proof names, and seq names.

Ids are arbitrary strings, so they are encoded (:func:`encode_name`): ``[a-z0-9_.-]`` stay, an
upper-case letter becomes ``^`` plus the letter, anything else ``%xx`` per UTF-8 byte, and a
leading or trailing ``.`` is escaped. An encoding longer than :data:`PLAIN_NAME_BYTES` becomes a
readable prefix, ``~`` and the SHA-256 of the id (the id is then kept in a ``.key`` sidecar).
"""

from __future__ import annotations

import hashlib
import re

KEY_SUFFIX = ".key"
SEQ_WIDTH = 20
PLAIN_NAME_BYTES = 120  # longer encodings are hashed; 20 + 1 + 113 + 6 stays far below NAME_MAX
HASHED_PREFIX_BYTES = 48

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
SEQ_JSON = re.compile(r"^(\d{20})-(.+)\.json$")
SEQ_PREFIX = re.compile(r"^(\d{20})-")


def encode_name(key: str) -> str:
    """A file name for ``key``: injective, lowercase ASCII, at most 113 bytes, never ``.``-led."""
    plain = "".join(_encode_char(char) for char in key)
    if plain.startswith("."):
        plain = "%2e" + plain[1:]
    if plain.endswith("."):  # Windows drops trailing dots
        plain = plain[:-1] + "%2e"
    if len(plain) <= PLAIN_NAME_BYTES:
        return plain
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{_cut(plain, HASHED_PREFIX_BYTES)}~{digest}"


def _encode_char(char: str) -> str:
    if char in _SAFE:
        return char
    if "A" <= char <= "Z":
        return "^" + char.lower()
    return "".join(f"%{byte:02x}" for byte in char.encode("utf-8"))


def _cut(encoded: str, size: int) -> str:
    """The longest prefix of ``encoded`` within ``size`` bytes that does not split an escape."""
    end = 0
    while end < len(encoded):
        step = {"%": 3, "^": 2}.get(encoded[end], 1)
        if end + step > size:
            break
        end += step
    return encoded[:end]


def decode_name(name: str) -> str | None:
    """The key that :func:`encode_name` turned into ``name``; None for hashed or foreign names."""
    if "~" in name:
        return None
    raw = bytearray()
    index = 0
    try:
        while index < len(name):
            char = name[index]
            if char == "%":
                raw.append(int(name[index + 1 : index + 3], 16))
                index += 3
            elif char == "^":
                raw += name[index + 1].upper().encode()
                index += 2
            else:
                raw += char.encode()
                index += 1
        key = raw.decode("utf-8")
    except (ValueError, IndexError):
        return None
    return key if key and encode_name(key) == name else None


def seq_name(seq: int, stem: str) -> str:
    return f"{seq:0{SEQ_WIDTH}d}-{stem}"


def is_sidecar(name: str) -> bool:
    return "~" in name and name.endswith(KEY_SUFFIX)


def stem_of(name: str) -> str:
    """``<stem>`` of ``<seq>-<stem>.json``."""
    return name[SEQ_WIDTH + 1 : -len(".json")]
