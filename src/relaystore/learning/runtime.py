"""Running the learners against any store: incremental :func:`learn` and from-scratch :func:`relearn`.

NeMo Relay runs its learners inside the agent process, one run at a time, with plain
load-modify-store (so two workers sharing an agent lose updates). Here every read-modify-write goes
through the store's atomic ``update_*`` methods, so any number of processes may learn for one
agent at once and no sample is lost. Only the derived documents (trie, stability, the agent-id
copy of the best ACG window) are plain overwrites: each is rebuilt from the state its writer saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from relaystore.errors import CorruptRecord, InvalidInput
from relaystore.learning import acg, latency, plan
from relaystore.models.adaptive import (
    AccumulatorState,
    ExecutionPlan,
    PromptIR,
    RunRecord,
    StabilityAnalysisResult,
)
from relaystore.models.common import timestamp_to_ns
from relaystore.stores._common import check_id, validate

if TYPE_CHECKING:
    from relaystore.stores import Store

LEARNERS = ("latency_sensitivity", "tool_parallelism", "acg")
RELEARN_PAGE = 200
_RUNS: TypeAdapter[list[RunRecord]] = TypeAdapter(list[RunRecord])

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LearnConfig:
    """Learner settings, named and defaulted as NeMo Relay's ``AdaptiveConfig``:
    ``telemetry.learners``, ``acg.observation_window``, ``acg.stability_thresholds.*`` and the
    trie builder's sensitivity scale. Unknown learner names are ignored, as NeMo Relay does."""

    learners: tuple[str, ...] = LEARNERS
    observation_window: int = acg.DEFAULT_OBSERVATION_WINDOW
    stable_threshold: float = acg.DEFAULT_STABLE_THRESHOLD
    semi_stable_threshold: float = acg.DEFAULT_SEMI_STABLE_THRESHOLD
    min_observations_for_full_confidence: int = acg.DEFAULT_FULL_CONFIDENCE_AT
    sensitivity_scale: int = latency.DEFAULT_SCALE

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> LearnConfig:
        """Validate keyword config; :class:`InvalidInput` for an unknown name or a bad value."""
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown learning option(s): {', '.join(sorted(unknown))}")
        learners = options.get("learners", LEARNERS)
        if isinstance(learners, str) or not all(isinstance(name, str) for name in learners):
            raise InvalidInput(f"learners must be a list of learner names, got {learners!r}")
        config = cls(**{**options, "learners": tuple(learners)})
        config._check()
        return config

    def _check(self) -> None:
        if not _positive_int(self.observation_window):
            raise InvalidInput(
                f"observation_window must be a positive integer, got {self.observation_window!r}"
            )
        if not _positive_int(self.sensitivity_scale):
            raise InvalidInput(
                f"sensitivity_scale must be a positive integer, got {self.sensitivity_scale!r}"
            )
        count = self.min_observations_for_full_confidence
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(f"min_observations_for_full_confidence must be >= 0, got {count!r}")
        for name in ("stable_threshold", "semi_stable_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise InvalidInput(f"{name} must be a number in [0, 1], got {value!r}")

    @property
    def stability(self) -> acg.StabilityConfig:
        return acg.StabilityConfig(
            float(self.stable_threshold),
            float(self.semi_stable_threshold),
            self.min_observations_for_full_confidence,
        )

    def enabled(self, learner: str) -> bool:
        return learner in self.learners


def _bad_timestamp(run: RunRecord) -> str | None:
    """Why a run's timestamps cannot be used (the models check only their shape, not the date)."""
    stamps = [run.started_at, run.ended_at, *(t for c in run.calls for t in (c.started_at, c.ended_at))]
    for stamp in stamps:
        if stamp is not None:
            try:
                timestamp_to_ns(stamp)
            except ValueError as exc:
                return str(exc)
    return None


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class LearnReport:
    """What one :func:`learn` or :func:`relearn` call did."""

    agent_id: str
    runs: int = 0
    llm_calls: int = 0
    parallel_groups: int = 0
    acg_keys: list[str] = field(default_factory=list)
    best_acg_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "runs": self.runs,
            "llm_calls": self.llm_calls,
            "parallel_groups": self.parallel_groups,
            "acg_keys": self.acg_keys,
            "best_acg_key": self.best_acg_key,
        }


# --------------------------------------------------------------------------- incremental


