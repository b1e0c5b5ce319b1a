"""NeMo Relay documents survive parse-then-serialize as the same JSON value.

Two sources: the stored examples in the shared spec, and documents the real ``nemo-relay`` runtime
writes to Redis while a test drives it (tests/support/nemo_driver.py).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import TypeAdapter

from relaystore.stores.adaptive import ADAPTERS, RUN
from tests.support.nemo_driver import drive

SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "nemo-relay-adaptive.md"


def roundtrip(adapter: TypeAdapter[Any], raw: str | bytes) -> tuple[Any, Any]:
    value = adapter.validate_json(raw)
    return json.loads(adapter.dump_json(value, by_alias=True)), json.loads(raw)


def kind_of(document: Any) -> str | None:
    """Which adaptive document a parsed spec example is, from its top-level shape."""
    if isinstance(document, list):
        return "acg_observations"
    keys = set(document)
    shapes = {
        "plan": {"agent_id", "parallel_groups", "metadata_template"},
        "acg_stability": {"scores", "stable_prefix_length", "total_observations"},
        "trie": {"version", "generated_at", "workflow_name", "root"},
        "accumulators": {"nodes"},
    }
    return next((kind for kind, shape in shapes.items() if shape <= keys), None)


def spec_examples() -> list[tuple[str, str]]:
    """Complete JSON examples from the spec (abridged ones with a bare … are not JSON; skipped)."""
    if not SPEC.exists():
        return []
    found = []
    for block in re.findall(r"```json\n(.*?)\n```", SPEC.read_text(), re.S):
        try:
            document = json.loads(block)
        except json.JSONDecodeError:
            continue
        kind = kind_of(document)
        if kind:
            found.append((kind, block))
    return found


EXAMPLES = spec_examples()


@pytest.mark.skipif(not EXAMPLES, reason="../shared/specs is not beside the checkout")
def test_spec_has_the_complete_examples() -> None:
    assert {kind for kind, _ in EXAMPLES} >= {"plan", "acg_observations", "acg_stability"}


@pytest.mark.parametrize(("kind", "raw"), EXAMPLES, ids=[k for k, _ in EXAMPLES])
def test_spec_example_roundtrips(kind: str, raw: str) -> None:
    written, original = roundtrip(ADAPTERS[kind], raw)
    assert written == original


@pytest.fixture(scope="module")
def runtime_documents(redis_url: str) -> list[tuple[str, bytes]]:
    """Every value the real runtime wrote for a demo and a varied workload, keyed by Redis key."""
    prefix = f"rt-models:{uuid.uuid4().hex}:"
    drive(redis_url, prefix, "demo-agent", 3, workload="demo")
    drive(redis_url, prefix, "team:alpha/agent-1", 12, workload="varied", seed=7)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}*", count=1000))
        docs = [
            (k[len(prefix) :], client.get(k)) for k in keys if ":runs_index:" not in f":{k[len(prefix) :]}"
        ]
    finally:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.unlink(key)
    return [(k, v) for k, v in docs if v is not None]


def test_runtime_wrote_every_kind(runtime_documents: list[tuple[str, bytes]]) -> None:
    kinds = {key.split(":", 1)[0] for key, _ in runtime_documents}
    assert kinds == {"runs", "plan", "trie", "accumulators", "acg_observations", "acg_stability"}


def test_runtime_documents_roundtrip(runtime_documents: list[tuple[str, bytes]]) -> None:
    mismatched = []
    for key, raw in runtime_documents:
        kind = key.split(":", 1)[0]
        written, original = roundtrip(RUN if kind == "runs" else ADAPTERS[kind], raw)
        if written != original:
            mismatched.append(key)
    assert not mismatched
    assert len(runtime_documents) > 20


def test_runtime_runs_keep_nanosecond_timestamps(runtime_documents: list[tuple[str, bytes]]) -> None:
    raw = next(v for k, v in runtime_documents if k.startswith("runs:"))
    run = RUN.validate_json(raw)
    assert run.started_at == json.loads(raw)["started_at"]
    assert re.search(r"\.\d{9}Z$", run.calls[0].started_at)
    assert run.calls[0].annotated_request == json.loads(raw)["calls"][0]["annotated_request"]
