"""HTTP backend: a relaystore server (``relaystore serve``) as a store. ``http://host:port[/t/TENANT]``.

Every primitive is one or a few calls to the server's routes (``docs/server.md``); the server runs
the public store API, so validation and semantics are the library's on both sides. Design:

- **Token.** ``connect(url, token=...)``, else ``?token=`` in the URL, else ``$RELAYSTORE_TOKEN``;
  sent as ``Authorization: Bearer``. The token never appears in ``store.url``.
- **Errors.** The server answers ``{"error": "<ExceptionClass>", "detail": ...}``; the same
  :mod:`relaystore.errors` class is raised here (401 :class:`Unauthorized`, 403 :class:`Forbidden`,
  413 :class:`TooLarge`). Transport failures and timeouts raise :class:`BackendUnavailable`.
- **Listings.** The server pages with the same cursors (``encode_cursor`` of a position), so a
  cursor passes through unchanged; see :func:`_fill` for how a server page becomes primitive rows.
- **Adaptive updates.** A Python function cannot travel, so ``_update_doc`` is optimistic:
  GET the document and its ETag, apply locally, PUT with ``If-Match``; a 412 means another writer
  won, and the loop reads again. Concurrent updaters therefore lose nothing.
- **Pending writes and attachments.** JSON bodies with values in base64: one request per
  ``put_writes`` / ``put_attachments`` (atomic on the server, bounded by its ``--body-limit``;
  past it :class:`TooLarge`), key lists in batches of :data:`BATCH`. ``save(..., attachments=)``
  is one request to ``/v1/checkpoints/with-attachments`` (state and values in base64), which the
  server saves in its backend's one transaction: a :class:`Conflict` writes neither.
- **Blobs.** An upload is one streamed request (chunks flow through a small queue, so memory stays
  bounded); a chunk read is one ``Range`` request.
- One ``httpx.AsyncClient`` per store: HTTP/1.1 keep-alive, at most ``max_connections`` sockets.

Options (query or keywords): ``token``, ``timeout`` (seconds per request, default 30),
``max_connections`` (default 32).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import ConfigDict, TypeAdapter

from relaystore import errors
from relaystore.backends.http_items import HttpItemStore
from relaystore.errors import (
    BackendUnavailable,
    Conflict,
    CorruptRecord,
    InvalidInput,
    NotFound,
    RelayStoreError,
)
from relaystore.models.adaptive import RunRecord
from relaystore.models.checkpoints import (
    BundlePageWire,
    BundleWire,
    Checkpoint,
    CheckpointBundle,
    CheckpointMetadata,
    PendingWrite,
)
from relaystore.models.outputs import BlobContent, OutputRecord, OutputRef
from relaystore.stores import AdaptiveStore, CheckpointStore, DocKind, OutputFilter, OutputStore, Store
from relaystore.stores._common import ANY, Skipped, decode_seq_cursor, encode_cursor, parse_json
from relaystore.stores.adaptive import run_json
from relaystore.stores.blobs import CHUNK_SIZE, BlobStore
from relaystore.stores.checkpoints import FullQuery, SeqRow

log = logging.getLogger("relaystore")
METADATA_HEADER = "Relaystore-Metadata"
BATCH = 500  # refs per batch request, below the server's 1000
UPDATE_ATTEMPTS = 200  # compare-and-set rounds before giving up on a hot document
_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_FULL_ONE: TypeAdapter[BundleWire] = TypeAdapter(BundleWire)
_FULL_PAGE: TypeAdapter[BundlePageWire] = TypeAdapter(BundlePageWire)
_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)
_WRITES: TypeAdapter[dict[str, list[PendingWrite]]] = TypeAdapter(dict[str, list[PendingWrite]])
_BASE64 = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
_ATTACHMENTS: TypeAdapter[dict[str, dict[str, bytes]]] = TypeAdapter(
    dict[str, dict[str, bytes]], config=_BASE64
)
# A checkpoint save with attachments: {"state": bytes, "attachments": {key: bytes}}, all in base64.
_BUNDLE: TypeAdapter[dict[str, bytes | dict[str, bytes]]] = TypeAdapter(
    dict[str, bytes | dict[str, bytes]], config=_BASE64
)
_BY_STATUS: dict[int, type[RelayStoreError]] = {
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    412: errors.Conflict,
    413: errors.TooLarge,
}


# --------------------------------------------------------------------------- errors


def raise_for_response(response: httpx.Response) -> None:
    """Raise the :mod:`relaystore.errors` class that an error answer names (or its status implies)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
        name, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        body, name, detail = {}, "", response.text[:200] or response.reason_phrase
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, RelayStoreError)):
        cls = _BY_STATUS.get(response.status_code)
        if cls is None:
            cls = BackendUnavailable if response.status_code >= 500 else InvalidInput
    if cls is CorruptRecord:
        raise CorruptRecord(str(body.get("key", "?")), str(body.get("reason", detail)))
    raise cls(detail)


