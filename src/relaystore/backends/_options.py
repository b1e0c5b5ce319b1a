"""Backend options from a URL query and keyword arguments, read the same way by every backend."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from relaystore.errors import InvalidInput

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def merge_options(
    query: str, options: dict[str, Any], allowed: Iterable[str], backend: str
) -> dict[str, str]:
    """Query parameters overridden by keyword options (``None`` keywords ignored), as strings.

    Raises :class:`InvalidInput` naming any option the backend does not know.
    """
    merged = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    merged.update({k: str(v) for k, v in options.items() if v is not None})
    unknown = set(merged) - set(allowed)
    if unknown:
        raise InvalidInput(f"unknown {backend} option(s): {', '.join(sorted(unknown))}")
    return merged


def number(
    opts: dict[str, str], name: str, kind: type, default: Any, *, low: float, exclusive: bool = False
) -> Any:
    """Option ``name`` as ``kind`` (int or float), ``default`` when absent.

    It must be at least ``low``, or above it when ``exclusive``; otherwise :class:`InvalidInput`.
    """
    raw = opts.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value < low or (exclusive and value == low):
        raise InvalidInput(f"{name} must be {'above' if exclusive else 'at least'} {low}, got {raw!r}")
    return value


def flag(opts: dict[str, str], name: str, default: bool, *, blank_is_false: bool = False) -> bool:
    """Option ``name`` as a boolean (1/0, true/false, yes/no, on/off), ``default`` when absent."""
    raw = opts.get(name)
    if raw is None:
        return default
    value = raw.lower()
    if blank_is_false and value == "":
        return False
    if value not in TRUE | FALSE:
        raise InvalidInput(f"{name} must be true or false, got {raw!r}")
    return value in TRUE
