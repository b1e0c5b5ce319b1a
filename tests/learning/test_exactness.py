"""Our learners, fed the runs NeMo Relay 0.10.4 stored, must reproduce what it learned from them.

Everything is compared exactly (floats bit for bit) except values NeMo Relay generates itself:
the trie's ``generated_at`` and each PromptIR's ``ir_id`` and ``created_at``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from relaystore import connect
from relaystore.learning import learn, predict, relearn
from relaystore.learning.acg import best_key, learning_key
from relaystore.learning.plan import group_id
from relaystore.models.adaptive import PromptIR, TrieEnvelope, TrieNode
from relaystore.stores import Store
from tests.learning.conftest import OBSERVATION_WINDOW, VARIED_RUNS, RuntimeOutput


async def _learned_from_scratch(output: RuntimeOutput) -> Store:
    store = await connect("memory://")
    for run in output.runs:
        await store.adaptive.store_run(run)
    await relearn(store, output.agent, observation_window=OBSERVATION_WINDOW)
    return store


async def _docs(store: Store) -> dict[tuple[str, str], Any]:
    a = store.adaptive
    loaders = {
        "plan": a.load_plan,
        "trie": a.load_trie,
        "accumulators": a.load_accumulators,
        "acg_observations": a.load_observations,
        "acg_stability": a.load_stability,
    }
    docs: dict[tuple[str, str], Any] = {}
    for kind, load in loaders.items():
        for key in await a.list_keys(kind):  # type: ignore[arg-type]
            docs[(kind, key)] = await load(key)
    return docs


def _without_generated(window: list[PromptIR]) -> list[dict[str, Any]]:
    return [ir.model_dump(mode="json", exclude={"ir_id", "created_at"}) for ir in window]


def _trie_paths(node: TrieNode, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], TrieNode]]:
    found = [(path, node)]
    for name, child in node.children.items():
        found += _trie_paths(child, (*path, name))
    return found


@pytest.fixture
async def mine(varied: RuntimeOutput) -> Any:
    store = await _learned_from_scratch(varied)
    yield await _docs(store)
    await store.close()


def test_the_workload_exercises_every_learner(varied: RuntimeOutput) -> None:
    assert len(varied.runs) == VARIED_RUNS
    assert {c.name for r in varied.runs for c in r.calls if c.kind == "llm"} == {
        "planner",
        "researcher",
        "writer",
    }
    assert len(varied.keys("acg_observations")) > 5


def _bits(value: Any) -> Any:
    """JSON data with every float as its exact bit pattern (== would equate 0.0 and -0.0)."""
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, dict):
        return {k: _bits(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bits(v) for v in value]
    return value


async def test_accumulators_are_bit_for_bit(varied: RuntimeOutput, mine: dict[Any, Any]) -> None:
    ours = mine[("accumulators", varied.agent)]
    assert _bits(ours.to_dict()) == _bits(varied.doc("accumulators").to_dict())


async def test_incremental_learning_equals_the_runtime(varied: RuntimeOutput) -> None:
    async with connect("memory://") as store:
        for run in varied.runs:  # one run at a time, as NeMo Relay's drain does
            await learn(store, varied.agent, [run], observation_window=OBSERVATION_WINDOW)
        ours = await store.adaptive.load_accumulators(varied.agent)
        assert _bits(ours.to_dict()) == _bits(varied.doc("accumulators").to_dict())  # type: ignore[union-attr]
        assert await store.adaptive.load_plan(varied.agent) == varied.doc("plan")
        stored = await store.adaptive.load_stability(varied.agent)
        assert stored in [varied.doc("acg_stability", k) for k in varied.keys("acg_stability")]


async def test_trie_equals_apart_from_generated_at(varied: RuntimeOutput, mine: dict[Any, Any]) -> None:
    ours: TrieEnvelope = mine[("trie", varied.agent)]
    theirs: TrieEnvelope = varied.doc("trie")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00", ours.generated_at)
    assert _bits(ours.model_copy(update={"generated_at": ""}).to_dict()) == _bits(
        theirs.model_copy(update={"generated_at": ""}).to_dict()
    )


async def test_predictions_match_for_every_path_and_index(
    varied: RuntimeOutput, mine: dict[Any, Any]
) -> None:
    ours, theirs = mine[("trie", varied.agent)], varied.doc("trie")
    checked = 0
    for path, node in _trie_paths(theirs.root):
        for index in [None, *map(int, node.predictions_by_call_index), 99]:
            assert predict(ours, path, index) == predict(theirs, path, index)
            checked += 1
    assert checked > 10


async def test_plan_groups_and_hints(varied: RuntimeOutput, mine: dict[Any, Any]) -> None:
    theirs = varied.doc("plan")
    assert mine[("plan", varied.agent)] == theirs
    assert [g.group_id for g in theirs.parallel_groups] == [group_id(["fetch", "search"])]


async def test_acg_windows_and_stability_for_every_learning_key(
    varied: RuntimeOutput, mine: dict[Any, Any]
) -> None:
    learning_keys = varied.keys("acg_observations") - {varied.agent}
    assert {k for kind, k in mine if kind == "acg_observations"} - {varied.agent} == learning_keys
    for key in learning_keys:
        assert _without_generated(mine[("acg_observations", key)]) == _without_generated(
            varied.doc("acg_observations", key)
        ), key
        assert mine[("acg_stability", key)] == varied.doc("acg_stability", key), key


async def test_acg_agent_copy_is_a_best_key_of_the_last_run(
    varied: RuntimeOutput, mine: dict[Any, Any]
) -> None:
    # NeMo Relay breaks ties between equally good keys in HashMap order, so any tied key is right.
    last = next(r for r in reversed(varied.runs) if any(c.annotated_request for c in r.calls))
    keys = list(
        dict.fromkeys(
            learning_key(varied.agent, c.annotated_request) for c in last.calls if c.annotated_request
        )
    )
    results = {k: varied.doc("acg_stability", k) for k in keys}
    top = results[best_key(results)]  # type: ignore[index]
    tied = [
        k
        for k, r in results.items()
        if (r.stable_prefix_length, r.total_observations)
        == (top.stable_prefix_length, top.total_observations)
    ]
    theirs_window = _without_generated(varied.doc("acg_observations"))
    assert any(
        varied.doc("acg_stability") == varied.doc("acg_stability", k)
        and theirs_window == _without_generated(varied.doc("acg_observations", k))
        for k in tied
    )
    ours = mine[("acg_stability", varied.agent)]
    assert any(ours == varied.doc("acg_stability", k) for k in tied)
    assert _without_generated(mine[("acg_observations", varied.agent)]) in [
        _without_generated(varied.doc("acg_observations", k)) for k in tied
    ]


async def test_demo_sensitivity_planner_5_writer_1_root_3(demo: RuntimeOutput) -> None:
    store = await _learned_from_scratch(demo)
    try:
        ours = await store.adaptive.load_trie(demo.agent)
        for trie in (ours, demo.doc("trie")):
            assert predict(trie, ["planner"], 1).latency_sensitivity == 5  # type: ignore[union-attr]
            assert predict(trie, ["writer"], 1).latency_sensitivity == 1  # type: ignore[union-attr]
            assert trie.root.predictions_any_index.latency_sensitivity == 3  # type: ignore[union-attr]
        plan = await store.adaptive.load_plan(demo.agent)
        assert plan == demo.doc("plan")
        assert plan.parallel_groups[0].group_id == "fanout:sha256:98257"  # type: ignore[union-attr]
        assert await store.adaptive.load_stability(demo.agent) == demo.doc("acg_stability")
    finally:
        await store.close()
