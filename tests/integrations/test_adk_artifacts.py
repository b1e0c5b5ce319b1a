"""RelayArtifactService on every backend: the cases of ADK's artifact-service tests
(``tests/unittests/artifacts/``, in-memory rules) written afresh, plus blob deduplication."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("google.adk")

from google.adk.artifacts import artifact_util
from google.adk.errors.input_validation_error import InputValidationError
from google.genai import types

from relaystore.integrations.adk import RelayArtifactService
from relaystore.stores import Store
from tests.conformance.factories import discover

FACTORIES = discover()
APP, USER, SID = "app", "alice", "s1"
SCOPE = {"app_name": APP, "user_id": USER, "session_id": SID}


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    module = FACTORIES[request.param]
    reason = module.unavailable()
    if reason:
        pytest.skip(f"{request.param}: {reason}")
    async with module.fresh(tmp_path) as opened:
        yield opened


@pytest.fixture
def service(store: Store) -> RelayArtifactService:
    return RelayArtifactService(store)


def blob(data: bytes, mime: str = "application/octet-stream") -> types.Part:
    return types.Part(inline_data=types.Blob(data=data, mime_type=mime))


async def test_load_missing_is_none(service: RelayArtifactService) -> None:
    assert await service.load_artifact(filename="nothing", **SCOPE) is None
    assert await service.list_versions(filename="nothing", **SCOPE) == []
    assert await service.get_artifact_version(filename="nothing", **SCOPE) is None
    assert await service.list_artifact_keys(**SCOPE) == []


async def test_version_sequence_load_and_delete(service: RelayArtifactService) -> None:
    parts = [
        blob(bytes(range(256)) * 3, "image/png"),
        types.Part(text="v1 ✓"),
        blob(b"\x00\xff", "application/x"),
    ]
    assert [await service.save_artifact(filename="f.bin", artifact=p, **SCOPE) for p in parts] == [0, 1, 2]
    assert await service.load_artifact(filename="f.bin", **SCOPE) == parts[2]
    for version, part in enumerate(parts):
        assert await service.load_artifact(filename="f.bin", version=version, **SCOPE) == part
    assert await service.load_artifact(filename="f.bin", version=3, **SCOPE) is None
    assert await service.list_versions(filename="f.bin", **SCOPE) == [0, 1, 2]
    described = await service.list_artifact_versions(filename="f.bin", **SCOPE)
    assert [(v.version, v.mime_type) for v in described] == [
        (0, "image/png"),
        (1, "text/plain"),
        (2, "application/x"),
    ]
    assert described[1].canonical_uri.endswith(f"/users/{USER}/sessions/{SID}/artifacts/f.bin/versions/1")
    await service.delete_artifact(filename="f.bin", **SCOPE)
    await service.delete_artifact(filename="f.bin", **SCOPE)  # missing is fine
    assert await service.load_artifact(filename="f.bin", **SCOPE) is None
    assert await service.save_artifact(filename="f.bin", artifact=parts[0], **SCOPE) == 0  # starts again


async def test_scopes_and_listing(service: RelayArtifactService) -> None:
    await service.save_artifact(filename="b.txt", artifact=types.Part(text="b"), **SCOPE)
    await service.save_artifact(filename="dir/a.txt", artifact=types.Part(text="a"), **SCOPE)
    await service.save_artifact(
        filename="user:profile", artifact=types.Part(text="p"), app_name=APP, user_id=USER
    )
    await service.save_artifact(
        filename="other.txt", artifact=types.Part(text="o"), app_name=APP, user_id=USER, session_id="s2"
    )
    await service.save_artifact(
        filename="bob.txt", artifact=types.Part(text="x"), app_name=APP, user_id="bob", session_id=SID
    )
    assert await service.list_artifact_keys(**SCOPE) == ["b.txt", "dir/a.txt", "user:profile"]
    assert await service.list_artifact_keys(app_name=APP, user_id=USER) == ["user:profile"]
    # a user: name is reachable from any session of the user, and without one
    for session_id in (SID, "s2", None):
        got = await service.load_artifact(
            app_name=APP, user_id=USER, session_id=session_id, filename="user:profile"
        )
        assert got == types.Part(text="p")
    assert await service.load_artifact(app_name=APP, user_id=USER, session_id="s2", filename="b.txt") is None


async def test_missing_scope_is_an_error_not_a_fallback(service: RelayArtifactService) -> None:
    with pytest.raises(InputValidationError, match="Session ID must be provided"):
        await service.save_artifact(app_name=APP, user_id=USER, filename="f", artifact=types.Part(text="x"))
    with pytest.raises(InputValidationError):
        await service.load_artifact(app_name=APP, user_id=USER, filename="f")
    for bad in ("user", "user/x", "../up", "/abs", ""):
        with pytest.raises(InputValidationError):
            await service.save_artifact(
                app_name=APP, user_id=USER, session_id=bad, filename="f", artifact=types.Part(text="x")
            )
    with pytest.raises(InputValidationError):
        await service.save_artifact(
            app_name="../x", user_id=USER, session_id=SID, filename="f", artifact=types.Part(text="x")
        )
    with pytest.raises(InputValidationError, match="Not supported"):
        await service.save_artifact(filename="empty", artifact=types.Part(), **SCOPE)
    assert await service.list_artifact_keys(**SCOPE) == []


async def test_binary_parts_are_deduplicated_blobs(service: RelayArtifactService, store: Store) -> None:
    payload = bytes(range(256)) * 1000
    for session_id in ("s1", "s2"):
        for _ in range(3):
            await service.save_artifact(
                app_name=APP, user_id=USER, session_id=session_id, filename="big", artifact=blob(payload)
            )
    await service.save_artifact(
        app_name=APP, user_id="bob", session_id="s9", filename="copy", artifact=blob(payload)
    )
    stored = [b for b in await store.blobs.list() if b.size == len(payload)]
    assert len(stored) == 1  # seven versions, one blob
    assert await service.load_artifact(app_name=APP, user_id="bob", session_id="s9", filename="copy") == blob(
        payload
    )


async def test_metadata_dicts_file_data_and_tombstones(service: RelayArtifactService) -> None:
    await service.save_artifact(
        filename="m",
        artifact={"inlineData": {"data": b"abc", "mimeType": "text/csv"}},
        custom_metadata={"k": [1, "ü"]},
        **SCOPE,
    )
    version = await service.get_artifact_version(filename="m", **SCOPE)
    assert (
        version is not None and version.custom_metadata == {"k": [1, "ü"]} and version.mime_type == "text/csv"
    )
    assert await service.load_artifact(filename="m", **SCOPE) == blob(b"abc", "text/csv")
    external = types.Part(file_data=types.FileData(file_uri="gs://bucket/x.pdf", mime_type="application/pdf"))
    await service.save_artifact(filename="ext", artifact=external, **SCOPE)
    assert await service.load_artifact(filename="ext", **SCOPE) == external
    await service.save_artifact(filename="m", artifact=artifact_util._new_rewind_tombstone(), **SCOPE)
    assert await service.load_artifact(filename="m", **SCOPE) is None
    assert await service.load_artifact(filename="m", version=0, **SCOPE) == blob(b"abc", "text/csv")


async def test_artifact_references_are_followed_within_scope(service: RelayArtifactService) -> None:
    await service.save_artifact(filename="target", artifact=types.Part(text="real"), **SCOPE)
    ref = artifact_util.get_artifact_uri(APP, USER, "target", 0, SID)
    await service.save_artifact(
        filename="ref1", artifact=types.Part(file_data=types.FileData(file_uri=ref)), **SCOPE
    )
    ref2 = artifact_util.get_artifact_uri(APP, USER, "ref1", 0, SID)
    await service.save_artifact(
        filename="ref2", artifact=types.Part(file_data=types.FileData(file_uri=ref2)), **SCOPE
    )
    assert await service.load_artifact(filename="ref2", **SCOPE) == types.Part(text="real")
    escape = artifact_util.get_artifact_uri(APP, "mallory", "target", 0, SID)
    with pytest.raises(InputValidationError, match="same app and user"):
        await service.save_artifact(
            filename="bad", artifact=types.Part(file_data=types.FileData(file_uri=escape)), **SCOPE
        )
    loop = artifact_util.get_artifact_uri(APP, USER, "loop", 0, SID)
    await service.save_artifact(
        filename="loop", artifact=types.Part(file_data=types.FileData(file_uri=loop)), **SCOPE
    )
    with pytest.raises(InputValidationError, match="recursion depth"):
        await service.load_artifact(filename="loop", **SCOPE)


async def test_concurrent_saves_get_distinct_versions(service: RelayArtifactService) -> None:
    versions = await asyncio.gather(
        *(service.save_artifact(filename="c", artifact=types.Part(text=str(n)), **SCOPE) for n in range(8))
    )
    assert sorted(versions) == list(range(8))
    texts = {(await service.load_artifact(filename="c", version=v, **SCOPE)).text for v in range(8)}  # type: ignore[union-attr]
    assert texts == {str(n) for n in range(8)}
