"""The output contract: mlua-swarm's OutputStore, plus listing, lineage and import.

Semantics, as mlua-swarm's SQLite store, made safe:

- The store creates every id (``out-`` + 128 random bits) and the ``seq`` (store order, from the
  database, strictly increasing, never reused). "Latest" means highest ``seq``.
- ``get_latest_by_name`` matches ``producer_agent`` (not an artifact's ``name``) across all tasks
  and attempts; ``get_latest_by_name_in_run`` never falls back to another attempt.
- ``parent_refs`` are not required to exist (mlua-swarm does not check them either); lineage
  queries skip refs that are not stored.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from relaystore.errors import Conflict, InvalidInput, OutputNotFound
from relaystore.models.common import Page, now_rfc3339
from relaystore.models.outputs import OutputEvent, OutputRecord, OutputRef
from relaystore.stores._common import (
    check_id,
    check_limit,
    check_u32,
    decode_seq_cursor,
    fetch_size,
    make_page,
    storable_json,
    validate,
    without_skipped,
)

_EVENT: TypeAdapter[Any] = TypeAdapter(OutputEvent)
_REFS: TypeAdapter[list[OutputRef]] = TypeAdapter(list[OutputRef])
_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)


@dataclass(frozen=True)
class OutputFilter:
    """Which records a listing or latest lookup covers; None means any."""

    task_id: str | None = None
    attempt: int | None = None
    producer_agent: str | None = None

    def matches(self, record: OutputRecord) -> bool:
        """Whether ``record`` is covered (for backends that filter in Python)."""
        return (
            (self.task_id is None or record.task_id == self.task_id)
            and (self.attempt is None or record.attempt == self.attempt)
            and (self.producer_agent is None or record.producer_agent == self.producer_agent)
        )


class OutputStore(ABC):
    """Outputs handed from agent to agent in a swarm. All methods are coroutines."""

    # ------------------------------------------------------------------ public contract

    async def append(
        self,
        task_id: str,
        attempt: int,
        producer_agent: str,
        event: Any,
        parent_refs: Iterable[str] = (),
    ) -> OutputRef:
        """Store one output event and return its new ref.

        ``event`` is an OutputEvent model or its JSON-shaped dict; ``attempt`` is a u32.
        Raises :class:`InvalidInput` for a bad id, attempt, event or parent ref.
        """
        record = OutputRecord(
            id=OutputRef.generate(),
            task_id=check_id(task_id, "task_id"),
            attempt=check_u32(attempt, "attempt"),
            producer_agent=check_id(producer_agent, "producer_agent"),
            event=validate(_EVENT, event, "event"),
            parent_refs=validate(_REFS, list(parent_refs), "parent_refs"),
            created_at=now_rfc3339(),
        )
        storable_json(_RECORD, record, "output record")
        for _ in range(3):  # a 128-bit collision is not expected; retrying costs nothing
            try:
                await self._insert(record)
                return record.id
            except Conflict:
                record = record.model_copy(update={"id": OutputRef.generate()})
        raise Conflict("could not allocate a unique output ref")

    async def import_record(self, record: OutputRecord | dict[str, Any]) -> OutputRecord:
        """Insert an exported record as it is (id and created_at kept, a new ``seq`` assigned).

        Raises :class:`Conflict` if the id already exists, :class:`InvalidInput` if malformed.
        """
        parsed = validate(_RECORD, record, "output record")
        for value, what in ((parsed.task_id, "task_id"), (parsed.producer_agent, "producer_agent")):
            check_id(value, what)
        check_u32(parsed.attempt, "attempt")
        storable_json(_RECORD, parsed, "output record")
        seq = await self._insert(parsed)
        return parsed.model_copy(update={"seq": seq})

    async def get(self, ref: str) -> OutputRecord:
        """The record with this ref; :class:`OutputNotFound` if none."""
        found = await self._get_many([self._ref(ref)])
        if not found:
            raise OutputNotFound(ref)
        return found[0]

    async def get_latest_by_name(self, name: str) -> OutputRecord:
        """Newest record whose ``producer_agent`` is ``name``, across all tasks and attempts.

        ``name`` is the producer agent, not an artifact's ``name``: as mlua-swarm's
        ``get_latest_by_name``, which keys its latest index by producer. The server's
        ``GET /v1/outputs/latest?name=`` is this call. Raises :class:`OutputNotFound` when that
        agent produced nothing, :class:`InvalidInput` for a bad id.
        """
        found = await self._latest(OutputFilter(producer_agent=check_id(name, "name")))
        if found is None:
            raise OutputNotFound(name)
        return found

    async def get_latest_by_name_in_run(self, task_id: str, attempt: int, name: str) -> OutputRecord:
        """Newest record of producer agent ``name`` within exactly this (task, attempt).

        ``name`` is the producer agent, as in :meth:`get_latest_by_name`; another attempt is
        never used as a fallback. Raises :class:`OutputNotFound`.
        """
        flt = OutputFilter(
            check_id(task_id, "task_id"), check_u32(attempt, "attempt"), check_id(name, "name")
        )
        found = await self._latest(flt)
        if found is None:
            raise OutputNotFound(f"{task_id}/{attempt}/{name}")
        return found

    async def list_for_attempt(
        self, task_id: str, attempt: int, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[OutputRecord]:
        """Records of one (task, attempt) in store order; empty if none."""
        flt = OutputFilter(check_id(task_id, "task_id"), check_u32(attempt, "attempt"))
        return await self._page(flt, limit, cursor)

    async def list(
        self,
        *,
        task_id: str | None = None,
        producer_agent: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[OutputRecord]:
        """Records in store order, optionally of one task and/or one producer."""
        flt = OutputFilter(
            task_id=None if task_id is None else check_id(task_id, "task_id"),
            producer_agent=None if producer_agent is None else check_id(producer_agent, "producer_agent"),
        )
        return await self._page(flt, limit, cursor)

    async def ancestors(self, ref: str, *, max_depth: int | None = None) -> builtins.list[OutputRecord]:
        """Records reachable from ``ref`` along ``parent_refs``, nearest first, each once.

        ``max_depth`` 1 gives the direct parents. Raises :class:`OutputNotFound` for ``ref``.
        """
        start = await self.get(ref)
        reachable = await self._ancestor_records(start) if max_depth is None else None
        if reachable is None:
            return await self._walk(start, max_depth, self._parents_of)
        by_id = {record.id: record for record in reachable}

        async def parents_in_hand(
            records: Sequence[OutputRecord], seen: set[OutputRef]
        ) -> builtins.list[OutputRecord]:
            return [by_id[p] for r in records for p in r.parent_refs if p in by_id and p not in seen]

        return await self._walk(start, None, parents_in_hand)

    async def descendants(self, ref: str, *, max_depth: int | None = None) -> builtins.list[OutputRecord]:
        """Records that name ``ref`` as a parent, their children and so on, nearest first."""
        start = await self.get(ref)
        return await self._walk(start, max_depth, lambda recs, _seen: self._children_of([r.id for r in recs]))

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _ref(ref: object) -> OutputRef:
        try:
            return OutputRef(ref)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc

    async def _page(self, flt: OutputFilter, limit: int | None, cursor: str | None) -> Page[OutputRecord]:
        limit = check_limit(limit)
        records = await self._list(flt, decode_seq_cursor(cursor), fetch_size(limit))
        return make_page([(r.seq, r) for r in records], limit)

    async def _parents_of(
        self, records: Sequence[OutputRecord], seen: set[OutputRef]
    ) -> builtins.list[OutputRecord]:
        # Parents already reached are not fetched again (a DAG's shared root would be, per level).
        refs = list(dict.fromkeys(p for r in records for p in r.parent_refs if p not in seen))
        return await self._get_many(refs) if refs else []

    async def _walk(
        self, start: OutputRecord, max_depth: int | None, step: Any
    ) -> builtins.list[OutputRecord]:
        if max_depth is not None and (
            isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0
        ):
            raise InvalidInput(f"max_depth must be a non-negative integer or None, got {max_depth!r}")
        seen = {start.id}
        found: builtins.list[OutputRecord] = []
        frontier = [start]
        depth = 0
        while frontier and (max_depth is None or depth < max_depth):
            level = sorted(
                (r for r in without_skipped(await step(frontier, seen)) if r.id not in seen),
                key=lambda r: r.seq,
            )
            level = list({r.id: r for r in level}.values())
            seen.update(r.id for r in level)
            found.extend(level)
            frontier = level
            depth += 1
        return found

    # ------------------------------------------------------------------ backend primitives

    @abstractmethod
    async def _insert(self, record: OutputRecord) -> int:
        """Store ``record`` with a new database-assigned seq and return it.
        Raise :class:`Conflict` if the id exists."""

    @abstractmethod
    async def _get_many(self, refs: Sequence[OutputRef]) -> builtins.list[OutputRecord]:
        """Stored records among ``refs`` (any order); missing ones are left out.
        A corrupt record raises :class:`CorruptRecord`."""

    @abstractmethod
    async def _latest(self, flt: OutputFilter) -> OutputRecord | None: ...

    @abstractmethod
    async def _list(
        self, flt: OutputFilter, after: int | None, limit: int | None
    ) -> builtins.list[OutputRecord]:
        """Matching records with seq > ``after``, ascending; corrupt ones skipped with a warning."""

    @abstractmethod
    async def _children_of(self, refs: Sequence[OutputRef]) -> builtins.list[OutputRecord]:
        """Records whose ``parent_refs`` include any of ``refs``."""

    async def _ancestor_records(self, start: OutputRecord) -> builtins.list[OutputRecord] | None:
        """Every stored record reachable from ``start`` along ``parent_refs``, in any order, read
        in one query; ``None`` when the backend cannot, and the store then walks level by level
        (one read per level). A corrupt record raises :class:`CorruptRecord`."""
        return None