async def learn(
    store: Store, agent_id: str, runs: Iterable[RunRecord | dict[str, Any]], **config: Any
) -> LearnReport:
    """Apply ``runs`` (in order) to the agent's stored learned state, as NeMo Relay's learners do
    after each completed run.

    Accumulators, plan and ACG windows are updated atomically (``store.adaptive.update_*``), so
    concurrent learners for one agent lose nothing; the trie and stability results are then
    rebuilt from the updated state and overwritten. The runs themselves are not stored.

    ``config``: see :class:`LearnConfig` (``learners``, ``observation_window``,
    ``stable_threshold``, ``semi_stable_threshold``, ``min_observations_for_full_confidence``,
    ``sensitivity_scale``). Raises :class:`InvalidInput` for a bad agent id, run or option, and
    whatever the store raises (:class:`BackendUnavailable`, :class:`CorruptRecord`).
    """
    check_id(agent_id, "agent_id")
    settings = LearnConfig.from_kwargs(config)
    batch = validate(_RUNS, list(runs), "run records")
    for run in batch:
        problem = _bad_timestamp(run)
        if problem:
            raise InvalidInput(f"run {run.id}: {problem}")
    report = LearnReport(agent_id, runs=len(batch))
    if not batch:
        return report
    if settings.enabled("latency_sensitivity"):
        report.llm_calls = await _learn_latency(store, agent_id, batch, settings)
    if settings.enabled("tool_parallelism"):
        report.parallel_groups = await _learn_plan(store, agent_id, batch)
    if settings.enabled("acg"):
        await _learn_acg(store, agent_id, batch, settings, report)
    return report


async def _learn_latency(store: Store, agent_id: str, runs: list[RunRecord], settings: LearnConfig) -> int:
    outcome: dict[str, Any] = {}

    def update(current: AccumulatorState | None) -> AccumulatorState:
        # May run more than once (optimistic retries): keep only the last attempt's result.
        nodes = latency.accumulators_from_model(current)
        outcome["calls"] = sum(latency.add_run(nodes, run) for run in runs)
        outcome["nodes"] = nodes
        return latency.accumulators_to_model(nodes)

    await store.adaptive.update_accumulators(agent_id, update)
    trie = latency.build_trie(agent_id, outcome["nodes"], scale=settings.sensitivity_scale)
    await store.adaptive.store_trie(agent_id, trie)
    return int(outcome["calls"])


async def _learn_plan(store: Store, agent_id: str, runs: list[RunRecord]) -> int:
    if not any(plan.cohorts(run) for run in runs):
        return 0  # as NeMo Relay: a run without overlapping tools writes nothing

    def update(current: ExecutionPlan | None) -> ExecutionPlan | None:
        return plan.apply_runs(current, agent_id, runs)

    stored = await store.adaptive.update_plan(agent_id, update)
    return 0 if stored is None else len(stored.parallel_groups)


async def _learn_acg(
    store: Store, agent_id: str, runs: list[RunRecord], settings: LearnConfig, report: LearnReport
) -> None:
    per_run = [acg.run_observations(agent_id, run) for run in runs]
    grouped: dict[str, list[PromptIR]] = {}
    for observed in per_run:
        for key, irs in observed.items():
            grouped.setdefault(key, []).extend(irs)
    results: dict[str, tuple[list[PromptIR], StabilityAnalysisResult]] = {}
    for key, irs in grouped.items():
        window = await store.adaptive.update_observations(
            key, _window_pusher(irs, settings.observation_window)
        )
        result = acg.analyze_stability(window or [], settings.stability, key=key)
        await store.adaptive.store_stability(key, result)
        results[key] = (window or [], result)
    report.acg_keys = list(grouped)
    last = next((observed for observed in reversed(per_run) if observed), None)
    if last is not None:
        report.best_acg_key = await _store_best(store, agent_id, {k: results[k] for k in last})


def _window_pusher(irs: list[PromptIR], size: int) -> Callable[[list[PromptIR] | None], list[PromptIR]]:
    def push(current: list[PromptIR] | None) -> list[PromptIR]:
        return acg.push_window(current, irs, size)

    return push


async def _store_best(
    store: Store, agent_id: str, candidates: dict[str, tuple[list[PromptIR], StabilityAnalysisResult]]
) -> str | None:
    """Copy the best key of the latest run to the plain agent id (NeMo Relay's registration seed).

    Only the latest run's keys compete, as in NeMo Relay, and their windows already include every
    earlier run of this batch, so the copy equals what run-by-run learning leaves behind.
    """
    best = acg.best_key({k: result for k, (_, result) in candidates.items()})
    if best is not None:
        window, result = candidates[best]
        await store.adaptive.store_observations(agent_id, window)
        await store.adaptive.store_stability(agent_id, result)
    return best


# --------------------------------------------------------------------------- from scratch


