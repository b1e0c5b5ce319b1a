"""Checkpoints over HTTP: state as raw bytes, metadata in the :data:`~relaystore.wire.METADATA_HEADER`.

A save's compare-and-set is ``If-Match`` on the head's entity tag (``If-None-Match: *`` for an
empty thread). Pending writes and attachments are JSON bodies with values in base64: one request
per ``put_writes`` / ``put_attachments`` (atomic on the server, bounded by its ``--body-limit``;
past it :class:`~relaystore.errors.TooLarge`), key lists in batches of
:data:`~relaystore.backends.http.client.BATCH`. ``save(..., attachments=)`` is one request to
``/v1/checkpoints/with-attachments``, which the server saves in its backend's one transaction: a
:class:`~relaystore.errors.Conflict` writes neither.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import TypeAdapter

from relaystore import wire
from relaystore.backends.http.client import JSON, Client, after_key, after_seq, batches, fill, positions
from relaystore.errors import CorruptRecord, InvalidInput, NotFound
from relaystore.models.checkpoints import Checkpoint, CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.stores import CheckpointStore
from relaystore.stores._common import ANY, Skipped, encode_cursor, parse_json
from relaystore.stores.checkpoints import FullQuery, SeqRow
from relaystore.wire import (
    METADATA_HEADER,
    AttachmentsRequest,
    BundlePageWire,
    BundleWire,
    CheckpointWithAttachmentsRequest,
    WritesRequest,
    checkpoint_etag,
)

_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_FULL_ONE: TypeAdapter[BundleWire] = TypeAdapter(BundleWire)
_FULL_PAGE: TypeAdapter[BundlePageWire] = TypeAdapter(BundlePageWire)
_WRITES: TypeAdapter[dict[str, list[PendingWrite]]] = TypeAdapter(dict[str, list[PendingWrite]])
_ATTACHMENTS: TypeAdapter[AttachmentsRequest] = TypeAdapter(AttachmentsRequest)


def _save_headers(metadata: CheckpointMetadata, expected_head: Any, content_type: str) -> dict[str, str]:
    """Metadata and compare-and-set headers of a checkpoint save (``If-None-Match: *`` = empty thread)."""
    headers = {METADATA_HEADER: wire.b64(metadata.json_text()), "Content-Type": content_type}
    if expected_head is None:
        headers["If-None-Match"] = "*"
    elif expected_head is not ANY:
        headers["If-Match"] = checkpoint_etag(expected_head)
    return headers


class HttpCheckpointStore(CheckpointStore):
    def __init__(self, client: Client) -> None:
        self._c = client

    async def _save(
        self, thread_id: str, metadata: CheckpointMetadata, state: bytes, expected_head: Any
    ) -> bool:
        headers = _save_headers(metadata, expected_head, "application/octet-stream")
        response = await self._c.send(
            "POST", wire.CHECKPOINTS, params={"thread_id": thread_id}, content=state, headers=headers
        )
        return _already_applied(response)

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> bool:
        """One request: the server saves both in its store's transaction (a Conflict writes neither)."""
        headers = _save_headers(metadata, expected_head, "application/json")
        body = CheckpointWithAttachmentsRequest(state=state, attachments=attachments).model_dump_json()
        response = await self._c.send(
            "POST",
            wire.CHECKPOINTS_WITH_ATTACHMENTS,
            params={"thread_id": thread_id},
            content=body,
            headers=headers,
        )
        return _already_applied(response)

    async def _head(self, thread_id: str) -> str | None:
        body = await self._c.json("GET", wire.THREADS_HEAD, params={"thread_id": thread_id})
        return body["head"]

    async def _checkpoint(self, path: str, params: dict[str, str]) -> Checkpoint | None:
        response = await self._c.send("GET", path, params=params, missing=True)
        if response is None:
            return None
        header = response.headers.get(METADATA_HEADER, "")
        try:
            text = wire.unb64(header, METADATA_HEADER)
        except InvalidInput as exc:
            raise CorruptRecord(f"{path} {params}", f"bad {METADATA_HEADER} header: {exc}") from None
        return Checkpoint(parse_json(_METADATA, text, f"{path} {params}"), response.content)

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        return await self._checkpoint(
            wire.CHECKPOINT, {"thread_id": thread_id, "checkpoint_id": checkpoint_id}
        )

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        return await self._checkpoint(wire.CHECKPOINTS_LATEST, {"thread_id": thread_id})

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        params = {"thread_id": thread_id, "newest_first": "true" if newest_first else "false"}

        async def fetch(cursor: str | None, size: int | None) -> tuple[list[Any], str | None]:
            return await self._c.page(wire.CHECKPOINTS, params, cursor, size)

        items, cursor = await fill(fetch, after_seq(after), limit)
        return positions([CheckpointMetadata.model_validate(i) for i in items], cursor)

    async def _load_full(self, thread_id: str, checkpoint_id: str | None) -> CheckpointBundle | None:
        params = {"thread_id": thread_id} | (
            {} if checkpoint_id is None else {"checkpoint_id": checkpoint_id}
        )
        try:
            response = await self._c.send("GET", wire.CHECKPOINTS_FULL_ONE, params=params)
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
            response = await self._c.send("GET", wire.CHECKPOINTS_FULL, params=params)
            assert response is not None
            what = f"checkpoints of {thread_id!r} from {self._c.base}"
            page = parse_json(_FULL_PAGE, response.content, what)
            self._c.relay_warnings({"warnings": page.warnings, "corrupt": page.corrupt})
            items.extend(item.bundle() for item in page.items)
            wanted = None if query.limit is None else query.limit - 1
            if page.next_cursor is None or (wanted is not None and len(items) >= wanted):
                break
            params["cursor"] = page.next_cursor
            if wanted is not None:
                params["limit"] = wanted - len(items)
        if not items and page.next_cursor is not None:  # a page of skipped records still goes on
            items = [Skipped(0, "skipped by the server")]
        return positions(items, page.next_cursor)

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        params = {"thread_id": thread_id, "checkpoint_id": checkpoint_id}
        return bool((await self._c.json("DELETE", wire.CHECKPOINT, params=params))["deleted"])

    async def _delete_thread(self, thread_id: str) -> int:
        return int((await self._c.json("DELETE", wire.THREADS, params={"thread_id": thread_id}))["deleted"])

    async def _count(self, thread_id: str) -> int:
        return int((await self._c.json("GET", wire.THREADS_COUNT, params={"thread_id": thread_id}))["count"])

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        query = {} if prefix is None else {"prefix": prefix}
        return await self._c.rows(wire.THREADS, query, after_key(after), limit)

    async def _prune(self, thread_id: str, keep: int) -> int:
        body = await self._c.json("POST", wire.THREADS_PRUNE, params={"thread_id": thread_id, "keep": keep})
        return int(body["deleted"])

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        params = {"thread_id": thread_id, "checkpoint_id": checkpoint_id, "replace": str(replace).lower()}
        body = WritesRequest(writes=writes).model_dump_json()
        await self._c.send("POST", wire.CHECKPOINTS_WRITES, params=params, content=body, headers=JSON)

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        path = wire.THREADS_ORPHAN_WRITES_DELETE
        return int((await self._c.json("POST", path, params={"thread_id": thread_id}))["deleted"])

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        params = {"thread_id": thread_id, "checkpoint_id": checkpoint_id}
        response = await self._c.send("GET", wire.CHECKPOINTS_WRITES, params=params)
        assert response is not None
        what = f"pending writes of {params} from {self._c.base}"
        return parse_json(_WRITES, response.content, what)["items"]

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        body = AttachmentsRequest(attachments=items).model_dump_json()
        await self._c.send(
            "POST", wire.ATTACHMENTS, params={"thread_id": thread_id}, content=body, headers=JSON
        )

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        params, what = {"thread_id": thread_id}, f"attachments of {thread_id!r} from {self._c.base}"
        for batch in batches(keys):
            response = await self._c.send("POST", wire.ATTACHMENTS_GET, params=params, json={"keys": batch})
            assert response is not None
            found.update(parse_json(_ATTACHMENTS, response.content, what).attachments)
        return found

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        deleted, params = 0, {"thread_id": thread_id}
        for batch in batches(keys):
            body = await self._c.json("POST", wire.ATTACHMENTS_DELETE, params=params, json={"keys": batch})
            deleted += int(body["deleted"])
        return deleted

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        params = {"thread_id": thread_id}
        return await self._c.rows(wire.ATTACHMENTS, params, after_key(after), limit)


def _already_applied(response: httpx.Response | None) -> bool:
    """The server found this save already stored (a retry whose first try landed): 200, not 201."""
    return (
        response is not None and response.status_code == 200 and bool(response.json().get("already_applied"))
    )
