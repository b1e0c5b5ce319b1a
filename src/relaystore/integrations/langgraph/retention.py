"""RelaySaver's retention: delete, copy and prune threads, and collect unneeded channel values."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from relaystore.errors import InvalidInput
from relaystore.integrations.langgraph.records import (
    _LIST_PAGE,
    _PAGE,
    _blob_keys_of,
    _id_list,
    _metadata_of,
    _uses_delta,
)
from relaystore.models.checkpoints import CheckpointBundle
from relaystore.models.checkpoints import CheckpointMetadata as RelayMetadata
from relaystore.stores import Store


class Retention(BaseCheckpointSaver[str]):
    """``adelete_thread``, ``adelete_for_runs``, ``acopy_thread`` and ``aprune`` for :class:`RelaySaver`."""

    if TYPE_CHECKING:  # provided by RelaySaver
        store: Store
        thread_prefix: str

        def _bind_loop(self) -> None: ...
        def _thread_key(self, thread_id: Any, checkpoint_ns: str) -> str: ...
        def _split_key(self, key: str) -> tuple[str, str]: ...
        async def _threads(self, prefix: str | None) -> list[str]: ...
        async def _namespaces(self, thread_id: Any) -> list[str]: ...
        def _bundles(
            self,
            key: str,
            page: int,
            *,
            values: bool = True,
            newest_first: bool = True,
            grow_to: int = 0,
            **options: Any,
        ) -> AsyncIterator[tuple[str, CheckpointBundle]]: ...

    async def _records(
        self, key: str, page: int = _PAGE, *, newest_first: bool = False
    ) -> AsyncIterator[RelayMetadata]:
        """Every checkpoint record of one relaystore thread, page by page."""
        cursor: str | None = None
        while True:
            rows = await self.store.checkpoints.list(
                key, limit=page, cursor=cursor, newest_first=newest_first
            )
            for record in rows:
                yield record
            cursor = rows.next_cursor
            if cursor is None:
                return

    # ------------------------------------------------------------------ delete, copy, prune

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every namespace of the thread: checkpoints, pending writes and channel values."""
        self._bind_loop()
        for key in await self._namespaces(thread_id):
            await self.store.checkpoints.delete_thread(key)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata ``run_id`` is in ``run_ids``,
        then writes whose checkpoint never came and the channel values no remaining checkpoint
        needs. Scans every thread.

        Raises ``TypeError`` for a plain string (a list of ids is expected), and
        ``NotImplementedError``, before deleting anything, if a thread that uses a DeltaChannel
        would keep some of its checkpoints: their values are rebuilt from the ancestors' writes,
        which would go (LangGraph's base class allows refusing; AsyncPostgresSaver refuses prune).
        """
        self._bind_loop()
        doomed_runs = {str(r) for r in _id_list(run_ids, "run_ids")}
        if not doomed_runs:
            return
        plan: list[tuple[str, list[str]]] = []
        for key in await self._threads(self.thread_prefix):
            records = [r async for r in self._records(key)]
            doomed = [r.id for r in records if _metadata_of(r).get("run_id") in doomed_runs]
            if doomed and len(doomed) < len(records) and any(_uses_delta(r) for r in records):
                raise NotImplementedError(
                    f"delete_for_runs can't delete part of thread {self._split_key(key)[0]!r}: it uses a "
                    "DeltaChannel, whose kept checkpoints need the deleted ones' writes"
                )
            plan.append((key, doomed))
        for key, doomed in plan:
            for checkpoint_id in doomed:
                await self.store.checkpoints.delete(key, checkpoint_id)
            await self.store.checkpoints.delete_orphan_writes(key)
            if doomed:
                await self._collect_garbage(key)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every namespace of a thread, in store order, with writes and channel values
        (so a DeltaChannel's history comes along whole).

        Raises :class:`Conflict` if the target already holds a checkpoint id being copied.
        """
        self._bind_loop()
        for source in await self._namespaces(source_thread_id):
            _, namespace = self._split_key(source)
            await self._copy_namespace(source, self._thread_key(target_thread_id, namespace))

    async def _copy_namespace(self, source: str, target: str) -> None:
        await self._copy_attachments(source, target)
        async for _, bundle in self._bundles(source, _LIST_PAGE, newest_first=False):
            record = bundle.metadata.model_copy(update={"thread_id": target})
            await self.store.checkpoints.save(target, record, bundle.state)
            if bundle.writes:
                await self.store.checkpoints.put_writes(target, record.id, bundle.writes, replace=True)

    async def _copy_attachments(self, source: str, target: str) -> None:
        """Copy a thread's attachments a page at a time, so memory stays bounded."""
        cursor: str | None = None
        while True:
            page = await self.store.checkpoints.list_attachments(source, limit=64, cursor=cursor)
            if page:
                blobs = await self.store.checkpoints.get_attachments(source, page)
                await self.store.checkpoints.put_attachments(target, blobs)
            cursor = page.next_cursor
            if cursor is None:
                return

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Retention. ``keep_latest``: per namespace keep the newest checkpoint (with its writes)
        and the channel values it needs, and clear its parent pointer (its parent is gone, as
        PostgresSaver does); ``delete``: delete the threads.

        Raises ``TypeError`` for a plain string, ``ValueError`` (:class:`InvalidInput`) for an
        unknown strategy, and ``NotImplementedError`` for ``keep_latest`` on a thread that uses a
        DeltaChannel, as AsyncPostgresSaver does: its head is rebuilt from its ancestors' writes.
        """
        self._bind_loop()
        threads = _id_list(thread_ids, "thread_ids")
        if strategy not in ("keep_latest", "delete"):
            raise InvalidInput(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        for thread_id in threads:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
                continue
            keys = await self._namespaces(thread_id)
            for key in keys:
                if any([_uses_delta(r) async for r in self._records(key)]):
                    raise NotImplementedError(
                        f"keep_latest can't prune thread {str(thread_id)!r}: it uses a DeltaChannel"
                    )
            for key in keys:
                if await self.store.checkpoints.prune(key, keep=1):
                    await self._orphan_head(key)
                    await self._collect_garbage(key)

    async def _orphan_head(self, key: str) -> None:
        """After a prune to one checkpoint, save the head again without its (deleted) parent."""
        head = await self.store.checkpoints.load_full(key)
        if head is None or head.metadata.parent_id is None:
            return
        record = head.metadata.model_copy(update={"parent_id": None})
        await self.store.checkpoints.delete(key, record.id)
        await self.store.checkpoints.save(key, record, head.state)
        if head.writes:
            await self.store.checkpoints.put_writes(key, record.id, head.writes, replace=True)

    async def _collect_garbage(self, key: str) -> int:
        """Delete attachments of ``key`` that no remaining checkpoint references; return how many.

        Attachments are listed before checkpoints, so a value written by a concurrent ``put``
        after the listing is never taken; prune a thread while it is idle all the same.
        """
        stored = await self._attachment_keys(key)
        needed: set[str] = set()
        async for record in self._records(key):
            needed.update(_blob_keys_of(record))
        orphans = [k for k in stored if k not in needed]
        return await self.store.checkpoints.delete_attachments(key, orphans) if orphans else 0

    async def _attachment_keys(self, key: str) -> list[str]:
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.store.checkpoints.list_attachments(key, limit=_PAGE, cursor=cursor)
            found.extend(page)
            cursor = page.next_cursor
            if cursor is None:
                return found
