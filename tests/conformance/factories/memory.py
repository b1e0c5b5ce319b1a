from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.stores import Store

NAME = "memory"
GARBAGE = '{"not valid json'


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect("memory://") as store:
        yield store


async def corrupt(store: Store, what: str, key: tuple[str, ...]) -> None:
    """Replace a stored run or document with undecodable JSON.

    Checkpoints and outputs are held as decoded objects here, so they cannot be corrupt.
    """
    state = store.adaptive._s  # type: ignore[attr-defined]
    if what == "run":
        agent_id, run_id = key
        seq, _ = state.runs[agent_id][run_id]
        state.runs[agent_id][run_id] = (seq, GARBAGE)
    elif what == "document":
        kind, doc_key = key
        assert doc_key in state.docs[kind]
        state.docs[kind][doc_key] = GARBAGE
    else:
        raise NotImplementedError(f"the memory backend keeps {what}s decoded")
