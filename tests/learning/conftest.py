"""What the real NeMo Relay runtime wrote to Redis, read back raw (no relaystore Redis backend)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from relaystore.models.adaptive import RunRecord
from relaystore.stores.adaptive import ADAPTERS, DOC_KINDS, RUN
from tests.support.nemo_driver import drive

redis = pytest.importorskip("redis")

VARIED_RUNS = 30
OBSERVATION_WINDOW = 8  # the driver's AcgConfig


@dataclass
class RuntimeOutput:
    """Runs (in store order) and every learned document NeMo Relay stored, keyed by (kind, key)."""

    agent: str
    runs: list[RunRecord]
    docs: dict[tuple[str, str], Any] = field(default_factory=dict)

    def doc(self, kind: str, key: str | None = None) -> Any:
        return self.docs[(kind, key or self.agent)]

    def keys(self, kind: str) -> set[str]:
        return {key for k, key in self.docs if k == kind}


def read_runtime_output(client: Any, prefix: str, agent: str) -> RuntimeOutput:
    ids = [i.decode() for i in client.lrange(f"{prefix}runs_index:{agent}", 0, -1)]
    out = RuntimeOutput(agent, [RUN.validate_json(client.get(f"{prefix}runs:{agent}:{i}")) for i in ids])
    for kind in DOC_KINDS:
        head = f"{prefix}{kind}:"
        for raw in client.scan_iter(match=f"{head}*", count=1000):
            out.docs[(kind, raw.decode()[len(head) :])] = ADAPTERS[kind].validate_json(client.get(raw))
    return out


def _driven(redis_url: str, agent: str, runs: int, workload: str) -> Iterator[RuntimeOutput]:
    prefix = f"learntest:{uuid.uuid4()}:"
    client = redis.Redis.from_url(redis_url)
    try:
        drive(redis_url, prefix, agent, runs, workload=workload)
        yield read_runtime_output(client, prefix, agent)
    finally:
        doomed = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(doomed), 500):
            client.delete(*doomed[start : start + 500])
        client.close()


@pytest.fixture(scope="session")
def varied(redis_url: str) -> Iterator[RuntimeOutput]:
    """30 runs of the driver's varied workload (3 LLM names, parallel and sequential tools)."""
    yield from _driven(redis_url, "varied-agent", VARIED_RUNS, "varied")


@pytest.fixture(scope="session")
def demo(redis_url: str) -> Iterator[RuntimeOutput]:
    """3 runs of the spec's demo shape: planner, two parallel tools, writer."""
    yield from _driven(redis_url, "demo-agent", 3, "demo")
