"""Adaptive state of the memory backend: runs per agent, documents per kind."""

from __future__ import annotations

from collections.abc import Callable

from relaystore.backends.memory.state import MemoryState, seq_after, sorted_after, take
from relaystore.errors import Conflict
from relaystore.stores import AdaptiveStore, DocKind
from relaystore.stores.adaptive import AGENT_DOC_KINDS


class MemoryAdaptiveStore(AdaptiveStore):
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        with self._s.lock:
            runs = self._s.runs.setdefault(agent_id, {})
            if run_id in runs:
                raise Conflict(f"agent {agent_id!r} already has run {run_id}")
            runs[run_id] = (next(self._s.seq), text)

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        with self._s.lock:
            runs = list(self._s.runs.get(agent_id, {}).items())
        rows = [(seq, f"runs:{agent_id}:{rid}", text) for rid, (seq, text) in runs]
        return take([row for row in rows if seq_after(row[0], after, False)], limit)

    async def _count_runs(self, agent_id: str) -> int:
        return len(self._s.runs.get(agent_id, {}))

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        with self._s.lock:
            runs = self._s.runs.get(agent_id, {})
            doomed = list(runs)[: max(0, len(runs) - keep)]
            for run_id in doomed:
                del runs[run_id]
            if not runs:
                self._s.runs.pop(agent_id, None)
            return len(doomed)

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        with self._s.lock:
            agents = set(self._s.runs)
            for kind in AGENT_DOC_KINDS:
                agents.update(self._s.docs[kind])
        return sorted_after(agents, after, limit)

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        return self._s.docs[kind].get(key)

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        with self._s.lock:
            self._s.docs[kind][key] = text

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        with self._s.lock:
            return self._s.docs[kind].pop(key, None) is not None

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        with self._s.lock:
            return sorted_after(list(self._s.docs[kind]), after, limit)

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        with self._s.lock:
            current = self._s.docs[kind].get(key)
            new = apply(current)
            if new is None:
                return current
            self._s.docs[kind][key] = new
            return new
