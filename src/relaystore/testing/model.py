"""A plain-Python model of the three contracts, for the stateful conformance test.

It holds JSON values (dicts) rather than models, uses none of relaystore's store code, and raises
the same :mod:`relaystore.errors` classes the contracts promise. Positions are a private counter
that increases with every write, like a backend's ``seq``; callers compare orders, not numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from relaystore.errors import (
    CheckpointNotFound,
    Conflict,
    InvalidInput,
    OutputNotFound,
    ThreadNotFound,
)

ANY_HEAD = object()  # "no compare-and-set"
AGENT_KINDS = ("plan", "trie", "accumulators")
Json = dict[str, Any]


class Model:
    def __init__(self) -> None:
        self._seq = itertools.count(1)
        # thread -> checkpoint id -> (seq, metadata json, state); dicts keep save order
        self.threads: dict[str, dict[str, tuple[int, Json, bytes]]] = {}
        self.outputs: dict[str, Json] = {}  # ref -> record json (with "seq"), in append order
        self.runs: dict[str, dict[str, tuple[int, Json]]] = {}  # agent -> run id -> (seq, run json)
        self.docs: dict[str, dict[str, Any]] = {}  # kind -> key -> document json

    # ------------------------------------------------------------------ checkpoints

    def head(self, thread: str) -> str | None:
        ids = list(self.threads.get(thread, {}))
        return ids[-1] if ids else None

    def save(self, thread: str, metadata: Json, state: bytes, expected_head: Any = ANY_HEAD) -> str:
        if metadata["thread_id"] != thread:
            raise InvalidInput("thread mismatch")
        row = {**metadata, "state_size": len(state)}
        stored = self.threads.get(thread, {}).get(metadata["id"])
        if stored is not None and stored[1:] == (row, state):
            return str(metadata["id"])  # a retry of a save that landed: AlreadyApplied
        if expected_head is not ANY_HEAD and expected_head != self.head(thread):
            raise Conflict("stale head")
        checkpoints = self.threads.setdefault(thread, {})
        if metadata["id"] in checkpoints:
            raise Conflict("duplicate checkpoint id")
        checkpoints[metadata["id"]] = (next(self._seq), row, state)
        return str(metadata["id"])

    def load(self, thread: str, checkpoint_id: str) -> tuple[Json, bytes]:
        checkpoints = self.threads.get(thread)
        if not checkpoints:
            raise ThreadNotFound(thread)
        if checkpoint_id not in checkpoints:
            raise CheckpointNotFound(checkpoint_id)
        _, metadata, state = checkpoints[checkpoint_id]
        return metadata, state

    def load_latest(self, thread: str) -> tuple[Json, bytes]:
        head = self.head(thread)
        if head is None:
            raise ThreadNotFound(thread)
        return self.load(thread, head)

    def checkpoint_rows(self, thread: str, newest_first: bool = False) -> list[tuple[int, Json]]:
        rows = [(seq, metadata) for seq, metadata, _ in self.threads.get(thread, {}).values()]
        return rows[::-1] if newest_first else rows

    def delete(self, thread: str, checkpoint_id: str) -> bool:
        checkpoints = self.threads.get(thread, {})
        existed = checkpoints.pop(checkpoint_id, None) is not None
        self._forget_empty(thread)
        return existed

    def delete_thread(self, thread: str) -> int:
        return len(self.threads.pop(thread, {}))

    def count(self, thread: str) -> int:
        return len(self.threads.get(thread, {}))

    def thread_ids(self) -> list[str]:
        return sorted(t for t, checkpoints in self.threads.items() if checkpoints)

    def prune(self, thread: str, keep: int) -> int:
        if keep < 0:
            raise InvalidInput("keep")
        checkpoints = self.threads.get(thread, {})
        doomed = list(checkpoints)[: max(0, len(checkpoints) - keep)]
        for checkpoint_id in doomed:
            del checkpoints[checkpoint_id]
        self._forget_empty(thread)
        return len(doomed)

    def _forget_empty(self, thread: str) -> None:
        if not self.threads.get(thread, True):
            del self.threads[thread]

    # ------------------------------------------------------------------ outputs

    def append(self, ref: str, task: str, attempt: int, agent: str, event: Json, parents: list[str]) -> None:
        if ref in self.outputs:
            raise Conflict(ref)
        self.outputs[ref] = {
            "id": ref,
            "task_id": task,
            "attempt": attempt,
            "producer_agent": agent,
            "event": event,
            "parent_refs": list(parents),
            "seq": next(self._seq),
        }

    def get(self, ref: str) -> Json:
        if ref not in self.outputs:
            raise OutputNotFound(ref)
        return self.outputs[ref]

    def output_rows(
        self, task: str | None = None, attempt: int | None = None, agent: str | None = None
    ) -> list[Json]:
        return [
            r
            for r in self.outputs.values()
            if (task is None or r["task_id"] == task)
            and (attempt is None or r["attempt"] == attempt)
            and (agent is None or r["producer_agent"] == agent)
        ]

    def latest(self, agent: str) -> Json:
        rows = self.output_rows(agent=agent)
        if not rows:
            raise OutputNotFound(agent)
        return rows[-1]

    def latest_in_run(self, task: str, attempt: int, agent: str) -> Json:
        rows = self.output_rows(task, attempt, agent)
        if not rows:
            raise OutputNotFound(f"{task}/{attempt}/{agent}")
        return rows[-1]

    def ancestors(self, ref: str, max_depth: int | None) -> list[Json]:
        return self._walk(
            ref, max_depth, lambda r: [self.outputs[p] for p in r["parent_refs"] if p in self.outputs]
        )

    def descendants(self, ref: str, max_depth: int | None) -> list[Json]:
        return self._walk(
            ref, max_depth, lambda r: [c for c in self.outputs.values() if r["id"] in c["parent_refs"]]
        )

    def _walk(self, ref: str, max_depth: int | None, step: Callable[[Json], list[Json]]) -> list[Json]:
        """Breadth-first: each level sorted by store order, every record once, the start excluded."""
        seen = {ref}
        frontier = [self.get(ref)]
        found: list[Json] = []
        depth = 0
        while frontier and (max_depth is None or depth < max_depth):
            level: dict[str, Json] = {}
            for record in frontier:
                for nxt in step(record):
                    if nxt["id"] not in seen:
                        level[nxt["id"]] = nxt
            frontier = sorted(level.values(), key=lambda r: r["seq"])
            seen.update(level)
            found += frontier
            depth += 1
        return found

    # ------------------------------------------------------------------ adaptive

    def store_run(self, agent: str, run: Json) -> None:
        runs = self.runs.setdefault(agent, {})
        if run["id"] in runs:
            raise Conflict(run["id"])
        runs[run["id"]] = (next(self._seq), run)

    def run_rows(self, agent: str) -> list[Json]:
        return [run for _, run in self.runs.get(agent, {}).values()]

    def prune_runs(self, agent: str, keep: int) -> int:
        runs = self.runs.get(agent, {})
        doomed = list(runs)[: max(0, len(runs) - keep)]
        for run_id in doomed:
            del runs[run_id]
        if not runs:
            self.runs.pop(agent, None)
        return len(doomed)

    def agents(self) -> list[str]:
        agents = {a for a, runs in self.runs.items() if runs}
        for kind in AGENT_KINDS:
            agents.update(self.docs.get(kind, {}))
        return sorted(agents)

    def put_doc(self, kind: str, key: str, value: Any) -> None:
        self.docs.setdefault(kind, {})[key] = value

    def get_doc(self, kind: str, key: str) -> Any:
        return self.docs.get(kind, {}).get(key)

    def delete_doc(self, kind: str, key: str) -> bool:
        return self.docs.get(kind, {}).pop(key, None) is not None

    def keys(self, kind: str) -> list[str]:
        return sorted(self.docs.get(kind, {}))

    def update_doc(self, kind: str, key: str, fn: Callable[[Any], Any]) -> Any:
        """``fn(current)``; None leaves the document; an exception leaves it too and propagates."""
        new = fn(self.get_doc(kind, key))
        if new is not None:
            self.put_doc(kind, key, new)
        return self.get_doc(kind, key)
