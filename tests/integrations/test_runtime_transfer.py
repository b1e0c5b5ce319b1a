"""``relaystore export`` / ``import`` carry the Agents and ADK layouts whole: session items,
events, session/app/user state (attachments) and artifact bytes (blobs)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("agents")
pytest.importorskip("google.adk")

from google.adk.events import Event, EventActions
from google.genai import types

from relaystore.cli.transfer import export_to, import_from
from relaystore.integrations.adk import RelayArtifactService, RelaySessionService
from relaystore.integrations.openai_agents import RelaySession


async def test_export_then_import_keeps_every_runtime_record(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/target.db"
    async with RelaySession("chat", source) as chat:
        await chat.add_items([{"role": "user", "content": "héllo"}])
    sessions, artifacts = RelaySessionService(source), RelayArtifactService(source)
    session = await sessions.create_session(app_name="a", user_id="u", session_id="s", state={"app:x": 1})
    await sessions.append_event(
        session, Event(author="u", actions=EventActions(state_delta={"k": "v", "user:y": 2}))
    )
    image = types.Part(inline_data=types.Blob(data=b"\x89PNG\x00\xff", mime_type="image/png"))
    await artifacts.save_artifact(app_name="a", user_id="u", session_id="s", filename="img", artifact=image)
    await sessions.close()
    await artifacts.close()

    dump = io.StringIO()
    exported = await export_to(source, dump)
    assert exported["counts"]["attachment"] >= 3 and exported["counts"]["blob"] == 1
    lines = [line.encode() for line in dump.getvalue().splitlines()]
    imported = await import_from(target, lines, False, None)
    assert imported["counts"] == exported["counts"]

    async with RelaySession("chat", target) as chat:
        assert await chat.get_items() == [{"role": "user", "content": "héllo"}]
    sessions, artifacts = RelaySessionService(target), RelayArtifactService(target)
    moved = await sessions.get_session(app_name="a", user_id="u", session_id="s")
    assert moved is not None and moved.state == {"app:x": 1, "user:y": 2, "k": "v"} and len(moved.events) == 1
    assert await artifacts.load_artifact(app_name="a", user_id="u", session_id="s", filename="img") == image
    await sessions.close()
    await artifacts.close()
