"""Driving LangGraph's checkpoint savers with the anchors' workload (python-anchors.md §3.1).

Each put carries the whole state (both channels bumped, ``v=4``) and names the thread's previous
checkpoint as its parent, as a running graph does. The helpers work with any async saver
(``AsyncSqliteSaver``, ``InMemorySaver``, ``AsyncPostgresSaver``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.base.id import uuid6

from benchmarks.payloads import channel_values


class SaverDriver:
    """Puts checkpoints on threads through ``saver.aput``, remembering each thread's head."""

    def __init__(self, saver: BaseCheckpointSaver[Any], values: dict[str, Any]) -> None:
        self.saver = saver
        self.values = values
        self._heads: dict[str, str] = {}
        self._versions: dict[str, Any] = {}

    async def put(self, thread_id: str, step: int) -> None:
        version = self.saver.get_next_version(self._versions.get(thread_id), None)
        checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=step)),
            "ts": datetime.now(UTC).isoformat(),
            "channel_values": {**self.values, "step": step},
            "channel_versions": {"messages": version, "step": version},
            "versions_seen": {},
            "updated_channels": ["messages", "step"],
        }
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        if thread_id in self._heads:
            config["configurable"]["checkpoint_id"] = self._heads[thread_id]
        metadata = {"source": "loop", "step": step, "parents": {}}
        saved = await self.saver.aput(config, checkpoint, metadata, {"messages": version, "step": version})  # type: ignore[arg-type]
        self._heads[thread_id] = saved["configurable"]["checkpoint_id"]
        self._versions[thread_id] = version

    async def get_latest(self, thread_id: str) -> Any:
        return await self.saver.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})

    async def list_latest(self, thread_id: str, limit: int) -> list[Any]:
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        return [t async for t in self.saver.alist(config, limit=limit)]  # type: ignore[arg-type]


class UnchangedChannel:
    """Puts checkpoints where ``messages`` (~200 KB) keeps its version and only ``step`` changes."""

    def __init__(self, saver: BaseCheckpointSaver[Any]) -> None:
        self.saver = saver
        self.messages = channel_values("200 KB")["messages"]
        self.versions: dict[str, dict[str, Any]] = {}
        self.heads: dict[str, str] = {}

    async def put(self, thread_id: str, step: int) -> None:
        versions = self.versions.get(thread_id)
        first = versions is None
        if versions is None:
            versions = self.versions[thread_id] = {
                "messages": self.saver.get_next_version(None, None),
                "step": None,
            }
        versions["step"] = self.saver.get_next_version(versions["step"], None)
        changed = dict(versions) if first else {"step": versions["step"]}
        checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=step)),
            "ts": datetime.now(UTC).isoformat(),
            "channel_values": {"messages": self.messages, "step": step},
            "channel_versions": dict(versions),
            "versions_seen": {},
            "updated_channels": list(changed),
        }
        configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
        if thread_id in self.heads:
            configurable["checkpoint_id"] = self.heads[thread_id]
        saved = await self.saver.aput({"configurable": configurable}, checkpoint, {"step": step}, changed)  # type: ignore[arg-type]
        self.heads[thread_id] = saved["configurable"]["checkpoint_id"]
