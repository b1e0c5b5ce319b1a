"""What the SQL backends' native vector searches share (``sqlite/vectors.py``, ``postgres/vectors.py``).

Both keep one ``item_vectors`` row per vector and rank with the engine's cosine distance over
``item_vectors v JOIN items i``; only the placeholder and the vector's column type differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from relaystore.stores._common import Skipped, or_skipped
from relaystore.stores.items import ItemWrite, StoredItem, encode_namespace


def scope(
    low: str | None, high: str | None, now: float, filters: list[tuple[str, list[Any]]], mark: str
) -> tuple[str, list[Any]]:
    """The WHERE text (over ``items`` aliased ``i``) and its parameters: live at ``now``, the
    namespace in ``[low, high)``, and every filter clause (on ``value``). ``mark`` is the
    driver's placeholder (``?`` or ``%s``)."""
    clauses = [f"(i.expires_at IS NULL OR i.expires_at > {mark})"]
    params: list[Any] = [now]
    for bound, op in ((low, ">="), (high, "<")):
        if bound is not None:
            clauses.append(f"i.ns {op} {mark}")
            params.append(bound)
    for text, bound_params in filters:
        clauses.append(text)
        params.extend(bound_params)
    return " AND ".join(clauses), params


def vector_rows(
    puts: Sequence[ItemWrite], encode: Callable[[Sequence[float]], Any]
) -> list[tuple[str, str, str, int, Any]]:
    """The ``item_vectors`` rows ``(ns, key, name, dims, encode(vector))`` of ``puts``, to insert
    after their upserts."""
    return [
        (encode_namespace(p.namespace), p.key, name, len(v), encode(v))
        for p in puts
        if p.value is not None and p.vectors
        for name, v in p.vectors.items()
    ]


def page_of(
    scored: Sequence[Sequence[Any]],
    unscored: Sequence[Sequence[Any]],
    decode: Callable[[Sequence[Any], bool], StoredItem],
) -> list[tuple[float | None, StoredItem]]:
    """A page from the rows of the ranked query (item columns, then the score at 8) and of the
    unscored one; a corrupt record is left out (and logged), as listings do."""
    page: list[tuple[float | None, StoredItem]] = []
    for rows, ranked in ((scored, True), (unscored, False)):
        for row in rows:
            item = or_skipped(None, decode, row, False)
            if not isinstance(item, Skipped):
                page.append((float(row[8]) if ranked else None, item))
    return page
