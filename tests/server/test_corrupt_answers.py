"""A corrupt record over HTTP: a 500 with the stable code ``corrupt_record``, a fixed reason, and
neither the record's text nor a server path in the body; listings skip it and say so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

import relaystore
from relaystore.errors import CorruptRecord
from relaystore.models import RunRecord
from relaystore.testing import docs
from relaystore.testing.damage import HOWS
from tests.support.relay_server import start_server
from tests.support.sqlite_corrupt import corrupt_file

SECRET = "the-secret-recipe-is-42"
REASONS = {"not UTF-8 text", "not JSON", "not the expected record"}


def _run(run_id: str) -> RunRecord:
    run = docs.run_record("agent", run_id)
    return run.model_copy(update={"calls": [c.model_copy(update={"name": SECRET}) for c in run.calls]})


@pytest.mark.parametrize("how", HOWS)
def test_a_corrupt_record_is_a_500_with_a_stable_code_and_no_record_text(tmp_path: Path, how: str) -> None:
    db = tmp_path / "store.db"
    server = start_server(f"sqlite:///{db}", tmp_path)
    try:
        runs = [_run(docs.uuid7()) for _ in range(3)]

        async def fill() -> None:
            async with relaystore.connect(server.url, token=server.admin_token) as store:
                for run in runs:
                    await store.adaptive.store_run(run)
                await store.adaptive.store_plan(docs.execution_plan("agent", tools=(SECRET, "b")))

        asyncio.run(fill())
        corrupt_file(db, "document", ("plan", "agent"), how)
        corrupt_file(db, "run", ("agent", runs[1].id), how)
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        answer = httpx.get(f"{server.url}/v1/adaptive/docs/plan", params={"key": "agent"}, headers=headers)
        listing = httpx.get(f"{server.url}/v1/adaptive/runs", params={"agent_id": "agent"}, headers=headers)

        async def through_the_client() -> None:
            async with relaystore.connect(server.url, token=server.admin_token) as store:
                with pytest.raises(CorruptRecord) as info:
                    await store.adaptive.load_plan("agent")
                assert info.value.reason in REASONS
                assert [r.id for r in await store.adaptive.list_runs("agent")] == [runs[0].id, runs[2].id]

        asyncio.run(through_the_client())
    finally:
        server.stop()
    assert answer.status_code == 500, answer.text
    body = answer.json()
    assert (body["error"], body["code"]) == ("CorruptRecord", "corrupt_record")
    assert body["reason"] in REASONS
    assert SECRET not in answer.text and str(tmp_path) not in answer.text
    assert listing.status_code == 200
    page = listing.json()
    assert [r["id"] for r in page["items"]] == [runs[0].id, runs[2].id]
    assert len(page["corrupt"]) == 1 and page["corrupt"][0]["reason"] in REASONS
    assert SECRET in listing.text  # the good runs are all there
    assert listing.text.count(SECRET) == 2 * len(runs[0].calls)  # and nothing of the bad one


def test_every_error_answer_has_a_code(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path}/s.db", tmp_path)
    try:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        missing = httpx.get(f"{server.url}/v1/checkpoints/latest", params={"thread_id": "x"}, headers=headers)
    finally:
        server.stop()
    assert missing.status_code == 404
    assert (missing.json()["error"], missing.json()["code"]) == ("ThreadNotFound", "thread_not_found")


def test_an_untrusted_counter_over_http_names_the_repair(tmp_path: Path) -> None:
    root = tmp_path / "files"
    server = start_server(f"file://{root}", tmp_path)
    try:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        body = {
            "task_id": "t",
            "attempt": 0,
            "producer_agent": "p",
            "event": {"type": "progress", "stage": "s"},
        }
        assert httpx.post(f"{server.url}/v1/outputs", json=body, headers=headers).status_code == 201
        counter = root / "seq"
        counter.write_text(counter.read_text().replace("1", "0", 1))
        refused = httpx.post(f"{server.url}/v1/outputs", json=body, headers=headers)
    finally:
        server.stop()
    assert refused.status_code == 500 and refused.json()["code"] == "corrupt_record"
    assert "relaystore doctor --repair" in refused.json()["reason"]
    assert str(tmp_path) not in refused.text
