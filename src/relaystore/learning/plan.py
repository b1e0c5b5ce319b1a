"""Tool-parallelism learning: which tools ran concurrently, merged into the ExecutionPlan.

As NeMo Relay's ``ToolParallelismLearner``: each set of tool calls seen running at the same time is
a cohort; each cohort becomes a parallel group with an id derived from its tool names, and every
tool in it gets a (non-explicit) parallel hint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from relaystore.models.adaptive import (
    ExecutionPlan,
    MetadataEnvelope,
    ParallelGroup,
    ParallelHint,
    RunRecord,
)
from relaystore.models.common import timestamp_to_ns

Cohort = tuple[str, ...]


def sha256_hex(data: str | bytes) -> str:
    """NeMo Relay's digest form: ``"sha256:"`` + lowercase hex."""
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def group_id(tool_names: Iterable[str]) -> str:
    """The group id of a cohort, exactly as NeMo Relay derives it.

    NeMo Relay keeps the first 12 characters of ``sha256_hex`` — and that string starts with
    ``"sha256:"`` — so only 5 hex digits (20 bits) remain: ``fetch|search`` → ``fanout:sha256:98257``.
    """
    return "fanout:" + sha256_hex("|".join(tool_names))[:12]


def cohorts(run: RunRecord) -> list[Cohort]:
    """Sorted, de-duplicated cohorts of overlapping completed tool calls.

    Calls are taken by start time (stable). When a call starts, the calls still running (ending
    strictly after its start) plus itself form a cohort, names sorted; repeated names and cohorts
    contained in others are kept, as NeMo Relay does.
    """
    calls = [c for c in run.calls if c.kind == "tool" and c.ended_at is not None]
    timed = sorted(
        ((timestamp_to_ns(c.started_at), timestamp_to_ns(c.ended_at), c.name) for c in calls),  # type: ignore[arg-type]
        key=lambda t: t[0],
    )
    active: list[tuple[int, str]] = []
    found: set[Cohort] = set()
    for start, end, name in timed:
        active = [(e, n) for e, n in active if e > start]
        if active:
            found.add(tuple(sorted([*(n for _, n in active), name])))
        active.append((end, name))
    return sorted(found)


def empty_plan(agent_id: str, run_id: str) -> ExecutionPlan:
    return ExecutionPlan(
        agent_id=agent_id,
        parallel_groups=[],
        metadata_template=MetadataEnvelope(run_id=run_id, agent_id=agent_id, parallel_hints=[]),
    )


def merge_cohorts(
    plan: ExecutionPlan | None, agent_id: str, run_id: str, found: list[Cohort]
) -> ExecutionPlan:
    """Pure: ``plan`` (None = new) with the run's cohorts upserted as groups and hints added.

    Groups are upserted by id and sorted by id; hints are unique per (tool, group) and sorted so;
    the template takes ``agent_id`` and ``run_id`` and keeps its ``extensions``.
    """
    base = plan if plan is not None else empty_plan(agent_id, run_id)
    groups = {g.group_id: g for g in base.parallel_groups}
    hints = {(h.tool_name, h.group_id): h for h in base.metadata_template.parallel_hints}
    for cohort in found:
        gid = group_id(cohort)
        groups[gid] = ParallelGroup(group_id=gid, tool_names=list(cohort))
        for name in dict.fromkeys(cohort):
            hints.setdefault((name, gid), ParallelHint(tool_name=name, group_id=gid, explicit=False))
    template = base.metadata_template.model_copy(
        update={
            "run_id": run_id,
            "agent_id": agent_id,
            "parallel_hints": [hints[k] for k in sorted(hints)],
        }
    )
    return base.model_copy(
        update={
            "agent_id": agent_id,
            "parallel_groups": [groups[k] for k in sorted(groups)],
            "metadata_template": template,
        }
    )


def apply_runs(plan: ExecutionPlan | None, agent_id: str, runs: Iterable[RunRecord]) -> ExecutionPlan | None:
    """Pure: the plan after learning from ``runs`` in order; None if nothing changes a missing plan.

    A run without cohorts leaves the plan untouched (its ``run_id`` does not advance), as NeMo Relay.
    """
    for run in runs:
        found = cohorts(run)
        if found:
            plan = merge_cohorts(plan, agent_id, run.id, found)
    return plan
