"""Types shared by every model: wire-exact timestamps, ids and pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

# RFC 3339 as NeMo Relay writes it: "Z" or an offset, and 0 to 9 fraction digits.
_RFC3339_PATTERN = r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
_RFC3339 = re.compile(_RFC3339_PATTERN)

# Kept as the exact string: Python's datetime holds microseconds, NeMo Relay writes nanoseconds,
# and a parse-then-serialize round trip must not lose the last three digits. The patterns run in
# pydantic's Rust core: a thousand runs hold tens of thousands of timestamps.
Timestamp = Annotated[str, StringConstraints(pattern=_RFC3339_PATTERN)]

# Lowercase and hyphenated, as NeMo Relay writes UUIDs.
UuidStr = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


def timestamp_to_ns(value: str) -> int:
    """Nanoseconds since the Unix epoch of an RFC 3339 timestamp (exact, no float rounding)."""
    match = _RFC3339.match(value)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, frac, zone = match.groups()
    tz = UTC if zone == "Z" else datetime.strptime(zone.replace(":", ""), "%z").tzinfo
    whole = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    nanos = int((frac or "").ljust(9, "0"))
    return int(whole.timestamp()) * 1_000_000_000 + nanos


def ns_to_rfc3339(ns: int, zone: str = "Z") -> str:
    """RFC 3339 of nanoseconds since the epoch, as Rust's chrono writes it: 0, 3, 6 or 9 fraction
    digits (the fewest that keep the value), then ``zone`` (``"Z"`` or ``"+00:00"``)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        digits = ""
    elif frac % 1_000_000 == 0:
        digits = f".{frac // 1_000_000:03d}"
    elif frac % 1000 == 0:
        digits = f".{frac // 1000:06d}"
    else:
        digits = f".{frac:09d}"
    return f"{stamp}{digits}{zone}"


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with microseconds and ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class WireModel(BaseModel):
    """Base of every stored document: unknown fields survive a round trip untouched."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json(self) -> str:
        """Compact JSON, fields in declaration order (as serde writes them)."""
        return self.model_dump_json(by_alias=True)

    def to_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


def omit_none() -> object:
    """A field that NeMo Relay omits when it is None (``skip_serializing_if``)."""
    return Field(default=None, exclude_if=lambda value: value is None)


class Page(list[T], Generic[T]):
    """One page of a listing: a plain ``list`` plus ``next_cursor``.

    ``next_cursor`` is an opaque string to pass back as ``cursor=`` for the next page,
    or ``None`` when the listing is complete.
    """

    next_cursor: str | None

    def __init__(self, items: list[T] | tuple[T, ...] = (), next_cursor: str | None = None) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"Page({list.__repr__(self)}, next_cursor={self.next_cursor!r})"
