"""Outputs of the memory backend: records by ref in seq order, and each parent's children."""

from __future__ import annotations

from collections.abc import Sequence

from relaystore.backends.memory.state import MemoryState, seq_after, take
from relaystore.errors import Conflict
from relaystore.models.outputs import OutputRecord, OutputRef
from relaystore.stores import OutputFilter, OutputStore


class MemoryOutputStore(OutputStore):
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def _insert(self, record: OutputRecord) -> int:
        with self._s.lock:
            if record.id in self._s.outputs:
                raise Conflict(f"output {record.id} already exists")
            seq = next(self._s.seq)
            self._s.outputs[record.id] = record.model_copy(update={"seq": seq})
            for parent in dict.fromkeys(record.parent_refs):
                self._s.children.setdefault(parent, []).append(record.id)
            return seq

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        return [self._s.outputs[r] for r in refs if r in self._s.outputs]

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        with self._s.lock:
            records = list(self._s.outputs.values())
        return next((r for r in reversed(records) if flt.matches(r)), None)

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        with self._s.lock:
            records = list(self._s.outputs.values())
        return take([r for r in records if seq_after(r.seq, after, False) and flt.matches(r)], limit)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        with self._s.lock:
            child_refs = [c for r in refs for c in self._s.children.get(r, [])]
            return [self._s.outputs[c] for c in dict.fromkeys(child_refs)]
