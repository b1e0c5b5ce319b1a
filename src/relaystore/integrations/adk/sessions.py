"""Google ADK ``BaseSessionService`` over the generic checkpoint contract.

Layout (``prefix`` is ``"adk/"`` by default; ids are joined with ``\\x1f``, refused inside ids):

- a session is the thread ``prefix + "s/" + app \\x1f user \\x1f session_id``; its first checkpoint
  (id ``session``, label ``adk.session``) records the creation, every stored event is one more
  checkpoint (id = the event id, label ``adk.event``, ``custom["event"]`` = the event as JSON,
  ``custom["ts"]`` = its timestamp), in store order. The session-scoped state is the thread's
  attachment ``state`` (JSON), rewritten in the same atomic save as the event that changes it;
- the revision marker (``Session._storage_update_marker``) is the thread's head checkpoint id, and
  every append is a compare-and-set on it (``expected_head``): an outdated copy raises
  ``StaleSessionError`` and writes nothing;
- ``app:`` state is the thread ``prefix + "a/" + app``, ``user:`` state ``prefix + "u/" + app \\x1f
  user``: one attachment per key (JSON), so concurrent sessions updating different keys never
  overwrite each other; each has an anchor checkpoint (id ``scope``) so listings show it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

try:
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.events import Event
    from google.adk.sessions import BaseSessionService, Session, State
    from google.adk.sessions._session_util import extract_json_safe_state_delta
    from google.adk.sessions.base_session_service import GetSessionConfig, ListSessionsResponse
except ImportError as exc:  # without the extra: one line that names it
    from relaystore._extras import missing_extra

    raise missing_extra("relaystore.integrations.adk", "adk") from exc

from relaystore.errors import Conflict, InvalidInput
from relaystore.integrations._shared import StoreHandle, dump_json, load_json
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.stores import CheckpointStore, Store

try:
    from google.adk.errors._stale_session_error import StaleSessionError
except ImportError:  # pragma: no cover - older ADK raised ValueError
    StaleSessionError = ValueError  # type: ignore[misc,assignment]

__all__ = ["SEP", "RelaySessionService"]

SEP = "\x1f"
SESSION_RECORD = "session"
SCOPE_RECORD = "scope"
STATE_KEY = "state"
_PAGE = 500
_STALE = (
    "The session has been modified in storage since it was loaded (another writer appended "
    "to it). Reload it with get_session and retry."
)


class RelaySessionService(BaseSessionService):
    """ADK session service storing into relaystore; behaves as ``DatabaseSessionService``.

    ``url_or_store``: a store URL (its store lives on relaystore's own loop thread, shared by
    every user of that URL) or an opened :class:`~relaystore.stores.Store`. ``prefix``
    namespaces the threads. Ids (app name, user id, session id) are kept verbatim and must not
    contain ``\\x1f`` (:class:`~relaystore.errors.InvalidInput`). Session ids are not stripped of
    whitespace (as DatabaseSessionService, unlike InMemorySessionService).
    """

    def __init__(self, url_or_store: str | Store, *, prefix: str = "adk/", **options: Any) -> None:
        self._handle = StoreHandle(url_or_store, options)
        self._prefix = prefix

    async def close(self) -> None:
        """Let go of the URL's store (closed with its last user)."""
        await self._handle.close()

    # ------------------------------------------------------------------ addressing

    def _join(self, kind: str, *parts: str) -> str:
        for part in parts:
            if not isinstance(part, str) or not part:
                raise InvalidInput(
                    f"app_name, user_id and session_id must be non-empty strings, got {part!r}"
                )
            if SEP in part:
                raise InvalidInput(f"ids must not contain the unit separator \\x1f: {part!r}")
        return f"{self._prefix}{kind}/" + SEP.join(parts)

    def _session_thread(self, app_name: str, user_id: str, session_id: str) -> str:
        return self._join("s", app_name, user_id, session_id)

    # ------------------------------------------------------------------ the service

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session; ``AlreadyExistsError`` if ``(app, user, session_id)`` exists.

        ``state`` is split by prefix: ``app:`` and ``user:`` keys go to the shared scopes, ``temp:``
        keys are dropped, the rest is the session's own state.
        """
        session_id = session_id if session_id is not None else str(uuid.uuid4())
        thread = self._session_thread(app_name, user_id, session_id)
        deltas = extract_json_safe_state_delta(state or {})
        now = time.time()
        record = _record(thread, SESSION_RECORD, "adk.session", {"ts": repr(now)})
        blob = dump_json(deltas["session"], "session state").encode()

        async def work(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
            cs = store.checkpoints
            try:
                await cs.save(thread, record, b"", expected_head=None, attachments={STATE_KEY: blob})
            except Conflict:
                raise AlreadyExistsError(f"Session with id {session_id} already exists.") from None
            app = await self._merge_scope(cs, self._join("a", app_name), deltas["app"])
            user = await self._merge_scope(cs, self._join("u", app_name, user_id), deltas["user"])
            return app, user

        app, user = await self._handle.run(work)
        session = Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=_merged(app, user, deltas["session"]),
            last_update_time=now,
        )
        session._storage_update_marker = SESSION_RECORD
        return session

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """The session with merged state and its events (oldest first, in append order), or None.

        ``config.num_recent_events`` keeps the newest N (0: none), ``config.after_timestamp``
        those with ``timestamp >= t``; both: the newest N of those.
        """
        thread = self._session_thread(app_name, user_id, session_id)
        recent = config.num_recent_events if config else None
        after = config.after_timestamp if config else None

        async def work(store: Store) -> Session | None:
            cs = store.checkpoints
            if recent is not None and after is None:
                rows = list(await cs.list(thread, limit=recent + 1, newest_first=True))[::-1]
                head = rows[-1] if rows else None
            else:
                rows = list(await cs.list(thread))
                head = rows[-1] if rows else None
            if head is None:
                return None
            events = [_event(row) for row in rows if row.label == "adk.event"]
            if after is not None:
                events = [e for e in events if e.timestamp >= after]
            if recent is not None:
                events = events[len(events) - recent :] if recent else []
            state = await self._state(cs, app_name, user_id, thread)
            return _session(app_name, user_id, session_id, head, state, events)

        return await self._handle.run(work)

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """Sessions of the app (of one user, or of all when ``user_id`` is None), without events,
        with merged state; oldest ``last_update_time`` first, ties by ``(user_id, id)``."""
        prefix = self._join("s", app_name) + SEP
        if user_id is not None:
            prefix = self._join("s", app_name, user_id) + SEP

        async def work(store: Store) -> list[Session]:
            cs = store.checkpoints
            app = await _scope_state(cs, self._join("a", app_name))
            users: dict[str, dict[str, Any]] = {}
            found = []
            for thread in await _all_threads(cs, prefix):
                _app, user, sid = thread[len(self._prefix) + 2 :].split(SEP, 2)
                heads = await cs.list(thread, limit=1, newest_first=True)
                if not heads:
                    continue  # deleted meanwhile
                if user not in users:
                    users[user] = await _scope_state(cs, self._join("u", app_name, user))
                own = await _session_state(cs, thread)
                found.append(_session(app_name, user, sid, heads[0], _merged(app, users[user], own), []))
            return found

        sessions = await self._handle.run(work)
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events; app and user state stay. Missing is fine."""
        thread = self._session_thread(app_name, user_id, session_id)
        await self._handle.run(lambda store: store.checkpoints.delete_thread(thread))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The user scope's raw state (keys without ``user:``); ``{}`` if none."""
        thread = self._join("u", app_name, user_id)
        return await self._handle.run(lambda store: _scope_state(store.checkpoints, thread))

    async def append_event(self, session: Session, event: Event) -> Event:
        """Store a non-partial event and apply its state delta (``temp:`` keys only in memory).

        A compare-and-set on the session's revision: if storage moved on since ``session`` was
        loaded, ``StaleSessionError`` is raised and nothing is stored. ``SessionNotFoundError``
        for an unknown session. The session's update time becomes the event's timestamp.
        """
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        thread = self._session_thread(session.app_name, session.user_id, session.id)
        deltas = extract_json_safe_state_delta(event.actions.state_delta if event.actions else {})
        custom = {"event": event.model_dump_json(exclude_none=True), "ts": repr(event.timestamp)}
        record = _record(thread, _checked_event_id(event), "adk.event", custom)

        async def work(store: Store) -> None:
            cs = store.checkpoints
            expected = await self._expected_head(cs, thread, session)
            attachments = None
            if deltas["session"]:
                state = {**await _session_state(cs, thread), **deltas["session"]}
                attachments = {STATE_KEY: dump_json(state, "session state").encode()}
            try:
                await cs.save(thread, record, b"", expected_head=expected, attachments=attachments)
            except Conflict:
                raise StaleSessionError(_STALE) from None
            await self._merge_scope(cs, self._join("a", session.app_name), deltas["app"])
            await self._merge_scope(cs, self._join("u", session.app_name, session.user_id), deltas["user"])

        await self._handle.run(work)
        session.last_update_time = event.timestamp
        session._storage_update_marker = record.id
        return self._commit_event_to_session(session, event)

    # ------------------------------------------------------------------ internals

    async def _expected_head(self, cs: CheckpointStore, thread: str, session: Session) -> str:
        """The head this append must find: the session's marker, or for a marker-less copy the
        stored head if that copy is not behind it."""
        head = await cs.head(thread)
        if head is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        marker = session._storage_update_marker
        if marker is not None:
            return marker
        seen = session.events[-1].id if session.events else SESSION_RECORD
        if head != seen:
            raise StaleSessionError(_STALE)
        return head

    async def _merge_scope(self, cs: CheckpointStore, thread: str, delta: dict[str, Any]) -> dict[str, Any]:
        """Write ``delta`` into a shared scope (one attachment per key); return the scope's state."""
        if delta:
            if not await cs.count(thread):
                with contextlib.suppress(Conflict):  # a concurrent caller may anchor it first
                    await cs.save(
                        thread, _record(thread, SCOPE_RECORD, "adk.scope", {}), b"", expected_head=None
                    )
            await cs.put_attachments(
                thread, {k: dump_json(v, "state value").encode() for k, v in delta.items()}
            )
        return await _scope_state(cs, thread)

    async def _state(self, cs: CheckpointStore, app_name: str, user_id: str, thread: str) -> dict[str, Any]:
        app = await _scope_state(cs, self._join("a", app_name))
        user = await _scope_state(cs, self._join("u", app_name, user_id))
        return _merged(app, user, await _session_state(cs, thread))


