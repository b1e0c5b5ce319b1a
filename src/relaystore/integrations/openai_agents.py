"""An OpenAI Agents SDK ``Session`` (conversation memory) over any relaystore backend.

``RelaySession`` satisfies ``agents.memory.Session`` (the protocol the SDK's Runner drives:
``get_items``, ``add_items``, ``pop_item``, ``clear_session``) using only the generic checkpoint
contract, so memory, sqlite, file, redis, postgres and ``http://`` all serve it and the
``relaystore`` CLI lists, exports and prunes its data like any other thread:

- one relaystore **thread** per session: ``thread_prefix + session_id`` (``"agents/"`` by default);
- one **checkpoint** per ``add_items`` call, in store order, labelled ``agents.items``; its
  ``custom["items"]`` holds the call's items as one JSON array (so a listing returns the items
  without loading states, and a call's items are written atomically); the state is empty;
- ``pop_item`` deletes the newest checkpoint when it holds one item. When it holds several, it
  saves their remainder as a new head (``custom["replaces"]`` = the old id) with a
  compare-and-set on the old head, then deletes the old one; readers skip a checkpoint that a
  later one replaces, so a pop interrupted between the two steps never shows an item twice.

See ``docs/integrations.md``. Needs the ``openai-agents`` extra.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

try:
    from agents.items import TResponseInputItem
    from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit
except ImportError as exc:  # pragma: no cover - exercised without the extra
    from relaystore._extras import missing_extra

    raise missing_extra("relaystore.integrations.openai_agents", "openai-agents") from exc

from relaystore.errors import Conflict, InvalidInput
from relaystore.integrations._shared import StoreHandle, dump_json
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.stores import CheckpointStore, Store
from relaystore.stores._common import check_id

__all__ = ["ITEMS_KEY", "LABEL", "REPLACES_KEY", "RelaySession"]

log = logging.getLogger("relaystore")
T = TypeVar("T")

LABEL = "agents.items"
"""Label of every checkpoint a RelaySession writes."""
ITEMS_KEY = "items"
"""``custom`` key holding a checkpoint's items as a JSON array."""
REPLACES_KEY = "replaces"
"""``custom`` key naming the checkpoint a partial pop replaced."""

_FIRST_WINDOW_MAX = 500  # checkpoints asked for in the first page of a limited read
_POP_ATTEMPTS = 100  # compare-and-set rounds before a pop gives up under contention


