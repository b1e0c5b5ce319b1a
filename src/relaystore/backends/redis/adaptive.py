"""The adaptive face of the Redis backend: NeMo Relay's RedisBackend layout and JSON.

Key names come from :class:`~relaystore.backends.redis.layout.AdaptiveKeys`. Writes of a run
(record, index, counter) are one script; document updates are optimistic: read, compute, then a
script writes only if the document's SHA-1 is unchanged, retried within ``CAS_BUDGET``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from relaystore.backends._policy import CAS_BUDGET
from relaystore.backends.redis.connection import CHUNK, RedisConnection, sorted_page, utf8
from relaystore.backends.redis.layout import AdaptiveKeys
from relaystore.errors import Conflict
from relaystore.stores import AdaptiveStore, DocKind


class RedisAdaptiveStore(AdaptiveStore):
    """Adaptive state in NeMo Relay's RedisBackend layout (see the module docstring)."""

    def __init__(self, conn: RedisConnection, keys: AdaptiveKeys, ttl: int | None) -> None:
        self._c = conn
        self._k = keys
        self._ttl = ttl or 0

    def _run_keys(self, agent_id: str) -> tuple[str, str]:
        return self._k.key("runs_index", agent_id), self._k.key("runs_trimmed", agent_id)

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        index, trimmed = self._run_keys(agent_id)
        keys = [self._k.run(agent_id, run_id), index, trimmed]
        if not await self._c.script("STORE_RUN", keys, [run_id, text, self._ttl]):
            raise Conflict(f"agent {agent_id!r} already has run {run_id}")

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str | bytes]]:
        # Dangling index entries (expired or deleted runs) are skipped, so keep reading pages
        # until ``limit`` rows are found or the index ends: one extra round trip pair per gap.
        rows: list[tuple[int, str, str | bytes]] = []
        while limit is None or len(rows) < limit:
            want = None if limit is None else limit - len(rows)
            batch, after, exhausted = await self._run_page(agent_id, after, want)
            rows += batch
            if exhausted:
                break
        return rows

    async def _run_page(
        self, agent_id: str, after: int | None, want: int | None
    ) -> tuple[list[tuple[int, str, str | bytes]], int | None, bool]:
        """One LRANGE and one MGET: ``(rows, last seq read, whether the index ended)``. Texts stay
        bytes: the store decodes each, so one that is not UTF-8 is skipped alone."""
        index, trimmed = self._run_keys(agent_id)
        first, ids = await self._c.script(
            "RUN_IDS", [index, trimmed], [-1 if after is None else after, want or 0]
        )
        keys = [self._k.run(agent_id, rid.decode()) for rid in ids]
        texts = await self._c.mget(keys) if keys else []
        rows: list[tuple[int, str, str | bytes]] = [
            (first + i + 1, key, text)
            for i, (key, text) in enumerate(zip(keys, texts, strict=True))
            if text is not None
        ]
        last = first + len(ids) if ids else after
        return rows, last, want is None or len(ids) < want

    async def _count_runs(self, agent_id: str) -> int:
        index = self._run_keys(agent_id)[0]
        return int(await self._c.do(index, "LLEN", index))

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        index, trimmed = self._run_keys(agent_id)
        pruned = 0
        while True:
            drop = await self._count_runs(agent_id) - keep
            if drop <= 0:
                return pruned
            ids = [r.decode() for r in await self._c.do(index, "LRANGE", index, 0, min(drop, CHUNK) - 1)]
            keys = [index, trimmed, *(self._k.run(agent_id, rid) for rid in ids)]
            done = int(await self._c.script("PRUNE_RUNS", keys, [keep, *ids]))
            pruned += max(done, 0)  # -1: a concurrent prune got there first; look again

    async def _owners(self, families: Sequence[str]) -> set[str]:
        owners: set[str] = set()
        for family in families:
            for key in await self._c.scan(self._k.pattern(family)):
                owner = self._k.owner_of(key, family)
                if owner is not None:
                    owners.add(owner)
        return owners

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        owners = await self._owners(["runs_index", "plan", "trie", "accumulators"])
        return sorted_page(owners, after, limit)

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        name = self._k.key(kind, key)
        return utf8(await self._c.do(name, "GET", name), name)

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        name = self._k.key(kind, key)
        await self._c.do(name, "SET", name, text)

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        name = self._k.key(kind, key)
        return bool(await self._c.do(name, "DEL", name))

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        return sorted_page(await self._owners([kind]), after, limit)

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        name = self._k.key(kind, key)

        async def round_() -> tuple[bool, str | None]:
            current = await self._get_doc(kind, key)
            new = apply(current)
            if new is None:
                return True, current
            digest = "" if current is None else hashlib.sha1(current.encode()).hexdigest()
            return bool(await self._c.script("CAS_DOC", [name], [digest, new])), new

        # Writers in this process already take turns; the budget spaces out other processes.
        return await CAS_BUDGET.run(
            round_, lambda: Conflict(f"{name} kept changing; gave up after {CAS_BUDGET.attempts} attempts")
        )