@dataclass
class _Fresh:
    """Learned state computed in memory from all runs, before it replaces the stored state."""

    nodes: latency.Accumulators = field(default_factory=dict)
    plan: ExecutionPlan | None = None
    windows: dict[str, list[PromptIR]] = field(default_factory=dict)
    last_keys: list[str] = field(default_factory=list)

    def add(self, agent_id: str, run: RunRecord, settings: LearnConfig) -> int:
        calls = latency.add_run(self.nodes, run) if settings.enabled("latency_sensitivity") else 0
        if settings.enabled("tool_parallelism"):
            self.plan = plan.apply_runs(self.plan, agent_id, [run])
        if settings.enabled("acg"):
            observed = acg.run_observations(agent_id, run)
            for key, irs in observed.items():
                self.windows[key] = acg.push_window(self.windows.get(key), irs, settings.observation_window)
            self.last_keys = list(observed) or self.last_keys
        return calls


async def relearn(
    store: Store, agent_id: str, *, progress: Progress | None = None, **config: Any
) -> LearnReport:
    """Rebuild the agent's learned state from all its stored runs (``relaystore learn --from-scratch``).

    The new state is computed in memory, page by page (``progress(done, total)`` after each page),
    then written over the old documents; the agent's learning keys that the runs no longer produce
    are deleted. Config and errors as :func:`learn`. Learners that run concurrently for the same
    agent during a rebuild may have their updates overwritten.
    """
    check_id(agent_id, "agent_id")
    settings = LearnConfig.from_kwargs(config)
    total = await store.adaptive.count_runs(agent_id)
    fresh, report = _Fresh(), LearnReport(agent_id)
    cursor: str | None = None
    while True:
        page = await store.adaptive.list_runs(agent_id, limit=RELEARN_PAGE, cursor=cursor)
        for run in page:
            problem = _bad_timestamp(run)
            if problem:
                raise CorruptRecord(f"runs:{agent_id}:{run.id}", problem)
            report.llm_calls += fresh.add(agent_id, run, settings)
        report.runs += len(page)
        if progress is not None:
            progress(report.runs, max(total, report.runs))
        cursor = page.next_cursor
        if cursor is None:
            break
    await _write_fresh(store, agent_id, fresh, settings, report)
    return report


async def _write_fresh(
    store: Store, agent_id: str, fresh: _Fresh, settings: LearnConfig, report: LearnReport
) -> None:
    adaptive = store.adaptive
    if settings.enabled("latency_sensitivity"):
        # NeMo Relay stores accumulators and a trie after every run, even one without LLM calls.
        learned = report.runs > 0
        state = latency.accumulators_to_model(fresh.nodes) if learned else None
        trie = (
            latency.build_trie(agent_id, fresh.nodes, scale=settings.sensitivity_scale) if learned else None
        )
        await _replace(store, "accumulators", agent_id, state)
        await _replace(store, "trie", agent_id, trie)
    if settings.enabled("tool_parallelism"):
        await _replace(store, "plan", agent_id, fresh.plan)
        report.parallel_groups = len(fresh.plan.parallel_groups) if fresh.plan else 0
    if not settings.enabled("acg"):
        return
    results = {}
    for key, window in fresh.windows.items():
        results[key] = (window, acg.analyze_stability(window, settings.stability, key=key))
        await adaptive.store_observations(key, window)
        await adaptive.store_stability(key, results[key][1])
    await _delete_stale_keys(store, agent_id, set(fresh.windows))
    report.acg_keys = list(fresh.windows)
    report.best_acg_key = await _store_best(store, agent_id, {k: results[k] for k in fresh.last_keys})
    if report.best_acg_key is None:
        for kind in ("acg_observations", "acg_stability"):
            await adaptive.delete_document(kind, agent_id)


async def _replace(store: Store, kind: str, agent_id: str, value: Any) -> None:
    adaptive = store.adaptive
    if value is None:
        await adaptive.delete_document(kind, agent_id)  # type: ignore[arg-type]
    elif kind == "accumulators":
        await adaptive.store_accumulators(agent_id, value)
    elif kind == "trie":
        await adaptive.store_trie(agent_id, value)
    else:
        await adaptive.store_plan(value)


def learning_key_prefix(agent_id: str) -> str:
    """Every ACG learning key of ``agent_id`` starts with this."""
    return f"{agent_id}::model="


async def agent_learning_keys(store: Store, kind: str, agent_id: str) -> list[str]:
    """The stored ACG learning keys of ``agent_id`` holding a document of ``kind``."""
    prefix, keys, cursor = learning_key_prefix(agent_id), list[str](), None
    while True:
        page = await store.adaptive.list_keys(kind, limit=500, cursor=cursor)  # type: ignore[arg-type]
        keys.extend(k for k in page if k.startswith(prefix))
        cursor = page.next_cursor
        if cursor is None or (page and page[-1] > prefix and not page[-1].startswith(prefix)):
            return keys


async def _delete_stale_keys(store: Store, agent_id: str, keep: set[str]) -> None:
    for kind in ("acg_observations", "acg_stability"):
        for key in await agent_learning_keys(store, kind, agent_id):
            if key not in keep:
                await store.adaptive.delete_document(kind, key)
