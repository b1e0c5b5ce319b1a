"""``get_delta_channel_history`` on hand-built checkpoint chains, on every backend.

Our own cases for what the next release of langgraph-checkpoint-conformance checks under its
``delta_channel_history`` capability (detected by overriding ``aget_delta_channel_history``):
writes oldest first, the nearest snapshot as seed, the target's own writes left out, several
channels at once, no channels, a walk to the root without a seed, a plain (pre-delta) value as
the seed, and the seed ancestor's own writes replayed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot

import relaystore
from relaystore.integrations.langgraph import RelaySaver
from tests.conformance.factories import discover

FACTORIES = discover()


@pytest.fixture(params=sorted(FACTORIES))
async def saver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RelaySaver]:
    factory = FACTORIES[request.param]
    if reason := factory.unavailable():
        pytest.skip(f"{request.param}: {reason}")
    store: relaystore.Store
    async with factory.fresh(tmp_path) as store:
        yield RelaySaver(store)


class Chain:
    """Checkpoints put one after another (parent = previous), each with chosen values and writes."""

    def __init__(self, saver: RelaySaver, *, descending_ids: bool = False) -> None:
        self.saver = saver
        self.descending_ids = descending_ids
        self.ids: list[str] = []
        self.version = 0

    async def add(self, values: dict[str, Any], writes: list[tuple[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        number = 10**6 - len(self.ids) if self.descending_ids else len(self.ids)
        checkpoint_id = f"1ef00000-0000-6000-8000-{number:012d}"
        self.version += 1
        versions = {channel: self.saver.get_next_version(self.version - 1, None) for channel in values}
        config = self.config(self.ids[-1] if self.ids else None)
        checkpoint = {
            "v": 4,
            "id": checkpoint_id,
            "ts": "",
            "channel_values": values,
            "channel_versions": versions,
            "versions_seen": {},
        }
        saved = await self.saver.aput(config, checkpoint, {"step": len(self.ids)}, versions)  # type: ignore[arg-type]
        if writes:
            await self.saver.aput_writes(saved, writes, f"task-{len(self.ids)}")
        self.ids.append(checkpoint_id)
        return saved

    def config(self, checkpoint_id: str | None = None) -> dict[str, Any]:
        ids: dict[str, Any] = {"thread_id": "t1", "checkpoint_ns": ""}
        if checkpoint_id:
            ids["checkpoint_id"] = checkpoint_id
        return {"configurable": ids}


async def history(saver: RelaySaver, config: dict[str, Any], channels: list[str]) -> Any:
    """Ours, after checking it against the base class's walk over the same saver."""
    ours = await saver.aget_delta_channel_history(config=config, channels=channels)  # type: ignore[arg-type]
    base = await BaseCheckpointSaver.aget_delta_channel_history(saver, config=config, channels=channels)  # type: ignore[arg-type]
    assert ours == base
    return ours


async def test_the_capability_is_detected() -> None:
    assert RelaySaver.aget_delta_channel_history is not BaseCheckpointSaver.aget_delta_channel_history
    assert RelaySaver.get_delta_channel_history is not BaseCheckpointSaver.get_delta_channel_history


async def test_writes_come_oldest_first_and_the_seed_is_the_nearest_snapshot(saver: RelaySaver) -> None:
    chain = Chain(saver)
    await chain.add({"m": _DeltaSnapshot(["old"])})
    await chain.add({"m": _DeltaSnapshot(["s0"])}, [("m", ["a"])])
    await chain.add({}, [("m", ["b"])])
    await chain.add({}, [("m", ["c"])])
    target = await chain.add({}, [("m", ["own"])])
    got = await history(saver, target, ["m"])
    assert got["m"]["seed"] == _DeltaSnapshot(["s0"])
    assert [w[2] for w in got["m"]["writes"]] == [["a"], ["b"], ["c"]]  # the seed's own writes too


async def test_several_channels_and_none(saver: RelaySaver) -> None:
    chain = Chain(saver)
    await chain.add({"m": _DeltaSnapshot([1]), "n": _DeltaSnapshot([9])})
    await chain.add({"n": _DeltaSnapshot([10])}, [("m", [2]), ("n", [11]), ("other", 0)])
    target = await chain.add({}, [("m", [3])])
    got = await history(saver, target, ["m", "n"])
    assert got["m"] == {"writes": [("task-1", "m", [2])], "seed": _DeltaSnapshot([1])}
    assert got["n"] == {"writes": [("task-1", "n", [11])], "seed": _DeltaSnapshot([10])}
    assert await saver.aget_delta_channel_history(config=target, channels=[]) == {}  # type: ignore[arg-type]


async def test_a_walk_to_the_root_without_a_seed(saver: RelaySaver) -> None:
    chain = Chain(saver)
    await chain.add({}, [("m", [1])])
    await chain.add({}, [("m", [2])])
    target = await chain.add({})
    got = await history(saver, target, ["m"])
    assert got == {"m": {"writes": [("task-0", "m", [1]), ("task-1", "m", [2])]}}


async def test_a_plain_value_from_before_delta_is_the_seed(saver: RelaySaver) -> None:
    chain = Chain(saver)
    await chain.add({"m": ["plain", "list"], "count": 3})  # a list channel; an inline primitive
    await chain.add({}, [("m", ["x"])])
    target = await chain.add({})
    got = await history(saver, target, ["m", "count"])
    assert got["m"] == {"writes": [("task-1", "m", ["x"])], "seed": ["plain", "list"]}
    assert got["count"] == {"writes": [], "seed": 3}


async def test_the_latest_checkpoint_when_the_config_names_none(saver: RelaySaver) -> None:
    chain = Chain(saver)
    await chain.add({"m": _DeltaSnapshot([0])})
    await chain.add({}, [("m", [1])])
    await chain.add({}, [("m", [2])])
    got = await history(saver, chain.config(), ["m"])
    assert got["m"]["seed"] == _DeltaSnapshot([0]) and [w[2] for w in got["m"]["writes"]] == [[1]]
    missing = await history(saver, chain.config("1ef00000-0000-6000-8000-999999999999"), ["m"])
    assert missing == {"m": {"writes": []}}


async def test_ids_that_are_not_time_ordered_still_find_every_ancestor(saver: RelaySaver) -> None:
    chain = Chain(saver, descending_ids=True)  # each child's id sorts below its parent's
    await chain.add({"m": _DeltaSnapshot([0])})
    await chain.add({}, [("m", [1])])
    await chain.add({}, [("m", [2])])
    target = await chain.add({})
    got = await history(saver, target, ["m"])
    assert got["m"]["seed"] == _DeltaSnapshot([0]) and [w[2] for w in got["m"]["writes"]] == [[1], [2]]
