"""The connection pool of one ``http://`` store, with error answers turned back into errors.

The server answers ``{"error": "<ExceptionClass>", "detail": ...}``; the same
:mod:`relaystore.errors` class is raised here (:func:`relaystore.wire.error_from_answer`).
Transport failures and timeouts raise :class:`~relaystore.errors.BackendUnavailable`. Also the
listing helpers every face uses: the server pages with the same cursors as the contract
(``encode_cursor`` of a position), so a cursor passes through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from relaystore import wire
from relaystore.backends.http.url import HttpOptions
from relaystore.errors import CorruptRecord
from relaystore.stores._common import decode_seq_cursor, encode_cursor

log = logging.getLogger("relaystore")
BATCH = 500  # refs or keys per batch request, below the server's 1000
JSON = {"Content-Type": "application/json"}


def raise_for_response(response: httpx.Response) -> None:
    """Raise the :mod:`relaystore.errors` class that an error answer names (or its status implies)."""
    if response.status_code >= 400:
        raise wire.error_from_answer(response.status_code, response.content, response.reason_phrase)


class Client:
    """The store's connection pool, with errors translated."""

    def __init__(self, options: HttpOptions) -> None:
        self.base = options.base
        token = None if options.token is None else options.token.get_secret_value()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        size = options.max_connections
        self.http = httpx.AsyncClient(
            base_url=self.base,
            headers=headers,
            timeout=httpx.Timeout(options.timeout),
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        )

    async def send(
        self, method: str, path: str, *, missing: bool = False, **kwargs: Any
    ) -> httpx.Response | None:
        """One request; None for a 404 when ``missing`` is true, else raise on any error answer."""
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise wire.unreachable(self.base, exc) from exc
        if missing and response.status_code == 404:
            return None
        raise_for_response(response)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.send(method, path, **kwargs)
        assert response is not None
        return response.json()

    async def page(
        self, path: str, params: dict[str, Any], cursor: str | None, limit: int | None
    ) -> tuple[list[Any], str | None]:
        query = {k: v for k, v in params.items() if v is not None}
        if cursor is not None:
            query["cursor"] = cursor
        if limit is not None:
            query["limit"] = limit
        body = await self.json("GET", path, params=query)
        self.relay_warnings(body)
        return body["items"], body["next_cursor"]

    def relay_warnings(self, body: dict[str, Any]) -> None:
        """Log what the server skipped as a local store would: each corrupt record as a
        :class:`CorruptRecord` argument (so an export can name it), other warnings as lines."""
        corrupt = [c for c in body.get("corrupt", ()) if isinstance(c, dict)]
        for entry in corrupt:
            skipped = CorruptRecord(str(entry.get("key")), str(entry.get("reason")))
            log.warning("skipping %s (on %s)", skipped, self.base)
        for warning in body.get("warnings", ()):
            if not (corrupt and str(warning).startswith("skipping corrupt record ")):
                log.warning("%s (on %s)", warning, self.base)

    async def rows(
        self, path: str, params: dict[str, Any], after: str | None, limit: int | None
    ) -> list[Any]:
        """Up to ``limit`` items of a key listing (all of them for None), across as many server
        pages as that takes: the server cuts a page at its maximum and names no limit as 100."""
        items: list[Any] = []
        cursor = after
        while True:
            page, cursor = await self.page(
                path, params, cursor, None if limit is None else limit - len(items)
            )
            items.extend(page)
            if cursor is None or (limit is not None and len(items) >= limit):
                return items


# --------------------------------------------------------------------------- listings


Fetch = Callable[[str | None, int | None], Awaitable[tuple[list[Any], str | None]]]


async def fill(fetch: Fetch, after: str | None, size: int | None) -> tuple[list[Any], str | None]:
    """The server's items after cursor ``after`` until the caller's page is full, and its cursor.

    A primitive is asked for ``size`` rows (one more than the page, to learn whether more follow),
    but a server page may hold fewer than asked while more follow (it skips corrupt records), so
    this fetches until it has ``size - 1`` items or the server's cursor is None.
    """
    want = None if size is None else max(size - 1, 1)
    items: list[Any] = []
    cursor = after
    while True:
        page, cursor = await fetch(cursor, None if want is None else want - len(items))
        items.extend(page)
        if cursor is None or (want is not None and len(items) >= want):
            return items, cursor


def positions(items: list[Any], cursor: str | None) -> list[tuple[int, Any]]:
    """Rows whose last position is the server's cursor, plus one more row if the server has more.

    The contract's ``make_page`` cuts rows to the page and takes its cursor from the last kept row,
    so only that row's position matters and the extra row (a copy) only says "more follow".
    """
    rows = [(0, item) for item in items]
    if cursor is not None and rows:
        rows[-1] = (int(decode_seq_cursor(cursor) or 0), rows[-1][1])
        rows.append(rows[-1])
    return rows


def after_key(after: str | None) -> str | None:
    return None if after is None else encode_cursor(after)


def after_seq(after: int | None) -> str | None:
    return None if after is None else encode_cursor(after)


def batches(keys: list[Any]) -> list[list[Any]]:
    """``keys`` in slices the server accepts (it takes at most 1000 per request)."""
    return [keys[start : start + BATCH] for start in range(0, len(keys), BATCH)]
