"""Random operation sequences against each backend and against :mod:`relaystore.testing.model`.

Every step runs the same operation on both and demands the same outcome: the same value, or the
same :mod:`relaystore.errors` class. A small alphabet of ids makes collisions (duplicate ids,
stale heads, shared agents) common. Each hypothesis example gets a fresh store from the factory,
driven by a private event loop because hypothesis calls the rules synchronously.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from relaystore.errors import RelayStoreError
from relaystore.models import AccumulatorState, CheckpointMetadata
from relaystore.stores import ANY, DOC_KINDS, Store
from relaystore.testing import docs
from relaystore.testing.model import ANY_HEAD, Model

THREADS = ["t1", "t:2", "t/3"]
CHECKPOINT_IDS = ["c1", "c2", "c3", "c4"]
TASKS = ["task-a", "task/b"]
ATTEMPTS = [0, 1]
AGENTS = ["agent:x", "agent/y", "z"]
RUN_IDS = [docs.uuid7() for _ in range(5)]
UNKNOWN_REF = "out-" + "f" * 32

MAX_EXAMPLES = 200 if os.environ.get("CI") else 50
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Outcome = tuple[str, Any]


def outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", call())
    except RelayStoreError as exc:
        return ("error", type(exc))


def checkpoint_json(metadata: CheckpointMetadata) -> dict[str, Any]:
    return metadata.model_dump(mode="json")


def output_json(record: Any) -> dict[str, Any]:
    """A record without its backend-specific ``seq`` (orders are compared instead)."""
    return record.model_dump(mode="json", exclude={"seq", "created_at"})


def model_output(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "seq"}


class StoreMachine(RuleBasedStateMachine):
    factory: ModuleType
    tmp_path: Path

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.context = self.factory.fresh(self.tmp_path)
        self.store: Store = self.loop.run_until_complete(self.context.__aenter__())
        self.model = Model()
        self.refs: list[str] = []
        self.open_listing: tuple[str, bool, str, int] | None = None  # thread, newest_first, cursor, position

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.context.__aexit__(None, None, None))
        finally:
            self.loop.close()

    # ------------------------------------------------------------------ plumbing

    def run(self, make: Callable[[], Awaitable[Any]]) -> Any:
        return self.loop.run_until_complete(make())

    def both(self, backend: Callable[[], Awaitable[Any]], model: Callable[[], Any]) -> tuple[Any, Any] | None:
        """Run both sides; assert they fail alike, or return both values to compare."""
        got = outcome(lambda: self.run(backend))
        want = outcome(model)
        assert got[0] == want[0], f"backend {got} vs model {want}"
        if got[0] == "error":
            assert got[1] is want[1], f"backend raised {got[1].__name__}, model {want[1].__name__}"
            return None
        return got[1], want[1]

    def pages(self, list_page: Callable[..., Awaitable[Any]], limit: int, **kwargs: Any) -> list[list[Any]]:
        return self.run(lambda: docs.all_pages(list_page, limit, **kwargs))


class CheckpointMachine(StoreMachine):
    """Checkpoint saves (with and without CAS), deletes, retention, loads and listings."""

    @rule(
        thread=st.sampled_from(THREADS),
        checkpoint_id=st.sampled_from(CHECKPOINT_IDS),
        cas=st.sampled_from(["any", "current", "none", "stale"]),
        step=st.integers(0, 3),
        state=st.binary(max_size=8),
    )
    def save(self, thread: str, checkpoint_id: str, cas: str, step: int, state: bytes) -> None:
        head = self.model.head(thread)
        expected = {"any": ANY, "current": head, "none": None}.get(cas)
        if cas == "stale":
            expected = next((c for c in CHECKPOINT_IDS if c != head), "c1")
        metadata = CheckpointMetadata(id=checkpoint_id, thread_id=thread, step=step, created_at=1_700_000_000)
        model_head = ANY_HEAD if expected is ANY else expected
        result = self.both(
            lambda: self.store.checkpoints.save(thread, metadata, state, expected_head=expected),
            lambda: self.model.save(thread, checkpoint_json(metadata), state, model_head),
        )
        if result:
            assert result[0] == result[1]

    @rule(thread=st.sampled_from(THREADS), checkpoint_id=st.sampled_from(CHECKPOINT_IDS))
    def load(self, thread: str, checkpoint_id: str) -> None:
        result = self.both(
            lambda: self.store.checkpoints.load(thread, checkpoint_id),
            lambda: self.model.load(thread, checkpoint_id),
        )
        if result:
            (metadata, state), expected = result
            assert (checkpoint_json(metadata), state) == expected

    @rule(thread=st.sampled_from(THREADS))
    def load_latest_and_head(self, thread: str) -> None:
        result = self.both(
            lambda: self.store.checkpoints.load_latest(thread), lambda: self.model.load_latest(thread)
        )
        if result:
            (metadata, state), expected = result
            assert (checkpoint_json(metadata), state) == expected
        assert self.run(lambda: self.store.checkpoints.head(thread)) == self.model.head(thread)
        assert self.run(lambda: self.store.checkpoints.count(thread)) == self.model.count(thread)

    @rule(thread=st.sampled_from(THREADS), checkpoint_id=st.sampled_from(CHECKPOINT_IDS))
    def delete(self, thread: str, checkpoint_id: str) -> None:
        got = self.run(lambda: self.store.checkpoints.delete(thread, checkpoint_id))
        assert got == self.model.delete(thread, checkpoint_id)

    @rule(thread=st.sampled_from(THREADS))
    def delete_thread(self, thread: str) -> None:
        assert self.run(lambda: self.store.checkpoints.delete_thread(thread)) == self.model.delete_thread(
            thread
        )

    @rule(thread=st.sampled_from(THREADS), keep=st.integers(0, 3))
    def prune(self, thread: str, keep: int) -> None:
        assert self.run(lambda: self.store.checkpoints.prune(thread, keep=keep)) == self.model.prune(
            thread, keep
        )

    @rule(thread=st.sampled_from(THREADS), limit=st.integers(1, 3), newest_first=st.booleans())
    def list_checkpoints(self, thread: str, limit: int, newest_first: bool) -> None:
        pages = self.pages(self.store.checkpoints.list, limit, thread_id=thread, newest_first=newest_first)
        expected = [md for _, md in self.model.checkpoint_rows(thread, newest_first)]
        assert [[checkpoint_json(m) for m in page] for page in pages] == docs.chunked(expected, limit)

    @rule(limit=st.integers(1, 2))
    def list_threads(self, limit: int) -> None:
        pages = self.pages(self.store.checkpoints.list_threads, limit)
        assert pages == docs.chunked(self.model.thread_ids(), limit)

    @precondition(lambda self: self.open_listing is None)
    @rule(thread=st.sampled_from(THREADS), newest_first=st.booleans())
    def start_listing(self, thread: str, newest_first: bool) -> None:
        """Take one page and keep its cursor open across later writes and deletes."""
        page = self.run(lambda: self.store.checkpoints.list(thread, limit=1, newest_first=newest_first))
        rows = self.model.checkpoint_rows(thread, newest_first)
        assert [checkpoint_json(m) for m in page] == [md for _, md in rows[:1]]
        if page.next_cursor is not None:
            self.open_listing = (thread, newest_first, page.next_cursor, rows[0][0])

    @precondition(lambda self: self.open_listing is not None)
    @rule()
    def continue_listing(self) -> None:
        assert self.open_listing is not None
        thread, newest_first, cursor, position = self.open_listing
        self.open_listing = None
        rest = self.run(lambda: self.store.checkpoints.list(thread, cursor=cursor, newest_first=newest_first))
        after = [
            md
            for seq, md in self.model.checkpoint_rows(thread, newest_first)
            if (seq < position if newest_first else seq > position)
        ]
        assert [checkpoint_json(m) for m in rest] == after


class OutputMachine(StoreMachine):
    """Output appends with parent refs drawn from earlier appends, lookups, listings, lineage."""

    @rule(
        task=st.sampled_from(TASKS),
        attempt=st.sampled_from(ATTEMPTS),
        agent=st.sampled_from(AGENTS),
        picks=st.lists(st.integers(0, 99), max_size=3),
        dangling=st.booleans(),
    )
    def append(self, task: str, attempt: int, agent: str, picks: list[int], dangling: bool) -> None:
        parents = [self.refs[i % len(self.refs)] for i in picks] if self.refs else []
        if dangling:
            parents.append(UNKNOWN_REF)
        event = docs.artifact_event(f"{agent}.md", f"{task}#{attempt}")
        ref = self.run(lambda: self.store.outputs.append(task, attempt, agent, event, parents))
        self.model.append(str(ref), task, attempt, agent, event, parents)
        self.refs.append(str(ref))

    @rule(pick=st.integers(0, 99), unknown=st.booleans())
    def get_output(self, pick: int, unknown: bool) -> None:
        ref = UNKNOWN_REF if unknown or not self.refs else self.refs[pick % len(self.refs)]
        result = self.both(lambda: self.store.outputs.get(ref), lambda: self.model.get(ref))
        if result:
            assert output_json(result[0]) == model_output(result[1])

    @rule(agent=st.sampled_from(AGENTS))
    def latest_by_name(self, agent: str) -> None:
        result = self.both(
            lambda: self.store.outputs.get_latest_by_name(agent), lambda: self.model.latest(agent)
        )
        if result:
            assert result[0].id == result[1]["id"]

    @rule(task=st.sampled_from(TASKS), attempt=st.sampled_from(ATTEMPTS), agent=st.sampled_from(AGENTS))
    def latest_in_run(self, task: str, attempt: int, agent: str) -> None:
        result = self.both(
            lambda: self.store.outputs.get_latest_by_name_in_run(task, attempt, agent),
            lambda: self.model.latest_in_run(task, attempt, agent),
        )
        if result:
            assert result[0].id == result[1]["id"]

    @rule(task=st.sampled_from(TASKS), attempt=st.sampled_from(ATTEMPTS), limit=st.integers(1, 3))
    def list_for_attempt(self, task: str, attempt: int, limit: int) -> None:
        pages = self.pages(self.store.outputs.list_for_attempt, limit, task_id=task, attempt=attempt)
        self.assert_output_pages(pages, self.model.output_rows(task, attempt), limit)

    @rule(
        task=st.none() | st.sampled_from(TASKS),
        agent=st.none() | st.sampled_from(AGENTS),
        limit=st.integers(1, 4),
    )
    def list_outputs(self, task: str | None, agent: str | None, limit: int) -> None:
        pages = self.pages(self.store.outputs.list, limit, task_id=task, producer_agent=agent)
        self.assert_output_pages(pages, self.model.output_rows(task, agent=agent), limit)

    def assert_output_pages(self, pages: list[list[Any]], expected: list[dict[str, Any]], limit: int) -> None:
        assert [[r.id for r in page] for page in pages] == docs.chunked([r["id"] for r in expected], limit)
        seqs = [r.seq for page in pages for r in page]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    @precondition(lambda self: self.refs)
    @rule(pick=st.integers(0, 99), down=st.booleans(), depth=st.none() | st.integers(0, 3))
    def lineage(self, pick: int, down: bool, depth: int | None) -> None:
        ref = self.refs[pick % len(self.refs)]
        if down:
            got = self.run(lambda: self.store.outputs.descendants(ref, max_depth=depth))
            want = self.model.descendants(ref, depth)
        else:
            got = self.run(lambda: self.store.outputs.ancestors(ref, max_depth=depth))
            want = self.model.ancestors(ref, depth)
        assert [r.id for r in got] == [r["id"] for r in want]


class AdaptiveMachine(StoreMachine):
    """Runs, retention, documents of every kind and atomic accumulator updates."""

    @rule(agent=st.sampled_from(AGENTS), run_id=st.sampled_from(RUN_IDS))
    def store_run(self, agent: str, run_id: str) -> None:
        run = docs.run_record(agent, run_id)
        self.both(
            lambda: self.store.adaptive.store_run(run), lambda: self.model.store_run(agent, run.to_dict())
        )

    @rule(agent=st.sampled_from(AGENTS), limit=st.integers(1, 3))
    def list_runs(self, agent: str, limit: int) -> None:
        pages = self.pages(self.store.adaptive.list_runs, limit, agent_id=agent)
        assert [[r.to_dict() for r in page] for page in pages] == docs.chunked(
            self.model.run_rows(agent), limit
        )
        assert self.run(lambda: self.store.adaptive.count_runs(agent)) == len(self.model.run_rows(agent))

    @rule(agent=st.sampled_from(AGENTS), keep=st.integers(0, 2))
    def prune_runs(self, agent: str, keep: int) -> None:
        assert self.run(lambda: self.store.adaptive.prune_runs(agent, keep=keep)) == self.model.prune_runs(
            agent, keep
        )

    @rule(kind=st.sampled_from(DOC_KINDS), key=st.sampled_from(AGENTS))
    def store_document(self, kind: str, key: str) -> None:
        value = docs.document(kind, key)
        self.run(lambda: _store_doc(self.store, kind, key, value))
        self.model.put_doc(kind, key, docs.as_json(value))

    @rule(kind=st.sampled_from(DOC_KINDS), key=st.sampled_from(AGENTS))
    def load_document(self, kind: str, key: str) -> None:
        loaded = self.run(lambda: _load_doc(self.store, kind, key))
        assert (None if loaded is None else docs.as_json(loaded)) == self.model.get_doc(kind, key)

    @rule(kind=st.sampled_from(DOC_KINDS), key=st.sampled_from(AGENTS))
    def delete_document(self, kind: str, key: str) -> None:
        got = self.run(lambda: self.store.adaptive.delete_document(kind, key))  # type: ignore[arg-type]
        assert got == self.model.delete_doc(kind, key)

    @rule(kind=st.sampled_from(DOC_KINDS), limit=st.integers(1, 2))
    def list_keys(self, kind: str, limit: int) -> None:
        pages = self.pages(self.store.adaptive.list_keys, limit, kind=kind)
        assert pages == docs.chunked(self.model.keys(kind), limit)

    @rule(limit=st.integers(1, 2))
    def list_agents(self, limit: int) -> None:
        assert self.pages(self.store.adaptive.list_agents, limit) == docs.chunked(self.model.agents(), limit)

    @rule(key=st.sampled_from(AGENTS), mode=st.sampled_from(["increment", "keep", "fail"]))
    def update_accumulators(self, key: str, mode: str) -> None:
        def fn(state: Any) -> Any:
            if mode == "fail":
                raise _Refused()
            return docs.incremented(state) if mode == "increment" else None

        try:
            got = self.run(lambda: self.store.adaptive.update_accumulators(key, fn))
        except _Refused:
            got = _Refused
        try:
            want = self.model.update_doc("accumulators", key, lambda current: _model_fn(current, mode))
        except _Refused:
            want = _Refused
        assert (got if got in (None, _Refused) else docs.as_json(got)) == want


class MixedMachine(CheckpointMachine, OutputMachine, AdaptiveMachine):
    """All three faces on one store, interleaved (a backend may share counters between them)."""


class _Refused(Exception):
    """Raised by an updater to abandon its update."""


def _model_fn(state: Any, mode: str) -> Any:
    if mode == "fail":
        raise _Refused()
    if mode == "keep":
        return None
    current = None if state is None else AccumulatorState.model_validate(state)
    return docs.as_json(docs.incremented(current))


async def _store_doc(store: Store, kind: str, key: str, value: Any) -> None:
    if kind == "plan":
        await store.adaptive.store_plan(value)
    else:
        setter = {
            "trie": store.adaptive.store_trie,
            "accumulators": store.adaptive.store_accumulators,
            "acg_observations": store.adaptive.store_observations,
            "acg_stability": store.adaptive.store_stability,
        }[kind]
        await setter(key, value)


async def _load_doc(store: Store, kind: str, key: str) -> Any:
    getter = {
        "plan": store.adaptive.load_plan,
        "trie": store.adaptive.load_trie,
        "accumulators": store.adaptive.load_accumulators,
        "acg_observations": store.adaptive.load_observations,
        "acg_stability": store.adaptive.load_stability,
    }[kind]
    return await getter(key)


@pytest.mark.slow
@pytest.mark.parametrize(
    "machine", [CheckpointMachine, OutputMachine, AdaptiveMachine, MixedMachine], ids=lambda m: m.__name__
)
def test_backend_matches_model(factory: ModuleType, tmp_path: Path, machine: type[StoreMachine]) -> None:
    bound = type(
        f"{factory.NAME.title()}{machine.__name__}", (machine,), {"factory": factory, "tmp_path": tmp_path}
    )
    run_state_machine_as_test(bound, settings=SETTINGS)
