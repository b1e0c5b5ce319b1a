"""Runs and documents over HTTP.

A Python function cannot travel, so ``_update_doc`` is optimistic: GET the document and its ETag,
apply locally, PUT with ``If-Match``; a 412 means another writer won, and the loop reads again
(within :data:`~relaystore.backends._policy.CAS_BUDGET`). Concurrent updaters therefore lose nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relaystore import wire
from relaystore.backends._policy import CAS_BUDGET
from relaystore.backends.http.client import JSON, Client, after_key, after_seq, fill, positions
from relaystore.errors import Conflict
from relaystore.models.adaptive import RunRecord
from relaystore.stores import AdaptiveStore, DocKind
from relaystore.stores.adaptive import run_json


class HttpAdaptiveStore(AdaptiveStore):
    def __init__(self, client: Client) -> None:
        self._c = client

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        await self._c.send("POST", wire.ADAPTIVE_RUNS, content=text.encode(), headers=JSON)

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        async def fetch(cursor: str | None, size: int | None) -> tuple[list[Any], str | None]:
            return await self._c.page(wire.ADAPTIVE_RUNS, {"agent_id": agent_id}, cursor, size)

        items, cursor = await fill(fetch, after_seq(after), limit)
        runs = [RunRecord.model_validate(item) for item in items]
        rows = positions([run_json(r) for r in runs], cursor)
        return [(seq, f"a run of {agent_id!r} from {self._c.base}", text) for seq, text in rows]

    async def _count_runs(self, agent_id: str) -> int:
        return int(
            (await self._c.json("GET", wire.ADAPTIVE_RUNS_COUNT, params={"agent_id": agent_id}))["count"]
        )

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        params = {"agent_id": agent_id, "keep": keep}
        return int((await self._c.json("POST", wire.ADAPTIVE_RUNS_PRUNE, params=params))["deleted"])

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        return await self._c.rows(wire.ADAPTIVE_AGENTS, {}, after_key(after), limit)

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        return await self._c.rows(wire.ADAPTIVE_KEYS.format(kind=kind), {}, after_key(after), limit)

    async def _versioned(self, kind: DocKind, key: str) -> tuple[str, str] | None:
        """``(text, etag)`` of the stored document, or None."""
        response = await self._c.send(
            "GET", wire.ADAPTIVE_DOC.format(kind=kind), params={"key": key}, missing=True
        )
        if response is None:
            return None
        return response.text, response.headers.get("etag", "").strip('"')

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        found = await self._versioned(kind, key)
        return None if found is None else found[0]

    async def _put(self, kind: DocKind, key: str, text: str, headers: dict[str, str]) -> None:
        await self._c.send(
            "PUT",
            wire.ADAPTIVE_DOC.format(kind=kind),
            params={"key": key},
            content=text.encode(),
            headers={"Content-Type": "application/json", **headers},
        )

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        await self._put(kind, key, text, {})

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        body = await self._c.json("DELETE", wire.ADAPTIVE_DOC.format(kind=kind), params={"key": key})
        return bool(body["deleted"])

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        async def round_() -> tuple[bool, str | None]:
            found = await self._versioned(kind, key)
            current = None if found is None else found[0]
            new = apply(current)
            if new is None:
                return True, current
            precondition = {"If-None-Match": "*"} if found is None else {"If-Match": f'"{found[1]}"'}
            try:
                await self._put(kind, key, new, precondition)
            except Conflict:  # another writer got in between: read again
                return False, None
            return True, new

        return await CAS_BUDGET.run(
            round_,
            lambda: Conflict(f"{kind}:{key} changed on every one of {CAS_BUDGET.attempts} update attempts"),
        )
