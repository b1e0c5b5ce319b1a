from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.stores import Store
from relaystore.testing.damage import damage

NAME = "memory"


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect("memory://") as store:
        yield store


async def corrupt(store: Store, what: str, key: tuple[str, ...], how: str = "json") -> None:
    """Damage a stored run or document's JSON text.

    Checkpoints, outputs, items and blob metadata are held as decoded objects here, and text is
    held as ``str``, so neither they nor bytes that are not UTF-8 can be corrupt.
    """
    if how == "utf8":
        raise NotImplementedError("the memory backend holds text, never undecoded bytes")
    state = store.adaptive._s  # type: ignore[attr-defined]
    if what == "run":
        agent_id, run_id = key
        seq, text = state.runs[agent_id][run_id]
        state.runs[agent_id][run_id] = (seq, damage(text.encode(), how).decode())
    elif what == "document":
        kind, doc_key = key
        text = state.docs[kind][doc_key]
        state.docs[kind][doc_key] = damage(text.encode(), how).decode()
    else:
        raise NotImplementedError(f"the memory backend keeps {what}s decoded")
