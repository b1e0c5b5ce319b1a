"""Outputs over HTTP: each primitive one request (batches of refs in slices the server accepts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from relaystore import wire
from relaystore.backends.http.client import BATCH, Client, after_seq, fill
from relaystore.errors import InvalidInput
from relaystore.models.outputs import OutputRecord, OutputRef
from relaystore.stores import OutputFilter, OutputStore

_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)


def _records(items: list[Any]) -> list[OutputRecord]:
    return [_RECORD.validate_python(item) for item in items]


class HttpOutputStore(OutputStore):
    def __init__(self, client: Client) -> None:
        self._c = client

    async def _insert(self, record: OutputRecord) -> int:
        stored = await self._c.json("POST", wire.OUTPUTS_IMPORT, json=record.model_dump(mode="json"))
        return int(stored["seq"])

    async def _batch(self, path: str, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        found: list[OutputRecord] = []
        for start in range(0, len(refs), BATCH):
            body = await self._c.json("POST", path, json={"refs": list(refs[start : start + BATCH])})
            found += _records(body["items"])
        return found

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        return await self._batch(wire.OUTPUTS_BATCH, refs)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        return await self._batch(wire.OUTPUTS_CHILDREN, refs)

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        if flt.task_id is not None and flt.attempt is not None and flt.producer_agent is not None:
            path = wire.OUTPUTS_LATEST_IN_RUN
            params: dict[str, Any] = {
                "task_id": flt.task_id,
                "attempt": flt.attempt,
                "name": flt.producer_agent,
            }
        elif flt.producer_agent is not None and flt.task_id is None and flt.attempt is None:
            path, params = wire.OUTPUTS_LATEST, {"name": flt.producer_agent}
        else:
            raise InvalidInput(f"the HTTP backend has no latest lookup for {flt}")
        response = await self._c.send("GET", path, params=params, missing=True)
        return None if response is None else _RECORD.validate_python(response.json())

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        if flt.attempt is not None:
            path = wire.OUTPUTS_ATTEMPT
            params: dict[str, Any] = {"task_id": flt.task_id, "attempt": flt.attempt}
        else:
            path, params = wire.OUTPUTS, {"task_id": flt.task_id, "producer_agent": flt.producer_agent}

        async def fetch(cursor: str | None, size: int | None) -> tuple[list[Any], str | None]:
            return await self._c.page(path, params, cursor, size)

        items, cursor = await fill(fetch, after_seq(after), limit)
        records = _records(items)
        # Records carry their seq, so only the "more follow" marker row is needed (it is cut).
        return records + records[-1:] if cursor is not None else records