def unavailable(url: str, exc: Exception) -> BackendUnavailable:
    return BackendUnavailable(f"relaystore server {url} is unreachable: {type(exc).__name__}: {exc}")


class Client:
    """The store's connection pool, with errors translated."""

    def __init__(self, base: str, token: str | None, timeout: float, max_connections: int) -> None:
        self.base = base
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(
            base_url=base,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def send(
        self, method: str, path: str, *, missing: bool = False, **kwargs: Any
    ) -> httpx.Response | None:
        """One request; None for a 404 when ``missing`` is true, else raise on any error answer."""
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise unavailable(self.base, exc) from exc
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
        for warning in body.get("warnings", ()):  # corrupt records the server skipped
            log.warning("%s (on %s)", warning, self.base)
        return body["items"], body["next_cursor"]

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


async def _fill(fetch: Fetch, after: str | None, size: int | None) -> tuple[list[Any], str | None]:
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


def _positions(items: list[Any], cursor: str | None) -> list[tuple[int, Any]]:
    """Rows whose last position is the server's cursor, plus one more row if the server has more.

    The contract's ``make_page`` cuts rows to the page and takes its cursor from the last kept row,
    so only that row's position matters and the extra row (a copy) only says "more follow".
    """
    rows = [(0, item) for item in items]
    if cursor is not None and rows:
        rows[-1] = (int(decode_seq_cursor(cursor) or 0), rows[-1][1])
        rows.append(rows[-1])
    return rows


def _after_key(after: str | None) -> str | None:
    return None if after is None else encode_cursor(after)


def _after_seq(after: int | None) -> str | None:
    return None if after is None else encode_cursor(after)


# --------------------------------------------------------------------------- checkpoints


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")


def _save_headers(metadata: CheckpointMetadata, expected_head: Any, content_type: str) -> dict[str, str]:
    """Metadata and compare-and-set headers of a checkpoint save (``If-None-Match: *`` = empty thread)."""
    headers = {METADATA_HEADER: _b64(metadata.json_text()), "Content-Type": content_type}
    if expected_head is None:
        headers["If-None-Match"] = "*"
    elif expected_head is not ANY:
        headers["If-Match"] = f'"{_b64(expected_head)}"'
    return headers


class HttpCheckpointStore(CheckpointStore):
    def __init__(self, client: Client) -> None:
        self._c = client

    async def _save(
        self, thread_id: str, metadata: CheckpointMetadata, state: bytes, expected_head: Any
    ) -> None:
        headers = _save_headers(metadata, expected_head, "application/octet-stream")
        await self._c.send(
            "POST", "/v1/checkpoints", params={"thread_id": thread_id}, content=state, headers=headers
        )

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> None:
        """One request: the server saves both in its store's transaction (a Conflict writes neither)."""
        headers = _save_headers(metadata, expected_head, "application/json")
        body = _BUNDLE.dump_json({"state": state, "attachments": attachments})
        await self._c.send(
            "POST",
            "/v1/checkpoints/with-attachments",
            params={"thread_id": thread_id},
            content=body,
            headers=headers,
        )

    async def _head(self, thread_id: str) -> str | None:
        body = await self._c.json("GET", "/v1/threads/head", params={"thread_id": thread_id})
        return body["head"]

    async def _checkpoint(self, path: str, params: dict[str, str]) -> Checkpoint | None:
        response = await self._c.send("GET", path, params=params, missing=True)
        if response is None:
            return None
        header = response.headers.get(METADATA_HEADER, "")
        try:
            text = _unb64(header)
        except ValueError as exc:
            raise CorruptRecord(f"{path} {params}", f"bad {METADATA_HEADER} header: {exc}") from None
        return Checkpoint(parse_json(_METADATA, text, f"{path} {params}"), response.content)

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        return await self._checkpoint(
            "/v1/checkpoint", {"thread_id": thread_id, "checkpoint_id": checkpoint_id}
        )

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        return await self._checkpoint("/v1/checkpoints/latest", {"thread_id": thread_id})

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        params = {"thread_id": thread_id, "newest_first": "true" if newest_first else "false"}

        async def fetch(cursor: str | None, size: int | None) -> tuple[list[Any], str | None]:
            return await self._c.page("/v1/checkpoints", params, cursor, size)

        items, cursor = await _fill(fetch, _after_seq(after), limit)
        return _positions([CheckpointMetadata.model_validate(i) for i in items], cursor)

    async def _load_full(self, thread_id: str, checkpoint_id: str | None) -> CheckpointBundle | None:
        params = {"thread_id": thread_id} | (
            {} if checkpoint_id is None else {"checkpoint_id": checkpoint_id}
        )
        try:
            response = await self._c.send("GET", "/v1/checkpoints/full/one", params=params)
        except NotFound:
            return None
        assert response is not None
        return parse_json(_FULL_ONE, response.content, f"checkpoint {params} from {self._c.base}").bundle()

    async def _list_full(self, thread_id: str, query: FullQuery) -> list[tuple[int, Any]]:
        """One server page (its own full read) as rows whose last position is the server's cursor."""
        params: dict[str, Any] = {
            "thread_id": thread_id,
            "newest_first": str(query.newest_first).lower(),
            "values": str(query.values).lower(),
        }
        if query.limit is not None:
            params["limit"] = query.limit - 1  # the contract asked for one extra row; the server adds it
        if query.after is not None:
            params["cursor"] = encode_cursor(query.after)
        if query.before is not None:
            params["before"] = query.before
        if query.filter:
            params["filter"] = json.dumps(query.filter)
        items: list[Any] = []
        while True:  # the server cuts pages (100 without a limit, 1,000 at most): follow its cursor
            response = await self._c.send("GET", "/v1/checkpoints/full", params=params)
            assert response is not None
            what = f"checkpoints of {thread_id!r} from {self._c.base}"
            page = parse_json(_FULL_PAGE, response.content, what)
            items.extend(item.bundle() for item in page.items)
            wanted = None if query.limit is None else query.limit - 1
            if page.next_cursor is None or (wanted is not None and len(items) >= wanted):
                break
            params["cursor"] = page.next_cursor
            if wanted is not None:
                params["limit"] = wanted - len(items)
        if not items and page.next_cursor is not None:  # a page of skipped records still goes on
            items = [Skipped(0, "skipped by the server")]
        return _positions(items, page.next_cursor)

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        params = {"thread_id": thread_id, "checkpoint_id": checkpoint_id}
        return bool((await self._c.json("DELETE", "/v1/checkpoint", params=params))["deleted"])

    async def _delete_thread(self, thread_id: str) -> int:
        return int((await self._c.json("DELETE", "/v1/threads", params={"thread_id": thread_id}))["deleted"])

    async def _count(self, thread_id: str) -> int:
        return int((await self._c.json("GET", "/v1/threads/count", params={"thread_id": thread_id}))["count"])

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        query = {} if prefix is None else {"prefix": prefix}
        return await self._c.rows("/v1/threads", query, _after_key(after), limit)

    async def _prune(self, thread_id: str, keep: int) -> int:
        body = await self._c.json("POST", "/v1/threads/prune", params={"thread_id": thread_id, "keep": keep})
        return int(body["deleted"])

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        params = {"thread_id": thread_id, "checkpoint_id": checkpoint_id, "replace": str(replace).lower()}
        body = _WRITES.dump_json({"writes": writes})
        await self._c.send("POST", "/v1/checkpoints/writes", params=params, content=body, headers=_JSON)

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        path = "/v1/threads/orphan-writes/delete"
        return int((await self._c.json("POST", path, params={"thread_id": thread_id}))["deleted"])

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        params = {"thread_id": thread_id, "checkpoint_id": checkpoint_id}
        response = await self._c.send("GET", "/v1/checkpoints/writes", params=params)
        assert response is not None
        what = f"pending writes of {params} from {self._c.base}"
        return parse_json(_WRITES, response.content, what)["items"]

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        body = _ATTACHMENTS.dump_json({"attachments": items})
        await self._c.send(
            "POST", "/v1/threads/attachments", params={"thread_id": thread_id}, content=body, headers=_JSON
        )

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        params, what = {"thread_id": thread_id}, f"attachments of {thread_id!r} from {self._c.base}"
        for batch in _batches(keys):
            response = await self._c.send(
                "POST", "/v1/threads/attachments/get", params=params, json={"keys": batch}
            )
            assert response is not None
            found.update(parse_json(_ATTACHMENTS, response.content, what)["attachments"])
        return found

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        deleted, params = 0, {"thread_id": thread_id}
        for batch in _batches(keys):
            body = await self._c.json(
                "POST", "/v1/threads/attachments/delete", params=params, json={"keys": batch}
            )
            deleted += int(body["deleted"])
        return deleted

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        params = {"thread_id": thread_id}
        return await self._c.rows("/v1/threads/attachments", params, _after_key(after), limit)


_JSON = {"Content-Type": "application/json"}


def _batches(keys: list[str]) -> list[list[str]]:
    """``keys`` in slices the server accepts (it takes at most 1000 per request)."""
    return [keys[start : start + BATCH] for start in range(0, len(keys), BATCH)]


# --------------------------------------------------------------------------- outputs


def _records(items: list[Any]) -> list[OutputRecord]:
    return [_RECORD.validate_python(item) for item in items]


class HttpOutputStore(OutputStore):
    def __init__(self, client: Client) -> None:
        self._c = client

    async def _insert(self, record: OutputRecord) -> int:
        stored = await self._c.json("POST", "/v1/outputs/import", json=record.model_dump(mode="json"))
        return int(stored["seq"])

    async def _batch(self, path: str, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        found: list[OutputRecord] = []
        for start in range(0, len(refs), BATCH):
            body = await self._c.json("POST", path, json={"refs": list(refs[start : start + BATCH])})
            found += _records(body["items"])
        return found

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        return await self._batch("/v1/outputs/batch", refs)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        return await self._batch("/v1/outputs/children", refs)

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        if flt.task_id is not None and flt.attempt is not None and flt.producer_agent is not None:
            path = "/v1/outputs/latest-in-run"
            params: dict[str, Any] = {
                "task_id": flt.task_id,
                "attempt": flt.attempt,
                "name": flt.producer_agent,
            }
        elif flt.producer_agent is not None and flt.task_id is None and flt.attempt is None:
            path, params = "/v1/outputs/latest", {"name": flt.producer_agent}
        else:
            raise InvalidInput(f"the HTTP backend has no latest lookup for {flt}")
        response = await self._c.send("GET", path, params=params, missing=True)
        return None if response is None else _RECORD.validate_python(response.json())

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        if flt.attempt is not None:
            path = "/v1/outputs/attempt"
            params: dict[str, Any] = {"task_id": flt.task_id, "attempt": flt.attempt}
        else:
            path, params = "/v1/outputs", {"task_id": flt.task_id, "producer_agent": flt.producer_agent}

        async def fetch(cursor: str | None, size: int | None) -> tuple[list[Any], str | None]:
            return await self._c.page(path, params, cursor, size)

        items, cursor = await _fill(fetch, _after_seq(after), limit)
        records = _records(items)
        # Records carry their seq, so only the "more follow" marker row is needed (it is cut).
        return records + records[-1:] if cursor is not None else records


# --------------------------------------------------------------------------- adaptive


class HttpAdaptiveStore(AdaptiveStore):
    def __init__(self, client: Client) -> None:
        self._c = client

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        await self._c.send(
            "POST", "/v1/adaptive/runs", content=text.encode(), headers={"Content-Type": "application/json"}
        )

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        async def fetch(cursor: str | None, size: int | None) -> tuple[list[Any], str | None]:
            return await self._c.page("/v1/adaptive/runs", {"agent_id": agent_id}, cursor, size)

        items, cursor = await _fill(fetch, _after_seq(after), limit)
        runs = [RunRecord.model_validate(item) for item in items]
        rows = _positions([run_json(r) for r in runs], cursor)
        return [(seq, f"a run of {agent_id!r} from {self._c.base}", text) for seq, text in rows]

    async def _count_runs(self, agent_id: str) -> int:
        return int(
            (await self._c.json("GET", "/v1/adaptive/runs/count", params={"agent_id": agent_id}))["count"]
        )

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        params = {"agent_id": agent_id, "keep": keep}
        return int((await self._c.json("POST", "/v1/adaptive/runs/prune", params=params))["deleted"])

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        return await self._c.rows("/v1/adaptive/agents", {}, _after_key(after), limit)

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        return await self._c.rows(f"/v1/adaptive/keys/{kind}", {}, _after_key(after), limit)

    async def _versioned(self, kind: DocKind, key: str) -> tuple[str, str] | None:
        """``(text, etag)`` of the stored document, or None."""
        response = await self._c.send("GET", f"/v1/adaptive/docs/{kind}", params={"key": key}, missing=True)
        if response is None:
            return None
        return response.text, response.headers.get("etag", "").strip('"')

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        found = await self._versioned(kind, key)
        return None if found is None else found[0]

    async def _put(self, kind: DocKind, key: str, text: str, headers: dict[str, str]) -> None:
        await self._c.send(
            "PUT",
            f"/v1/adaptive/docs/{kind}",
            params={"key": key},
            content=text.encode(),
            headers={"Content-Type": "application/json", **headers},
        )

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        await self._put(kind, key, text, {})

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        body = await self._c.json("DELETE", f"/v1/adaptive/docs/{kind}", params={"key": key})
        return bool(body["deleted"])

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        delay = 0.002
        for _ in range(UPDATE_ATTEMPTS):
            found = await self._versioned(kind, key)
            current = None if found is None else found[0]
            new = apply(current)
            if new is None:
                return current
            precondition = {"If-None-Match": "*"} if found is None else {"If-Match": f'"{found[1]}"'}
            try:
                await self._put(kind, key, new, precondition)
                return new
            except Conflict:  # another writer got in between: read again
                await asyncio.sleep(delay * random.random())
                delay = min(delay * 2, 0.1)
        raise BackendUnavailable(f"{kind}:{key} changed on every one of {UPDATE_ATTEMPTS} update attempts")


# --------------------------------------------------------------------------- blobs


class _Upload:
    """One streamed upload: chunks go into a bounded queue that the request body drains."""

    def __init__(self, client: Client, mime: str | None) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
        headers = {"Content-Type": mime} if mime else {}
        self.task = asyncio.create_task(
            client.send("POST", "/v1/blobs", content=self._body(), headers=headers)
        )

    async def _body(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    async def put(self, item: bytes | None) -> None:
        """Queue ``item``, or raise what ended the request early (e.g. a 413)."""
        putting = asyncio.ensure_future(self.queue.put(item))
        done, _ = await asyncio.wait({putting, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if putting not in done:
            putting.cancel()
            self.task.result()  # raises the request's error
            raise BackendUnavailable("the server ended the upload early")


class HttpBlobStore(BlobStore):
    def __init__(self, client: Client) -> None:
        self._c = client
        self._uploads: dict[str, _Upload] = {}

    async def _begin(self, upload_id: str, mime: str | None) -> None:
        self._uploads[upload_id] = _Upload(self._c, mime)

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        await self._uploads[upload_id].put(data)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        upload = self._uploads.pop(upload_id)
        await upload.put(None)
        response = await upload.task
        assert response is not None
        stored = BlobContent.model_validate(response.json())
        if (stored.sha256, stored.size) != (blob.sha256, blob.size):
            raise BackendUnavailable(
                f"the server stored {stored.sha256} ({stored.size} B), not {blob.sha256}"
            )

    async def _abort(self, upload_id: str) -> None:
        upload = self._uploads.pop(upload_id, None)
        if upload is not None and not upload.task.done():
            upload.task.cancel()  # the cut connection makes the server drop its staged chunks
            await asyncio.gather(upload.task, return_exceptions=True)

    async def _stat(self, sha256: str) -> BlobContent | None:
        response = await self._c.send("GET", f"/v1/blobs/{sha256}/stat", missing=True)
        return None if response is None else BlobContent.model_validate(response.json())

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        first = index * CHUNK_SIZE
        headers = {"Range": f"bytes={first}-{first + CHUNK_SIZE - 1}"}
        response = await self._c.send("GET", f"/v1/blobs/{sha256}", headers=headers, missing=True)
        return None if response is None else response.content

    async def _delete(self, sha256: str) -> bool:
        return bool((await self._c.json("DELETE", f"/v1/blobs/{sha256}"))["deleted"])

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        items = await self._c.rows("/v1/blobs", {}, _after_key(after), limit)
        return [BlobContent.model_validate(item) for item in items]


# --------------------------------------------------------------------------- opening


def parse_url(url: str, options: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(base URL, URL without secrets, options)`` from an ``http(s)://`` URL and keywords."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise InvalidInput(f"{url!r} names no host; write http://host:port")
    query = dict(parse_qsl(parts.query))
    query.update({k: v for k, v in options.items() if v is not None})
    unknown = set(query) - {"token", "timeout", "max_connections"}
    if unknown:
        raise InvalidInput(f"unknown http store option(s): {', '.join(sorted(unknown))}")
    try:
        timeout = float(query.get("timeout", 30))
        max_connections = int(query.get("max_connections", 32))
    except ValueError:
        raise InvalidInput("timeout must be seconds and max_connections an integer") from None
    if timeout <= 0 or max_connections < 1:
        raise InvalidInput("timeout and max_connections must be positive")
    token = query.get("token") or os.environ.get("RELAYSTORE_TOKEN") or None
    settings = {"token": token, "timeout": timeout, "max_connections": max_connections}
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    public = {k: v for k, v in parse_qsl(parts.query) if k != "token"}
    shown = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(public), ""))
    return base, shown, settings


async def open_store(url: str, **options: Any) -> Store:
    """Connect to the relaystore server at ``url`` (checked with ``GET /healthz``).

    Raises :class:`InvalidInput` for a bad URL or option and :class:`BackendUnavailable` when the
    server cannot be reached. A missing or refused token surfaces on the first call that needs it.
    """
    base, shown, settings = parse_url(url, options)
    client = Client(base, settings["token"], settings["timeout"], settings["max_connections"])
    try:
        await client.send("GET", "/healthz")
    except BaseException:
        await client.http.aclose()
        raise

    async def info() -> dict[str, Any]:
        facts = await client.json("GET", "/v1/info")
        return {"server": {k: v for k, v in facts.items() if k != "url"}}

    return Store(
        shown,
        "http",
        HttpCheckpointStore(client),
        HttpOutputStore(client),
        HttpAdaptiveStore(client),
        blobs=HttpBlobStore(client),
        items=HttpItemStore(client),
        close=client.http.aclose,
        info=info,
        concurrent_calls=True,
    )


__all__ = ["open_store", "raise_for_response", "unavailable"]
