"""A call that raised but had committed ("raised but applied", issue 15): its retry tells.

A proxy in front of PostgreSQL (or of ``relaystore serve``) lets a compare-and-set save through,
lets it commit, and drops the connection before the answer: the save raises BackendUnavailable
although it is stored. Retried with the same metadata and state, it answers AlreadyApplied (a
``str``, the id); retried with other content under that id, it is a Conflict.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import relaystore
from relaystore import AlreadyApplied
from relaystore.errors import BackendUnavailable, Conflict
from relaystore.models import CheckpointMetadata
from tests.reliability.conftest import fresh_url
from tests.support.dropping_proxy import DroppingProxy, dropping_proxy
from tests.support.relay_server import start_server


def through(url: str, proxy: DroppingProxy) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{proxy.port}")))


async def lose_the_answer_then_retry(
    store: relaystore.Store, direct: relaystore.Store, proxy: DroppingProxy, trigger: bytes
) -> None:
    head = await store.checkpoints.save("t", CheckpointMetadata(id="c0", thread_id="t"), b"zero")
    metadata = CheckpointMetadata(id="c1", thread_id="t", parent_id=head)
    proxy.arm(trigger)
    with pytest.raises(BackendUnavailable):
        await store.checkpoints.save("t", metadata, b"one", expected_head=head)
    assert proxy.dropped == 1
    assert (await direct.checkpoints.load("t", "c1")).state == b"one"  # raised, yet applied

    retried = await store.checkpoints.save("t", metadata, b"one", expected_head=head)
    assert retried == "c1" and isinstance(retried, AlreadyApplied)
    with pytest.raises(Conflict):  # the same id with other content is not a retry
        await store.checkpoints.save("t", metadata, b"other", expected_head=head)
    assert await direct.checkpoints.count("t") == 2
    fresh = await store.checkpoints.save(
        "t", CheckpointMetadata(id="c2", thread_id="t"), b"two", expected_head="c1"
    )
    assert not isinstance(fresh, AlreadyApplied)


@pytest.mark.timeout(120)
async def test_a_postgres_save_that_raised_after_its_commit_is_told_by_its_retry(tmp_path: Path) -> None:
    async with fresh_url("postgres", tmp_path) as url, dropping_proxy(urlsplit(url).port or 5432) as proxy:
        store = relaystore.connect(through(url, proxy), timeout=5)
        async with store as store_, relaystore.connect(url) as direct:
            await lose_the_answer_then_retry(store_, direct, proxy, b"COMMIT")


@pytest.mark.timeout(120)
async def test_an_http_save_whose_answer_was_lost_is_told_by_its_retry(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'served.db'}", tmp_path)
    try:
        async with dropping_proxy(urlsplit(server.url).port or 80) as proxy:
            store = relaystore.connect(through(server.url, proxy), token=server.admin_token, timeout=5)
            async with store as store_, relaystore.connect(server.url, token=server.admin_token) as direct:
                await lose_the_answer_then_retry(store_, direct, proxy, b"POST /v1/checkpoints")
    finally:
        server.stop()


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
async def test_a_repeated_save_is_already_applied_and_other_content_conflicts(
    tmp_path: Path, scheme: str
) -> None:
    async with fresh_url(scheme, tmp_path) as url, relaystore.connect(url) as store:
        metadata = CheckpointMetadata(id="c", thread_id="t", label="x")
        assert not isinstance(
            await store.checkpoints.save("t", metadata, b"s", expected_head=None), AlreadyApplied
        )
        again = await store.checkpoints.save(
            "t", metadata, b"s", expected_head=None
        )  # stale head, same write
        assert isinstance(again, AlreadyApplied)
        again_plain = await store.checkpoints.save("t", metadata, b"s", attachments=None)
        assert isinstance(again_plain, AlreadyApplied)
        with pytest.raises(Conflict):
            await store.checkpoints.save("t", metadata.model_copy(update={"label": "y"}), b"s")
        with pytest.raises(Conflict):
            await store.checkpoints.save("t", metadata, b"other")
        assert await store.checkpoints.count("t") == 1
