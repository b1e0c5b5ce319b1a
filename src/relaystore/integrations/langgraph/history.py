"""RelaySaver's DeltaChannel history: the ancestors' writes and seeds, a few round trips deep."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, DeltaChannelHistory, get_checkpoint_id

from relaystore.integrations.langgraph.records import (
    _PAGE,
    INLINE,
    SEPARATOR,
    _is_legacy,
    unpack,
    unpack_write,
)
from relaystore.models.checkpoints import CheckpointBundle, PendingWrite
from relaystore.stores import Store


class DeltaHistory(BaseCheckpointSaver[str]):
    """``aget_delta_channel_history`` for :class:`RelaySaver`."""

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

    # ------------------------------------------------------------------ DeltaChannel

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """For each channel, the ancestors' writes oldest first and the value at the nearest
        ancestor that has one (``seed``), as the base class defines it, but batched: the
        ancestor chain comes from ``list_full`` pages without values (8 checkpoints, then 32,
        128, 500: a few round trips however deep) and every seed from one ``get_attachments``.
        The writes stored at the target checkpoint itself are left out.
        """
        self._bind_loop()
        if not channels:
            return {}
        configurable = config["configurable"]
        key = self._thread_key(configurable["thread_id"], configurable.get("checkpoint_ns", ""))
        remaining = set(channels)
        writes: dict[str, list[Any]] = {c: [] for c in channels}
        seeds: dict[str, str] = {}
        inline_at: dict[str, str] = {}  # channel -> checkpoint id whose state holds its seed
        async for bundle in self._ancestors(key, get_checkpoint_id(config)):
            if _is_legacy(bundle.metadata):  # values not named in its metadata: walk the slow way
                return await super().aget_delta_channel_history(config=config, channels=channels)
            for write in reversed(bundle.writes):
                if write.channel in remaining:
                    writes[write.channel].append(write)
            for ref in bundle.metadata.refs:
                channel = ref.removeprefix(INLINE).partition(SEPARATOR)[0]
                if channel in remaining:
                    if ref.startswith(INLINE):
                        inline_at[channel] = bundle.metadata.id
                    else:
                        seeds[channel] = ref
                    remaining.discard(channel)
            if not remaining:
                break
        values = await self.store.checkpoints.get_attachments(key, seeds.values()) if seeds else {}
        result = {c: self._history(key, writes[c], seeds.get(c), values) for c in channels}
        for channel, checkpoint_id in inline_at.items():  # rare: a primitive value as the seed
            seed = await self.store.checkpoints.load_full(key, checkpoint_id)
            if seed is not None:
                state = self.serde.loads_typed(unpack(seed.state, f"{key}/{checkpoint_id}"))
                result[channel]["seed"] = (state.get("channel_values") or {})[channel]
        return result

    def _history(
        self, key: str, writes: list[PendingWrite], seed: str | None, values: dict[str, bytes]
    ) -> DeltaChannelHistory:
        entry: DeltaChannelHistory = {
            "writes": [
                (
                    w.task_id,
                    w.channel,
                    self.serde.loads_typed(unpack_write(w.type, w.value, f"{key}/{w.task_id}")),
                )
                for w in reversed(writes)
            ]
        }
        if seed is not None and seed in values:
            entry["seed"] = self.serde.loads_typed(unpack(values[seed], f"{key}/{seed}"))
        return entry

    async def _ancestors(self, key: str, checkpoint_id: str | None) -> AsyncIterator[CheckpointBundle]:
        """The target's ancestors nearest first, as metadata and writes, read lazily from pages
        of the thread newest first (an ancestor is always older than its child).

        LangGraph ids are time-ordered, so the pages start at the target (ids up to its own),
        not at the thread's head: reading the state of every checkpoint of a history then costs
        each one its own chain, not the whole newer part of the thread. If an ancestor is not
        found below the target (ids that are not time-ordered), the whole thread is read.
        """
        bound = None if checkpoint_id is None else checkpoint_id + "\x01"  # the target sorts below
        walked: set[str] = set()
        async for bundle in self._walk(
            self._bundles(key, 8, values=False, grow_to=_PAGE, before=bound), checkpoint_id, walked
        ):
            yield bundle
        if None not in walked and bound is not None:  # the chain broke off below the target (or is gone)
            pages = self._bundles(key, _PAGE, values=False)
            async for bundle in self._walk(pages, checkpoint_id, set()):
                if bundle.metadata.id not in walked:
                    yield bundle

    async def _walk(
        self, pages: AsyncIterator[tuple[str, CheckpointBundle]], checkpoint_id: str | None, walked: set[str]
    ) -> AsyncIterator[CheckpointBundle]:
        """Follow parent ids from the target through ``pages``; ``walked`` collects the ids
        yielded, plus None once the chain reached its root."""
        known: dict[str, CheckpointBundle] = {}
        wanted: str | None = checkpoint_id
        is_target = True
        while True:
            if wanted is not None and wanted in known:
                bundle = known.pop(wanted)
                if not is_target:
                    walked.add(bundle.metadata.id)
                    yield bundle
                is_target, wanted = False, bundle.metadata.parent_id
                if wanted is None:
                    walked.add(None)  # type: ignore[arg-type]
                    return
                continue
            item = await anext(pages, None)
            if item is None:
                return  # the target or an ancestor is gone, or lies outside these pages
            bundle = item[1]
            if wanted is None:  # no id: the target is the newest
                wanted = bundle.metadata.id
            known[bundle.metadata.id] = bundle