class RelaySession:
    """Conversation history of one ``session_id``, kept in a relaystore store.

    ``url_or_store`` is a store URL (``"sqlite:///agents.db"``, ``"redis://…"``, ``"http://…"``)
    or an opened :class:`~relaystore.stores.Store`. A URL's store lives on a relaystore thread of
    its own and is shared by every session on that URL (closed when the last one closes), so the
    session works from any event loop and thread, as ``Runner.run_sync`` needs. An opened Store
    is used on the caller's loop and stays the caller's to close. ``options`` are backend options
    for a URL.
    ``session_settings`` (a ``SessionSettings`` or a dict) gives the default ``limit``.
    ``thread_prefix`` namespaces the threads, so several applications can share a store.

    Follows ``agents.memory.Session`` as ``SQLiteSession`` implements it; see each method for
    where it differs. Errors: :class:`~relaystore.errors.InvalidInput` for bad arguments or items
    that are not JSON data; backend errors (``BackendUnavailable``) pass through; any call after
    :meth:`close` raises ``RuntimeError``.
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        url_or_store: str | Store,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        thread_prefix: str = "agents/",
        **options: Any,
    ) -> None:
        if not isinstance(session_id, str):
            raise InvalidInput(f"session_id must be a string, got {type(session_id).__name__}")
        if not isinstance(thread_prefix, str):
            raise InvalidInput("thread_prefix must be a string")
        self.session_id = session_id
        self.thread_id = check_id(thread_prefix + session_id, "thread_prefix + session_id")
        self.session_settings = (
            coerce_session_settings(session_settings) if session_settings is not None else SessionSettings()
        )
        self._handle = StoreHandle(url_or_store, options)
        self._closed = False
        self._items_per_row = 1.0  # items per checkpoint in the last limited read: sizes the next

    # ------------------------------------------------------------------ the Session protocol

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history, oldest first: all of it (``limit`` None and no settings limit), or the
        newest ``limit`` items, still oldest first. ``0`` gives ``[]``.

        ``limit`` defaults to ``session_settings.limit``. A negative or non-integer limit raises
        :class:`InvalidInput` (``SQLiteSession`` treats negative as "all", Redis as "none": we
        refuse rather than guess). Items that cannot be decoded are skipped with a warning and do
        not count toward the limit. Each call returns new objects.
        """
        resolved = resolve_session_limit(limit, self.session_settings)
        if resolved is not None and (isinstance(resolved, bool) or not isinstance(resolved, int)):
            raise InvalidInput(f"limit must be an integer or None, got {resolved!r}")
        if resolved is not None and resolved < 0:
            raise InvalidInput(f"limit must not be negative, got {resolved}")
        return await self._run(lambda store: self._read(store.checkpoints, resolved))

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in order, atomically (one checkpoint); ``[]`` writes nothing.

        Concurrent calls, from tasks or processes, each land whole, in the order the store
        serialises them. Raises :class:`InvalidInput` if an item is not JSON data.
        """
        self._check_open()
        if not isinstance(items, list | tuple):
            raise InvalidInput(f"items must be a list, got {type(items).__name__}")
        if not items:
            return
        metadata = self._metadata(dump_json(list(items), "a session item"))
        await self._run(lambda store: store.checkpoints.save(self.thread_id, metadata, b""))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item; ``None`` when the history is empty.

        The item is really deleted (the Runner rewinds with it). Concurrent pops each get a
        different item. A corrupt newest checkpoint is deleted and the pop goes on to the next.
        Raises :class:`~relaystore.errors.Conflict` if it loses the compare-and-set 100 times
        in a row to concurrent writers.
        """
        return await self._run(lambda store: self._pop(store.checkpoints))

    async def clear_session(self) -> None:
        """Delete every item of the session; it stays usable (``add_items`` starts afresh)."""
        await self._run(lambda store: store.checkpoints.delete_thread(self.thread_id))

    # ------------------------------------------------------------------ lifetime

    async def close(self) -> None:
        """Let go of the URL's store (closed with its last session). Later calls raise RuntimeError."""
        self._closed = True
        await self._handle.close()

    async def __aenter__(self) -> RelaySession:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RelaySession {self.session_id!r} thread={self.thread_id!r}>"

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"RelaySession {self.session_id!r} is closed")

    async def _run(self, work: Callable[[Store], Awaitable[T]]) -> T:
        self._check_open()
        return await self._handle.run(work)

    async def _read(self, checkpoints: CheckpointStore, limit: int | None) -> list[Any]:
        if limit is None:
            return await self._all_items(checkpoints)
        if limit == 0:
            return []
        newest: list[list[Any]] = []
        count = rows = 0
        async for _meta, items in self._newest_first(checkpoints, self._window(limit)):
            rows += 1
            if items:
                newest.append(items)
                count += len(items)
                if count >= limit:
                    break
        if rows:
            self._items_per_row = max(1.0, count / rows)
        flat = [item for items in reversed(newest) for item in items]
        return flat[-limit:]

    def _window(self, limit: int) -> int:
        """Checkpoints to fetch first for ``limit`` items: as many as the items per checkpoint
        seen last time suggest, plus one (one per item until then); the pager fetches more if
        that falls short."""
        return min(math.ceil(limit / self._items_per_row) + 1, limit, _FIRST_WINDOW_MAX)

    async def _pop(self, checkpoints: CheckpointStore) -> Any:
        for _ in range(_POP_ATTEMPTS):
            head = await anext(self._newest_first(checkpoints, 1), None)
            if head is None:
                return None
            meta, items = head
            replaced = meta.custom.get(REPLACES_KEY)
            if replaced:  # finish a pop that stopped between its save and its delete
                await checkpoints.delete(self.thread_id, replaced)
            if not items:  # corrupt (or empty): drop it and look at the next one
                await checkpoints.delete(self.thread_id, meta.id)
                continue
            if len(items) == 1:
                if await checkpoints.delete(self.thread_id, meta.id):
                    return items[0]
                continue  # a concurrent pop took it
            remainder = self._metadata(dump_json(items[:-1], "a session item"), replaces=meta.id)
            try:
                await checkpoints.save(self.thread_id, remainder, b"", expected_head=meta.id)
            except Conflict:
                continue  # someone appended or popped first: look again
            await checkpoints.delete(self.thread_id, meta.id)
            return items[-1]
        raise Conflict(f"session {self.session_id!r}: pop_item lost {_POP_ATTEMPTS} races in a row")

    def _metadata(self, items_json: str, *, replaces: str | None = None) -> CheckpointMetadata:
        custom = {ITEMS_KEY: items_json}
        if replaces is not None:
            custom[REPLACES_KEY] = replaces
        return CheckpointMetadata(id=uuid.uuid4().hex, thread_id=self.thread_id, label=LABEL, custom=custom)

    async def _all_items(self, checkpoints: CheckpointStore) -> list[Any]:
        rows = await checkpoints.list(self.thread_id)
        replaced = {r for meta in rows if (r := meta.custom.get(REPLACES_KEY))}
        out: list[Any] = []
        for meta in rows:
            if meta.id not in replaced:
                out.extend(_decode(meta) or ())
        return out

    async def _newest_first(
        self, checkpoints: CheckpointStore, window: int
    ) -> AsyncIterator[tuple[CheckpointMetadata, list[Any] | None]]:
        """``(metadata, items or None if corrupt)`` of live checkpoints, newest first, fetched in
        pages that start at ``window`` rows and double."""
        replaced: set[str] = set()
        cursor: str | None = None
        while True:
            page = await checkpoints.list(self.thread_id, limit=window, cursor=cursor, newest_first=True)
            for meta in page:
                if meta.id in replaced:
                    continue
                if target := meta.custom.get(REPLACES_KEY):
                    replaced.add(target)
                yield meta, _decode(meta)
            if page.next_cursor is None:
                return
            cursor, window = page.next_cursor, min(window * 2, 10_000)


def _decode(meta: CheckpointMetadata) -> list[Any] | None:
    """The items of one checkpoint, or None (with a warning) if they cannot be read."""
    text = meta.custom.get(ITEMS_KEY)
    try:
        if meta.label != LABEL or text is None:
            raise ValueError(f"not a session checkpoint (label {meta.label!r})")
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("items are not a JSON array")
    except ValueError as exc:
        log.warning("skipping session items in %s/%s: %s", meta.thread_id, meta.id, exc)
        return None
    return items