def _checked_event_id(event: Event) -> str:
    if not event.id or event.id == SESSION_RECORD:
        raise InvalidInput(f"an event needs an id other than {SESSION_RECORD!r}, got {event.id!r}")
    return event.id


def _record(thread: str, record_id: str, label: str, custom: dict[str, str]) -> CheckpointMetadata:
    return CheckpointMetadata(id=record_id, thread_id=thread, label=label, custom=custom)


def _event(row: CheckpointMetadata) -> Event:
    return Event.model_validate_json(row.custom["event"])


def _session(
    app_name: str,
    user_id: str,
    session_id: str,
    head: CheckpointMetadata,
    state: dict[str, Any],
    events: list[Event],
) -> Session:
    session = Session(
        id=session_id,
        app_name=app_name,
        user_id=user_id,
        state=state,
        events=events,
        last_update_time=float(head.custom.get("ts", head.created_at)),
    )
    session._storage_update_marker = head.id
    return session


def _merged(app: dict[str, Any], user: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = dict(own)
    merged.update({State.APP_PREFIX + k: v for k, v in app.items()})
    merged.update({State.USER_PREFIX + k: v for k, v in user.items()})
    return merged


async def _session_state(cs: CheckpointStore, thread: str) -> dict[str, Any]:
    found = await cs.get_attachments(thread, [STATE_KEY])
    return load_json(found[STATE_KEY], f"{thread} state") if STATE_KEY in found else {}


async def _scope_state(cs: CheckpointStore, thread: str) -> dict[str, Any]:
    keys: list[str] = []
    cursor: str | None = None
    while True:
        page = await cs.list_attachments(thread, limit=_PAGE, cursor=cursor)
        keys.extend(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    values = await cs.get_attachments(thread, keys) if keys else {}
    return {k: load_json(v, f"{thread} {k}") for k, v in values.items()}


async def _all_threads(cs: CheckpointStore, prefix: str) -> list[str]:
    found: list[str] = []
    cursor: str | None = None
    while True:
        page = await cs.list_threads(prefix=prefix, limit=_PAGE, cursor=cursor)
        found.extend(page)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
