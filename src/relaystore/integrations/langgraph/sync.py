"""RelaySaver's blocking twins: each runs its ``a*`` method on the loop the store lives on."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from relaystore.integrations._shared import run_blocking, running_loop
from relaystore.integrations.langgraph.records import _id_list

_T = TypeVar("_T")


class SyncTwins(BaseCheckpointSaver[str]):
    """``put``, ``get_tuple``, ``list`` … of :class:`RelaySaver`, blocking on its ``a*`` methods."""

    _loop: asyncio.AbstractEventLoop | None
    # The twins call the a* methods RelaySaver defines (declared on BaseCheckpointSaver).

    # ------------------------------------------------------------------ sync twins

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Blocking :meth:`aput`."""
        return self._run_sync(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Blocking :meth:`aput_writes`."""
        self._run_sync(self.aput_writes(config, writes, task_id, task_path))

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Blocking :meth:`aget_tuple`."""
        return self._run_sync(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Blocking :meth:`alist` (the whole result is fetched in one call, then iterated)."""

        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._run_sync(collect())

    def delete_thread(self, thread_id: str) -> None:
        """Blocking :meth:`adelete_thread`."""
        self._run_sync(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Blocking :meth:`adelete_for_runs`."""
        self._run_sync(self.adelete_for_runs(_id_list(run_ids, "run_ids")))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Blocking :meth:`acopy_thread`."""
        self._run_sync(self.acopy_thread(source_thread_id, target_thread_id))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Blocking :meth:`aget_delta_channel_history`."""
        return self._run_sync(self.aget_delta_channel_history(config=config, channels=channels))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Blocking :meth:`aprune`."""
        self._run_sync(self.aprune(_id_list(thread_ids, "thread_ids"), strategy=strategy))

    def _bind_loop(self) -> None:
        """Remember the loop the store is used on, for the sync twins (first async call wins)."""
        if self._loop is None:
            self._loop = running_loop()

    def _run_sync(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the store's loop from another thread, blocking until it is done."""
        return run_blocking(
            self._loop,
            coro,
            no_loop="RelaySaver's sync methods need the store's event loop running in another thread; "
            "use RelaySaver.from_url_sync(url) for sync code, or the a* methods",
            own_loop="synchronous RelaySaver calls cannot run on the store's own event loop (it would "
            "deadlock): use the a* methods, e.g. graph.ainvoke / graph.astream",
        )
