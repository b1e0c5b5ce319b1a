"""Key-ordered paging shared by the PostgreSQL stores: distinct keys by skip scan, and cursors."""

from __future__ import annotations

from typing import Any

from relaystore.stores._common import prefix_upper_bound

# Distinct values of an indexed column read as a skip scan: one index probe per value, so
# listing 10 threads costs 10 probes however many checkpoints each thread has.
SKIP_SCAN = """
    WITH RECURSIVE walk(k) AS (
        (SELECT {col} FROM {s}.{table} WHERE {col} > %(after)s AND {col} >= %(low)s
            AND (%(high)s::text IS NULL OR {col} < %(high)s) ORDER BY {col} LIMIT 1)
        UNION ALL
        SELECT (SELECT t.{col} FROM {s}.{table} t WHERE t.{col} > walk.k
            AND (%(high)s::text IS NULL OR t.{col} < %(high)s) ORDER BY t.{col} LIMIT 1)
        FROM walk WHERE walk.k IS NOT NULL
    )
    SELECT k FROM walk WHERE k IS NOT NULL LIMIT %(limit)s"""


def skip_scan(table: str, column: str) -> str:
    """:data:`SKIP_SCAN` over ``table.column``; its parameters come from :func:`key_range`."""
    return SKIP_SCAN.replace("{table}", table).replace("{col}", column)


def after_key(after: str | None) -> str:
    """The ``key > %s`` bound of a page that starts after ``after`` (``None``: the first page)."""
    return "" if after is None else after  # ids are never empty, so "" precedes every id


def key_range(after: str | None, prefix: str | None, limit: int | None) -> dict[str, Any]:
    """Parameters of :data:`SKIP_SCAN`: keys > after, in [prefix, its upper bound)."""
    high = None if prefix is None else prefix_upper_bound(prefix)
    return {"after": after_key(after), "low": prefix or "", "high": high, "limit": limit}
