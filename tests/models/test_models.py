"""Model rules that the wire formats depend on."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import TypeAdapter, ValidationError

from relaystore.models import (
    CallRecord,
    CheckpointMetadata,
    Digest,
    OutputRecord,
    OutputRef,
    RunRecord,
    StabilityAnalysisResult,
    timestamp_to_ns,
)
from relaystore.models.outputs import OutputEvent

RUN = {
    "id": "01a1fd9c-2b68-7723-87b9-5954bcd2a69e",
    "agent_id": "demo-agent",
    "calls": [{"kind": "tool", "name": "search", "started_at": "2026-11-21T10:17:12.881105092Z"}],
    "started_at": "2026-11-21T10:17:12.808147480Z",
}


def test_omitted_optionals_stay_omitted() -> None:
    dumped = json.loads(RunRecord.model_validate(RUN).to_json())
    assert dumped == RUN
    assert "ended_at" not in dumped and "output_tokens" not in dumped["calls"][0]


def test_unknown_fields_survive() -> None:
    call = {**RUN["calls"][0], "future_field": {"b": [1, 2.5]}, "annotated_request": {"z": 1, "a": None}}
    parsed = CallRecord.model_validate(call)
    assert json.loads(parsed.to_json()) == call


def test_nullable_optionals_are_written_as_null() -> None:
    result = StabilityAnalysisResult(scores=[], stable_prefix_length=0, total_observations=0)
    assert json.loads(result.to_json()) == {"scores": [], "stable_prefix_length": 0, "total_observations": 0}


def test_digest_null_reads_as_zero_and_nan_writes_as_zero() -> None:
    digest = Digest.model_validate(
        {"centroids": [], "count": 0.0, "max": None, "max_size": 100, "min": None, "sum": 0.0}
    )
    assert digest.max == 0.0 and digest.min == 0.0
    assert json.loads(Digest(min=math.nan, max=math.nan).to_json())["min"] == 0.0


@pytest.mark.parametrize("bad", ["2026-11-21 10:17:12Z", "2026-11-21T10:17:12.1234567891Z", "yesterday"])
def test_timestamps_must_be_rfc3339(bad: str) -> None:
    with pytest.raises(ValidationError):
        RunRecord.model_validate({**RUN, "started_at": bad})


def test_timestamp_to_ns_is_exact() -> None:
    assert timestamp_to_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert timestamp_to_ns("1970-01-01T01:00:00+01:00") == 0


def test_uuid_must_be_canonical() -> None:
    with pytest.raises(ValidationError):
        RunRecord.model_validate({**RUN, "id": RUN["id"].upper()})


def test_output_refs_carry_128_bits_and_accept_legacy() -> None:
    ref = OutputRef.generate()
    assert len(ref) == 4 + 32 and ref.startswith("out-")
    assert OutputRef("out-0123456789") == "out-0123456789"  # mlua-swarm's 40-bit form
    for bad in ["out-XYZ", "0123456789", "out-", "out-../../etc"]:
        with pytest.raises(ValueError):
            OutputRef(bad)


def test_output_events_are_tagged() -> None:
    adapter: TypeAdapter[object] = TypeAdapter(OutputEvent)
    final = adapter.validate_python(
        {"type": "final", "content": {"kind": "inline", "value": [1]}, "ok": True}
    )
    assert json.loads(adapter.dump_json(final)) == {
        "type": "final",
        "content": {"kind": "inline", "value": [1]},
        "ok": True,
    }
    progress = adapter.validate_python({"type": "progress", "stage": "x"})
    assert json.loads(adapter.dump_json(progress)) == {"type": "progress", "stage": "x", "note": None}
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "final", "content": {"kind": "ftp", "path": "x"}, "ok": True})


def test_output_record_serializes_ref_as_bare_string() -> None:
    record = OutputRecord(
        id=OutputRef.generate(),
        task_id="ST-1",
        attempt=1,
        producer_agent="p",
        event={"type": "progress", "stage": "s"},
        parent_refs=["out-0123456789"],
        created_at="2026-11-21T10:17:12Z",
    )
    dumped = json.loads(record.model_dump_json())
    assert dumped["parent_refs"] == ["out-0123456789"] and isinstance(dumped["id"], str)


def test_checkpoint_metadata_builders() -> None:
    md = CheckpointMetadata.new("t", 3).with_parent("p").with_label("l").with_tag("a").with_custom("k", "v")
    assert (md.thread_id, md.step, md.parent_id, md.label, md.tags, md.custom) == (
        "t",
        3,
        "p",
        "l",
        ["a"],
        {"k": "v"},
    )
    assert len(md.id) == 36 and md.created_at > 1_700_000_000


def test_ns_to_rfc3339_uses_chrono_fraction_widths_and_round_trips() -> None:
    from relaystore.models import ns_to_rfc3339

    base = 1_795_256_232 * 1_000_000_000
    assert ns_to_rfc3339(base) == "2026-11-21T10:17:12Z"
    assert ns_to_rfc3339(base + 5_000_000) == "2026-11-21T10:17:12.005Z"
    assert ns_to_rfc3339(base + 5_000, "+00:00") == "2026-11-21T10:17:12.000005+00:00"
    for ns in (base, base + 1, base + 346_547_619, base + 987_253_691):
        assert timestamp_to_ns(ns_to_rfc3339(ns)) == ns
