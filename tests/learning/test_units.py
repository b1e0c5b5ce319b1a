"""Learner rules that need no runtime: ids, hashing, rounding, lookup, config and errors."""

from __future__ import annotations

import pytest

from relaystore import connect
from relaystore.errors import InvalidInput
from relaystore.learning import learn, predict, relearn
from relaystore.learning.acg import analyze_stability, build_prompt_ir, learning_key, normalize_whitespace
from relaystore.learning.latency import CallContext, round_half_away, score_sensitivity, whole_ms
from relaystore.learning.plan import cohorts, group_id
from relaystore.models.adaptive import Metrics, Prediction, TrieEnvelope, TrieNode
from tests.learning.factories import LLM_CALLS_PER_RUN, make_run


def test_group_id_keeps_only_five_hex_digits() -> None:
    assert group_id(["fetch", "search"]) == "fanout:sha256:98257"


def test_cohorts_of_overlapping_tools() -> None:
    assert cohorts(make_run("a", 0)) == [("fetch", "search")]


def test_whole_ms_truncates_toward_zero() -> None:
    assert whole_ms(0, 1_999_999) == 1
    assert whole_ms(1_999_999, 0) == -1


def test_round_half_away_from_zero() -> None:
    assert [round_half_away(x) for x in (0.5, 1.5, 2.5, 2.4999999999999996, -0.5, 3.0)] == [1, 2, 3, 2, -1, 3]


def _ctx(start: int, end: int, duration: float) -> CallContext:
    return CallContext(("x",), 1, 0, None, 0.0, duration, start, end)


def test_sensitivity_groups_by_whole_seconds_and_normalizes() -> None:
    first, second = _ctx(10, 10, 0.05), _ctx(10, 10, 0.05)
    score_sensitivity([first, second], 0.2)  # same-second calls look sequential: two groups
    assert (first.sensitivity, second.sensitivity) == (1.0, 0.0)
    a, b = _ctx(10, 12, 0.5), _ctx(11, 12, 0.5)
    score_sensitivity([a, b], 2.0)  # one overlapping group: all raw scores equal
    assert (a.sensitivity, b.sensitivity) == (0.5, 0.5)


def test_normalize_whitespace() -> None:
    assert normalize_whitespace("  a \t b  \n\n  c\r\n") == "a b\n\n c"


def test_learning_key_without_scaffold_is_truncated() -> None:
    request = {"messages": [{"role": "user", "content": "hi"}], "model": "m"}
    assert (
        learning_key("ag", request) == "ag::model=m::seed=user:sha256:8f43::system=no-system::tools=no-tools"
    )


def test_prompt_ir_puts_the_scaffold_after_system_messages() -> None:
    request = {
        "instructions": "be brief",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"}],
        "tools": [{"type": "function", "function": {"name": "t"}}],
        "response_format": {"type": "json_object"},
    }
    ir = build_prompt_ir(request)
    assert [b.span_id for b in ir.blocks] == [
        "system-0-instructions",
        "system-1",
        "system-2-t",
        "system-3-structured-output",
        "user-4",
    ]
    assert ir.structured_output_schema_id is not None
    assert analyze_stability([ir, ir]).stable_prefix_length == 5


def _pred(tokens: float) -> Prediction:
    m = Metrics(sample_count=1, mean=tokens, p50=tokens, p90=tokens, p95=tokens)
    return Prediction(remaining_calls=m, interarrival_ms=m, output_tokens=m, latency_sensitivity=1)


def test_predict_prefers_index_then_any_index_deepest_hit() -> None:
    leaf = TrieNode(name="b", predictions_any_index=_pred(3.0))
    a = TrieNode(name="a", children={"b": leaf}, predictions_by_call_index={"2": _pred(2.0)})
    trie = TrieEnvelope(
        generated_at="2026-01-01T00:00:00+00:00",
        workflow_name="w",
        root=TrieNode(name="root", children={"a": a}, predictions_any_index=_pred(1.0)),
    )
    assert predict(trie, ["a"], 2).output_tokens.mean == 2.0  # type: ignore[union-attr]
    assert predict(trie, ["a"], 1).output_tokens.mean == 1.0  # type: ignore[union-attr]
    assert predict(trie, ["a", "b"], 2).output_tokens.mean == 3.0  # type: ignore[union-attr]
    assert predict(trie, ["zz"]).output_tokens.mean == 1.0  # type: ignore[union-attr]
    assert (
        predict(
            TrieEnvelope(generated_at="2026-01-01T00:00:00Z", workflow_name="w", root=TrieNode(name="root")),
            ["a"],
        )
        is None
    )


async def test_learn_rejects_bad_options_and_runs() -> None:
    async with connect("memory://") as store:
        with pytest.raises(InvalidInput):
            await learn(store, "a", [], observation_windw=3)
        with pytest.raises(InvalidInput):
            await learn(store, "a", [], observation_window=0)
        with pytest.raises(InvalidInput):
            await learn(store, "a", [{"id": "nope"}])
        impossible = make_run("a", 0).to_dict()
        impossible["calls"][0]["started_at"] = "2026-13-01T00:00:00Z"  # right shape, no such month
        with pytest.raises(InvalidInput):
            await learn(store, "a", [impossible])


async def test_learn_accepts_dicts_and_relearn_drops_stale_keys() -> None:
    async with connect("memory://") as store:
        runs = [make_run("a", i) for i in range(3)]
        report = await learn(store, "a", [r.to_dict() for r in runs], learners=["latency_sensitivity"])
        assert report.llm_calls == 3 * LLM_CALLS_PER_RUN
        assert await store.adaptive.load_plan("a") is None  # learner not enabled
        await store.adaptive.store_observations("a::model=gone::seed=x::system=y::tools=z", [])
        for run in runs:
            await store.adaptive.store_run(run)
        seen: list[tuple[int, int]] = []
        report = await relearn(store, "a", progress=lambda done, total: seen.append((done, total)))
        assert seen[-1] == (3, 3)
        state = await store.adaptive.load_accumulators("a")
        assert state.nodes[""].all_remaining_calls.count == 3 * LLM_CALLS_PER_RUN  # type: ignore[union-attr]
        keys = await store.adaptive.list_keys("acg_observations")
        assert "a::model=gone::seed=x::system=y::tools=z" not in keys
        assert report.best_acg_key in keys and "a" in keys
