"""RelaySessionService on every backend: the cases of ADK's session-service contract tests
(``tests/unittests/sessions/test_session_service.py``) plus DatabaseSessionService's stale-writer
cases, written afresh."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("google.adk")

from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event, EventActions
from google.adk.events.event_actions import EventCompaction
from google.adk.sessions import Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from relaystore.errors import InvalidInput
from relaystore.integrations.adk import RelaySessionService
from relaystore.stores import Store
from tests.conformance.factories import discover

FACTORIES = discover()
APP, USER = "my_app", "alice"


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    module = FACTORIES[request.param]
    reason = module.unavailable()
    if reason:
        pytest.skip(f"{request.param}: {reason}")
    async with module.fresh(tmp_path) as opened:
        yield opened


@pytest.fixture
def service(store: Store) -> RelaySessionService:
    return RelaySessionService(store)


def event(author: str = "user", *, delta: dict | None = None, ts: float | None = None, **fields) -> Event:  # type: ignore[no-untyped-def,type-arg]
    made = Event(author=author, invocation_id="inv", actions=EventActions(state_delta=delta or {}), **fields)
    if ts is not None:
        made.timestamp = ts
    return made


async def test_missing_session_is_none(service: RelaySessionService) -> None:
    assert await service.get_session(app_name=APP, user_id=USER, session_id="nope") is None


async def test_create_get_and_duplicate(service: RelaySessionService) -> None:
    created = await service.create_session(app_name=APP, user_id=USER, state={"k": "v"}, session_id="s1")
    assert (created.id, created.app_name, created.user_id, created.state, created.events) == (
        "s1",
        APP,
        USER,
        {"k": "v"},
        [],
    )
    got = await service.get_session(app_name=APP, user_id=USER, session_id="s1")
    assert got is not None
    assert got.state == {"k": "v"} and got.last_update_time == pytest.approx(created.last_update_time)
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=APP, user_id=USER, session_id="s1")
    generated = await service.create_session(app_name=APP, user_id=USER)
    assert len(generated.id) == 36
    # the key is (app, user, id): the wrong user sees nothing, and may create the same id
    assert await service.get_session(app_name=APP, user_id="bob", session_id="s1") is None
    await service.create_session(app_name=APP, user_id="bob", session_id="s1")


async def test_state_scopes(service: RelaySessionService) -> None:
    first = await service.create_session(
        app_name=APP,
        user_id=USER,
        session_id="a1",
        state={"app:theme": "dark", "user:lang": "fr", "own": 1, "temp:t": 9},
    )
    assert first.state == {"app:theme": "dark", "user:lang": "fr", "own": 1}
    second = await service.create_session(app_name=APP, user_id=USER, session_id="a2")
    other = await service.create_session(app_name=APP, user_id="bob", session_id="b1")
    assert second.state == {"app:theme": "dark", "user:lang": "fr"}  # app and user shared
    assert other.state == {"app:theme": "dark"}  # user state is alice's only
    await service.append_event(other, event(delta={"app:theme": "light", "user:lang": "de", "own": 2}))
    again = await service.get_session(app_name=APP, user_id=USER, session_id="a1")
    assert again is not None and again.state == {"app:theme": "light", "user:lang": "fr", "own": 1}
    assert await service.get_user_state(app_name=APP, user_id=USER) == {"lang": "fr"}
    assert await service.get_user_state(app_name=APP, user_id="bob") == {"lang": "de"}
    assert await service.get_user_state(app_name=APP, user_id="nobody") == {}


async def test_temp_state_is_never_stored(service: RelaySessionService) -> None:
    session = await service.create_session(app_name=APP, user_id=USER, session_id="t")
    await service.append_event(session, event(delta={"temp:scratch": 1, "kept": 2}))
    await service.append_event(session, event(delta={"temp:more": 3}))
    assert session.state["temp:scratch"] == 1 and session.state["temp:more"] == 3  # visible in memory
    stored = await service.get_session(app_name=APP, user_id=USER, session_id="t")
    assert stored is not None and stored.state == {"kept": 2}
    assert all("temp:" not in k for e in stored.events for k in e.actions.state_delta)


async def test_events_round_trip_completely(service: RelaySessionService) -> None:
    session = await service.create_session(app_name=APP, user_id=USER, session_id="full")
    rich = event(
        "agent",
        delta={"x": [1, {"y": "ü"}]},
        content=types.Content(
            role="model",
            parts=[
                types.Part(text="hi 😊"),
                types.Part(inline_data=types.Blob(data=b"\x00\x89PNG\xff", mime_type="image/png")),
            ],
        ),
        grounding_metadata=types.GroundingMetadata(
            search_entry_point=types.SearchEntryPoint(sdk_blob=b"\x01\x02")
        ),
        branch="root.child",
        turn_complete=True,
        long_running_tool_ids={"tool-1"},
        error_code="E1",
        custom_metadata={"k": "v"},
    )
    rich.actions.artifact_delta = {"f.txt": 2}
    await service.append_event(session, rich)
    stored = await service.get_session(app_name=APP, user_id=USER, session_id="full")
    assert stored is not None
    assert stored.events == [rich]
    assert stored == session  # state, events, times, ids


async def test_update_time_is_the_event_timestamp_and_partials_are_skipped(
    service: RelaySessionService,
) -> None:
    session = await service.create_session(app_name=APP, user_id=USER, session_id="u")
    stamped = event(ts=2_000_000_000.25)
    await service.append_event(session, stamped)
    assert session.last_update_time == 2_000_000_000.25
    chunk = event(partial=True)
    assert await service.append_event(session, chunk) is chunk
    stored = await service.get_session(app_name=APP, user_id=USER, session_id="u")
    assert stored is not None and [e.id for e in stored.events] == [stamped.id]
    assert stored.last_update_time == 2_000_000_000.25


async def test_get_session_config(service: RelaySessionService) -> None:
    session = await service.create_session(app_name=APP, user_id=USER, session_id="cfg")
    events = [event(ts=1000.0 + n) for n in range(5)]
    for made in events:
        await service.append_event(session, made)

    async def ids(**config: object) -> list[str]:
        got = await service.get_session(
            app_name=APP,
            user_id=USER,
            session_id="cfg",
            config=GetSessionConfig(**config),  # type: ignore[arg-type]
        )
        assert got is not None
        return [e.id for e in got.events]

    every = [e.id for e in events]
    assert await ids(num_recent_events=2) == every[-2:]
    assert await ids(num_recent_events=0) == []
    assert await ids(num_recent_events=50) == every
    assert await ids(after_timestamp=1002.0) == every[2:]
    assert await ids(after_timestamp=1001.5, num_recent_events=2) == every[-2:]
    assert await ids(after_timestamp=1003.0, num_recent_events=9) == every[3:]
    with pytest.raises(ValueError):
        GetSessionConfig(num_recent_events=-1)


async def test_list_sessions_order_state_and_users(service: RelaySessionService) -> None:
    late = await service.create_session(app_name=APP, user_id=USER, session_id="late", state={"user:u": 1})
    early = await service.create_session(app_name=APP, user_id=USER, session_id="early")
    bobs = await service.create_session(app_name=APP, user_id="bob", session_id="b")
    await service.create_session(app_name="other_app", user_id=USER, session_id="x")
    await service.append_event(late, event(ts=3000.0))
    await service.append_event(early, event(ts=1000.0))
    await service.append_event(bobs, event(ts=2000.0))
    mine = (await service.list_sessions(app_name=APP, user_id=USER)).sessions
    assert [s.id for s in mine] == ["early", "late"]
    assert all(s.events == [] for s in mine) and mine[0].state == {"user:u": 1}
    everyone = (await service.list_sessions(app_name=APP)).sessions
    assert [(s.user_id, s.id) for s in everyone] == [(USER, "early"), ("bob", "b"), (USER, "late")]
    assert (await service.list_sessions(app_name="empty")).sessions == []


async def test_delete_session_keeps_shared_state(service: RelaySessionService) -> None:
    session = await service.create_session(
        app_name=APP, user_id=USER, session_id="d", state={"app:a": 1, "user:b": 2}
    )
    await service.append_event(session, event())
    await service.delete_session(app_name=APP, user_id=USER, session_id="d")
    await service.delete_session(app_name=APP, user_id=USER, session_id="d")  # idempotent
    assert await service.get_session(app_name=APP, user_id=USER, session_id="d") is None
    fresh = await service.create_session(app_name=APP, user_id=USER, session_id="d")
    assert fresh.state == {"app:a": 1, "user:b": 2} and fresh.events == []


async def test_a_stale_append_raises_and_writes_nothing(service: RelaySessionService) -> None:
    await service.create_session(app_name=APP, user_id=USER, session_id="st")
    one = await service.get_session(app_name=APP, user_id=USER, session_id="st")
    two = await service.get_session(app_name=APP, user_id=USER, session_id="st")
    assert one is not None and two is not None
    await service.append_event(one, event(delta={"who": "one"}))
    with pytest.raises(ValueError, match="modified in storage") as raised:
        await service.append_event(two, event(delta={"who": "two"}))
    assert type(raised.value).__name__ == "StaleSessionError"
    stored = await service.get_session(app_name=APP, user_id=USER, session_id="st")
    assert stored is not None and stored.state == {"who": "one"} and len(stored.events) == 1
    await service.append_event(one, event())  # the up-to-date copy goes on
    # a marker-less copy that is behind storage is stale too
    behind = Session(id="st", app_name=APP, user_id=USER, last_update_time=0.0)
    with pytest.raises(ValueError, match="modified in storage"):
        await service.append_event(behind, event())


async def test_concurrent_stale_writers_exactly_one_wins(service: RelaySessionService) -> None:
    await service.create_session(app_name=APP, user_id=USER, session_id="race")
    copies = [await service.get_session(app_name=APP, user_id=USER, session_id="race") for _ in range(8)]
    results = await asyncio.gather(
        *(service.append_event(c, event(delta={"n": n})) for n, c in enumerate(copies) if c),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(type(r).__name__ == "StaleSessionError" for r in results if isinstance(r, BaseException))
    stored = await service.get_session(app_name=APP, user_id=USER, session_id="race")
    assert stored is not None and len(stored.events) == 1


async def test_unknown_session_and_bad_ids(service: RelaySessionService) -> None:
    ghost = Session(id="ghost", app_name=APP, user_id=USER, last_update_time=0.0)
    with pytest.raises(SessionNotFoundError):
        await service.append_event(ghost, event())
    with pytest.raises(InvalidInput, match="separator"):
        await service.create_session(app_name=APP, user_id="a\x1fb")


async def test_compaction_events_are_kept(service: RelaySessionService) -> None:
    session = await service.create_session(app_name=APP, user_id=USER, session_id="cmp")
    originals = [event(ts=10.0 + n) for n in range(3)]
    for made in originals:
        await service.append_event(session, made)
    summary = event("model", ts=20.0)
    summary.actions.compaction = EventCompaction(
        start_timestamp=10.0,
        end_timestamp=12.0,
        compacted_content=types.Content(role="model", parts=[types.Part(text="sum")]),
    )
    await service.append_event(session, summary)
    stored = await service.get_session(app_name=APP, user_id=USER, session_id="cmp")
    assert stored is not None and stored.events == [*originals, summary]
    assert stored.events[-1].actions.compaction == summary.actions.compaction


def test_without_the_extra_the_import_error_names_it() -> None:
    code = "import sys; sys.modules['google.adk.sessions'] = None; import relaystore.integrations.adk"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pip install 'relaystore[adk]'" in done.stderr.strip().splitlines()[-1]
