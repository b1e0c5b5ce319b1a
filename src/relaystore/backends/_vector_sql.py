"""What the SQL backends' native vector searches share (``sqlite/vectors.py``, ``postgres/vectors.py``).

Both keep one ``item_vectors`` row per vector and rank with the engine's cosine distance over
``item_vectors v JOIN items i``; only the placeholder and the vector's column type differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from relaystore.stores.items import ItemWrite, encode_namespace


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
