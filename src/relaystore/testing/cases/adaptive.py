"""Conformance of ``store.adaptive`` (NeMo Relay's StorageBackendDyn plus updates and retention)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from relaystore.errors import Conflict, CorruptRecord, InvalidInput
from relaystore.models import AccumulatorState, RunRecord
from relaystore.stores import DOC_KINDS, Store
from relaystore.testing import docs
from relaystore.testing.docs import all_pages, as_json, chunked, corrupt_or_skip

HOSTILE_KEYS = [
    "agent:with:colons",
    "org/team/agent",
    "{hash-tag}",
    "..",
    "  spaced  ",
    "ünï ✓ 🤖",
    "é" * 512,
]
BAD_KEYS = ["", "a\x00b", "é" * 513]


async def store_doc(store: Store, kind: str, key: str, value: Any) -> None:
    adaptive = store.adaptive
    if kind == "plan":
        await adaptive.store_plan(value)
    elif kind == "trie":
        await adaptive.store_trie(key, value)
    elif kind == "accumulators":
        await adaptive.store_accumulators(key, value)
    elif kind == "acg_observations":
        await adaptive.store_observations(key, value)
    else:
        await adaptive.store_stability(key, value)


async def load_doc(store: Store, kind: str, key: str) -> Any:
    loaders = {
        "plan": store.adaptive.load_plan,
        "trie": store.adaptive.load_trie,
        "accumulators": store.adaptive.load_accumulators,
        "acg_observations": store.adaptive.load_observations,
        "acg_stability": store.adaptive.load_stability,
    }
    return await loaders[kind](key)


async def store_runs(store: Store, agent: str, count: int) -> list[RunRecord]:
    runs = [docs.run_record(agent) for _ in range(count)]
    for run in runs:
        await store.adaptive.store_run(run)
    return runs


# --------------------------------------------------------------------------- runs


async def test_run_round_trips_exactly(store: Store) -> None:
    run = docs.run_record("demo-agent")
    await store.adaptive.store_run(run)
    (loaded,) = await store.adaptive.list_runs("demo-agent")
    assert loaded == run
    assert loaded.to_json() == run.to_json()
    # nanosecond digits, unknown fields and opaque request JSON all survive
    assert loaded.calls[0].started_at[-10:] == run.calls[0].started_at[-10:]
    assert loaded.calls[0].annotated_request["response_format"] == {"type": "json_object"}


async def test_run_from_a_dict_keeps_unknown_fields(store: Store) -> None:
    raw = json.loads(docs.run_record("a").to_json())
    raw["future_field"] = {"x": [1, 2]}
    raw["calls"][1]["extra"] = "kept"
    await store.adaptive.store_run(raw)
    (loaded,) = await store.adaptive.list_runs("a")
    assert loaded.to_dict() == raw


async def test_list_runs_is_store_order_per_agent(store: Store) -> None:
    mine = await store_runs(store, "a", 3)
    await store_runs(store, "b", 2)
    mine += await store_runs(store, "a", 2)
    assert [r.id for r in await store.adaptive.list_runs("a")] == [r.id for r in mine]
    assert await store.adaptive.count_runs("a") == 5
    assert await store.adaptive.count_runs("b") == 2
    assert list(await store.adaptive.list_runs("nobody")) == []
    assert await store.adaptive.count_runs("nobody") == 0


@pytest.mark.parametrize("limit", [1, 2, 4, 5])
async def test_list_runs_pages(store: Store, limit: int) -> None:
    ids = [r.id for r in await store_runs(store, "a", 4)]
    pages = await all_pages(store.adaptive.list_runs, limit, agent_id="a")
    assert [[r.id for r in page] for page in pages] == chunked(ids, limit)


async def test_list_runs_bad_cursor(store: Store) -> None:
    await store_runs(store, "a", 2)
    await store_runs(store, "b", 1)
    key_cursor = (await store.adaptive.list_agents(limit=1)).next_cursor
    assert key_cursor is not None
    for cursor in ["!!", "eyJ4IjoxfQ", key_cursor]:
        with pytest.raises(InvalidInput):
            await store.adaptive.list_runs("a", cursor=cursor)
    run_cursor = (await store.adaptive.list_runs("a", limit=1)).next_cursor
    with pytest.raises(InvalidInput):
        await store.adaptive.list_agents(cursor=run_cursor)
    with pytest.raises(InvalidInput):
        await store.adaptive.list_keys("plan", cursor=run_cursor)


async def test_duplicate_run_id_conflicts_per_agent(store: Store) -> None:
    run = docs.run_record("a")
    await store.adaptive.store_run(run)
    with pytest.raises(Conflict):
        await store.adaptive.store_run(run.model_copy(update={"calls": []}))
    (kept,) = await store.adaptive.list_runs("a")
    assert len(kept.calls) == 4
    await store.adaptive.store_run(run.model_copy(update={"agent_id": "b"}))
    assert await store.adaptive.count_runs("b") == 1


@pytest.mark.parametrize(
    "change",
    [
        {"id": "not-a-uuid"},
        {"id": "0190A1FD-9C2C-7122-A5E7-3415CEAAE897"},
        {"agent_id": ""},
        {"agent_id": "a\x00"},
        {"started_at": "2026-11-21 10:17"},
        {"calls": [{"kind": "other"}]},
    ],
)
async def test_store_run_rejects_malformed_runs(store: Store, change: dict[str, Any]) -> None:
    raw = {**docs.run_record("a").to_dict(), **change}
    with pytest.raises(InvalidInput):
        await store.adaptive.store_run(raw)
    assert list(await store.adaptive.list_agents()) == []


@pytest.mark.parametrize(("keep", "left"), [(0, 0), (2, 2), (5, 5), (8, 5)])
async def test_prune_runs_keeps_the_newest(store: Store, keep: int, left: int) -> None:
    runs = await store_runs(store, "a", 5)
    await store_runs(store, "b", 1)
    assert await store.adaptive.prune_runs("a", keep=keep) == 5 - left
    remaining = [r.id for r in await store.adaptive.list_runs("a")]
    assert remaining == [r.id for r in runs[5 - left :]]
    assert await store.adaptive.count_runs("b") == 1
    assert ("a" in await store.adaptive.list_agents()) == bool(left)


async def test_prune_runs_validates(store: Store) -> None:
    assert await store.adaptive.prune_runs("nobody", keep=0) == 0
    for keep in (-1, None, True):
        with pytest.raises(InvalidInput):
            await store.adaptive.prune_runs("a", keep=keep)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.adaptive.prune_runs("", keep=1)


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("kind", DOC_KINDS)
async def test_missing_document_loads_as_none(store: Store, kind: str) -> None:
    assert await load_doc(store, kind, "demo-agent") is None


@pytest.mark.parametrize("kind", DOC_KINDS)
async def test_document_round_trips_and_overwrites(store: Store, kind: str) -> None:
    first = docs.document(kind, "demo-agent")
    await store_doc(store, kind, "demo-agent", first)
    assert as_json(await load_doc(store, kind, "demo-agent")) == as_json(first)
    second = docs.document(kind, "demo-agent")  # fresh uuids and timestamps
    if kind == "acg_observations":
        second = docs.observations(3)
    await store_doc(store, kind, "demo-agent", second)
    assert as_json(await load_doc(store, kind, "demo-agent")) == as_json(second)
    assert list(await store.adaptive.list_keys(kind)) == ["demo-agent"]  # type: ignore[arg-type]


async def test_documents_of_different_kinds_and_keys_are_separate(store: Store) -> None:
    for kind in DOC_KINDS:
        for key in ("a", "b"):
            await store_doc(store, kind, key, docs.document(kind, key))
    await store.adaptive.store_accumulators("a", docs.accumulator_state(count=41))
    assert docs.counter_of(await store.adaptive.load_accumulators("a")) == 41
    assert docs.counter_of(await store.adaptive.load_accumulators("b")) == 3
    assert (await store.adaptive.load_plan("b")).agent_id == "b"  # type: ignore[union-attr]


async def test_plan_is_keyed_by_its_agent_id(store: Store) -> None:
    await store.adaptive.store_plan(docs.execution_plan("a:team/x"))
    assert (await store.adaptive.load_plan("a:team/x")).agent_id == "a:team/x"  # type: ignore[union-attr]
    assert await store.adaptive.load_plan("a") is None


async def test_plan_from_the_spec_example_round_trips_byte_for_byte(store: Store) -> None:
    text = (
        '{"agent_id":"demo-agent","parallel_groups":[{"group_id":"fanout:sha256:98257","tool_names":'
        '["fetch","search"]}],"metadata_template":{"run_id":"01a1fd9c-2cd3-7122-a5e7-3415ceaae897",'
        '"agent_id":"demo-agent","parallel_hints":[{"tool_name":"fetch","group_id":"fanout:sha256:98257",'
        '"explicit":false},{"tool_name":"search","group_id":"fanout:sha256:98257","explicit":false}],'
        '"extensions":{}}}'
    )
    await store.adaptive.store_plan(json.loads(text))
    assert (await store.adaptive.load_plan("demo-agent")).to_json() == text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        ("plan", {"agent_id": "a"}),
        ("trie", {"version": "1.0", "workflow_name": "a"}),
        ("accumulators", {"nodes": {"": {"all_sensitivity": {"count": -1}}}}),
        ("acg_observations", [{"ir_id": "x", "blocks": [], "created_at": "now"}]),
        ("acg_stability", {"scores": "none"}),
    ],
)
async def test_malformed_documents_are_rejected(store: Store, kind: str, bad: Any) -> None:
    with pytest.raises(InvalidInput):
        await store_doc(store, kind, "a", bad)
    assert await load_doc(store, kind, "a") is None


async def test_list_agents_covers_runs_plan_trie_accumulators_only(store: Store) -> None:
    await store_runs(store, "by-run", 1)
    await store.adaptive.store_plan(docs.execution_plan("by-plan"))
    await store.adaptive.store_trie("by-trie", docs.trie_envelope("by-trie"))
    await store.adaptive.store_accumulators("by-acc", docs.accumulator_state())
    await store.adaptive.store_observations("acg-key", docs.observations())
    await store.adaptive.store_stability("acg-key2", docs.stability())
    await store.adaptive.store_plan(docs.execution_plan("by-run"))
    expected = sorted(["by-run", "by-plan", "by-trie", "by-acc"])
    assert list(await store.adaptive.list_agents()) == expected
    assert await all_pages(store.adaptive.list_agents, 3) == chunked(expected, 3)


async def test_list_keys_sorted_and_paged(store: Store) -> None:
    keys = ["b", "a", "a:b", "a/b", "é", "Z", "agent::seed=stable-scaffold::"]
    for key in keys:
        await store.adaptive.store_observations(key, docs.observations(1))
    await store.adaptive.store_stability("other", docs.stability())
    assert list(await store.adaptive.list_keys("acg_observations")) == sorted(keys)
    assert await all_pages(store.adaptive.list_keys, 2, kind="acg_observations") == chunked(sorted(keys), 2)
    assert list(await store.adaptive.list_keys("acg_stability")) == ["other"]
    assert list(await store.adaptive.list_keys("trie")) == []


async def test_unknown_kind_is_invalid(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.adaptive.list_keys("runs")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await store.adaptive.delete_document("bogus", "a")  # type: ignore[arg-type]


async def test_delete_document(store: Store) -> None:
    await store.adaptive.store_trie("a", docs.trie_envelope("a"))
    await store.adaptive.store_accumulators("a", docs.accumulator_state())
    assert await store.adaptive.delete_document("trie", "a") is True
    assert await store.adaptive.delete_document("trie", "a") is False
    assert await store.adaptive.load_trie("a") is None
    assert await store.adaptive.load_accumulators("a") is not None
    assert await store.adaptive.delete_document("accumulators", "a") is True
    assert list(await store.adaptive.list_agents()) == []
    with pytest.raises(InvalidInput):
        await store.adaptive.delete_document("plan", "")


# --------------------------------------------------------------------------- atomic updates


async def test_update_gets_none_then_the_current_value(store: Store) -> None:
    seen: list[int | None] = []

    def bump(state: AccumulatorState | None) -> AccumulatorState:
        seen.append(None if state is None else docs.counter_of(state))
        return docs.incremented(state)

    first = await store.adaptive.update_accumulators("a", bump)
    second = await store.adaptive.update_accumulators("a", bump)
    assert seen == [None, 1]
    assert (docs.counter_of(first), docs.counter_of(second)) == (1, 2)
    assert as_json(await store.adaptive.load_accumulators("a")) == as_json(second)


async def test_concurrent_updates_in_one_process_take_turns(store: Store) -> None:
    # Each update sees the previous one's result, so none is computed twice (no compare-and-set
    # lost and retried): fn runs exactly once per update, on every backend.
    calls = 0

    def bump(state: AccumulatorState | None) -> AccumulatorState:
        nonlocal calls
        calls += 1
        return docs.incremented(state)

    await asyncio.gather(*(store.adaptive.update_accumulators("a", bump) for _ in range(20)))
    assert calls == 20
    final = await store.adaptive.load_accumulators("a")
    assert final is not None and docs.counter_of(final) == 20


async def test_update_returning_none_leaves_the_document(store: Store) -> None:
    assert await store.adaptive.update_accumulators("a", lambda s: None) is None
    assert await store.adaptive.load_accumulators("a") is None
    assert list(await store.adaptive.list_agents()) == []
    stored = docs.accumulator_state(count=7)
    await store.adaptive.store_accumulators("a", stored)
    result = await store.adaptive.update_accumulators("a", lambda s: None)
    assert as_json(result) == as_json(stored)
    assert as_json(await store.adaptive.load_accumulators("a")) == as_json(stored)


async def test_update_that_raises_writes_nothing(store: Store) -> None:
    await store.adaptive.store_accumulators("a", docs.accumulator_state(count=5))

    def explode(state: AccumulatorState | None) -> AccumulatorState:
        raise InvalidInput("refused")

    with pytest.raises(InvalidInput, match="refused"):
        await store.adaptive.update_accumulators("a", explode)
    with pytest.raises(InvalidInput):
        await store.adaptive.update_accumulators("b", lambda s: {"nodes": "not a map"})  # type: ignore[arg-type,return-value]
    assert docs.counter_of(await store.adaptive.load_accumulators("a")) == 5
    assert await store.adaptive.load_accumulators("b") is None


async def test_update_plan(store: Store) -> None:
    plan = await store.adaptive.update_plan("a", lambda p: p or docs.execution_plan("a", ("x",)))
    assert plan is not None and plan.parallel_groups[0].tool_names == ["x"]
    widened = await store.adaptive.update_plan(
        "a",
        lambda p: docs.execution_plan("a", (*p.parallel_groups[0].tool_names, "y")),  # type: ignore[union-attr]
    )
    assert as_json(await store.adaptive.load_plan("a")) == as_json(widened)
    assert widened.parallel_groups[0].tool_names == ["x", "y"]  # type: ignore[union-attr]


async def test_update_plan_for_another_agent_is_invalid(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.adaptive.update_plan("a", lambda p: docs.execution_plan("b"))
    assert await store.adaptive.load_plan("a") is None
    assert await store.adaptive.load_plan("b") is None


async def test_update_observations_appends_to_the_window(store: Store) -> None:
    def add(window: list[Any] | None) -> list[Any]:
        return [*(window or []), docs.prompt_ir(len(window or []))]

    for _ in range(3):
        await store.adaptive.update_observations("learn::key", add)
    window = await store.adaptive.load_observations("learn::key")
    assert [ir.blocks[2].content for ir in window] == [f"Research topic number {i}" for i in range(3)]  # type: ignore[union-attr]


async def test_concurrent_updaters_lose_nothing(store: Store) -> None:
    calls = 20
    await asyncio.gather(*(store.adaptive.update_accumulators("a", docs.incremented) for _ in range(calls)))
    assert docs.counter_of(await store.adaptive.load_accumulators("a")) == calls


async def test_update_validates_the_key(store: Store) -> None:
    for key in BAD_KEYS:
        with pytest.raises(InvalidInput):
            await store.adaptive.update_accumulators(key, docs.incremented)


# --------------------------------------------------------------------------- hostile ids


@pytest.mark.parametrize("agent", HOSTILE_KEYS)
async def test_hostile_agent_ids_round_trip(store: Store, agent: str) -> None:
    run = docs.run_record(agent)
    await store.adaptive.store_run(run)
    for kind in DOC_KINDS:
        await store_doc(store, kind, agent, docs.document(kind, agent))
    assert [r.id for r in await store.adaptive.list_runs(agent)] == [run.id]
    assert list(await store.adaptive.list_agents()) == [agent]
    for kind in DOC_KINDS:
        assert await load_doc(store, kind, agent) is not None
        assert list(await store.adaptive.list_keys(kind)) == [agent]  # type: ignore[arg-type]
    # a prefix of the id must not alias it
    assert list(await store.adaptive.list_runs(agent[:-1] or "x")) == []


async def test_colon_ids_do_not_collide(store: Store) -> None:
    await store_runs(store, "a:b", 1)
    await store_runs(store, "a", 1)
    await store.adaptive.store_trie("a:b", docs.trie_envelope("a:b"))
    assert await store.adaptive.count_runs("a:b") == 1
    assert await store.adaptive.count_runs("a") == 1
    assert await store.adaptive.load_trie("a") is None


@pytest.mark.parametrize("bad", BAD_KEYS)
async def test_invalid_keys_are_rejected(store: Store, bad: str) -> None:
    calls = [
        store.adaptive.list_runs(bad),
        store.adaptive.count_runs(bad),
        store.adaptive.load_trie(bad),
        store.adaptive.store_trie(bad, docs.trie_envelope()),
        store.adaptive.store_accumulators(bad, docs.accumulator_state()),
        store.adaptive.load_observations(bad),
        store.adaptive.store_stability(bad, docs.stability()),
        store.adaptive.store_plan(docs.execution_plan(bad)),
        store.adaptive.store_run(docs.run_record(bad)),
    ]
    for call in calls:
        with pytest.raises(InvalidInput):
            await call
    assert list(await store.adaptive.list_agents()) == []


# --------------------------------------------------------------------------- corrupt records


async def test_corrupt_run_is_skipped_by_list_runs(
    store: Store, factory: object, caplog: pytest.LogCaptureFixture
) -> None:
    runs = await store_runs(store, "a", 3)
    await corrupt_or_skip(factory, store, "run", ("a", runs[1].id))
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        listed = await store.adaptive.list_runs("a")
    assert [r.id for r in listed] == [runs[0].id, runs[2].id]
    assert any(r.name == "relaystore" and r.levelno == logging.WARNING for r in caplog.records)
    assert await store.adaptive.count_runs("a") == 3


async def test_corrupt_run_does_not_end_pagination_early(store: Store, factory: object) -> None:
    runs = await store_runs(store, "a", 6)
    await corrupt_or_skip(factory, store, "run", ("a", runs[1].id))
    pages = await all_pages(store.adaptive.list_runs, 2, agent_id="a")
    assert [r.id for page in pages for r in page] == [r.id for i, r in enumerate(runs) if i != 1]


@pytest.mark.parametrize("kind", DOC_KINDS)
async def test_corrupt_document_fails_only_its_own_load(store: Store, factory: object, kind: str) -> None:
    for key in ("bad", "good"):
        await store_doc(store, kind, key, docs.document(kind, key))
    await corrupt_or_skip(factory, store, "document", (kind, "bad"))
    with pytest.raises(CorruptRecord) as info:
        await load_doc(store, kind, "bad")
    assert "bad" in info.value.key
    assert await load_doc(store, kind, "good") is not None
    assert list(await store.adaptive.list_keys(kind)) == ["bad", "good"]  # type: ignore[arg-type]


async def test_update_of_corrupt_document_raises_and_writes_nothing(store: Store, factory: object) -> None:
    await store.adaptive.store_accumulators("a", docs.accumulator_state())
    await corrupt_or_skip(factory, store, "document", ("accumulators", "a"))
    with pytest.raises(CorruptRecord):
        await store.adaptive.update_accumulators("a", docs.incremented)
    with pytest.raises(CorruptRecord):
        await store.adaptive.load_accumulators("a")
    await store.adaptive.store_accumulators("a", docs.accumulator_state(count=9))
    assert docs.counter_of(await store.adaptive.load_accumulators("a")) == 9
