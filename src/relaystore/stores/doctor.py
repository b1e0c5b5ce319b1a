"""``relaystore doctor``: find corrupt records and untrusted counters, and repair counters.

A store's records are read through the public API, as an export reads them (blob bytes and
attachments aside), and every record a read or a listing cannot decode is named. Counters a
backend keeps beside its data (the file backend's ``seq`` file, Redis' ``INCR`` keys) are checked
against the data through :meth:`relaystore.stores.Store.check_counters`; with ``repair`` each
untrusted one is rebuilt from the data (the highest number in use). Backends whose database
hands out the numbers (SQLite ``AUTOINCREMENT``, PostgreSQL identity) keep no such counter.

Corrupt records are reported, never repaired: they hold what is left of the data, and only
their owner can tell what they held (delete or overwrite them through the API).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaystore.stores import Store

REPAIR_HINT = "relaystore doctor --url URL --repair"


@dataclass(frozen=True)
class CounterCheck:
    """One counter and what the data says of it.

    ``name`` is where it lives (a file path, a Redis key), ``stored`` the text it holds (None if
    missing), ``expected`` the highest number the data uses, ``trusted`` whether the next number
    it hands out is above every number in use, and ``repaired`` whether ``check_counters(repair=True)``
    rewrote it (to ``expected``).
    """

    name: str
    stored: str | None
    expected: int
    trusted: bool
    repaired: bool = False
    detail: str = ""


@dataclass
class DoctorReport:
    """What :func:`diagnose` found: corrupt record keys, counters checked, records read by type."""

    corrupt: list[str] = field(default_factory=list)
    counters: list[CounterCheck] = field(default_factory=list)
    read: dict[str, int] = field(default_factory=dict)

    @property
    def untrusted(self) -> list[CounterCheck]:
        """Counters still untrusted (not repaired)."""
        return [c for c in self.counters if not c.trusted and not c.repaired]

    @property
    def healthy(self) -> bool:
        return not self.corrupt and not self.untrusted

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "corrupt": list(self.corrupt),
            "counters": [vars(c) for c in self.counters],
            "read": dict(self.read),
        }


async def diagnose(store: Store, *, repair: bool = False) -> DoctorReport:
    """Read every record of ``store`` and check its counters; with ``repair``, rebuild the
    untrusted counters from the data. Raises what the store raises when it cannot be reached."""
    from relaystore.stores.transfer import Exporter

    report = DoctorReport()
    scan = Exporter(store, contents=False)
    async for kind, _ in scan.lines():
        if kind not in ("header", "footer"):
            report.read[kind] = report.read.get(kind, 0) + 1
    report.corrupt = list(scan.corrupt)
    report.counters = await store.check_counters(repair=repair)
    return report
