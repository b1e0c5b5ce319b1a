"""Google ADK ``BaseArtifactService`` over the generic checkpoint and blob contracts.

Layout (``prefix`` ``"adk/"`` by default, ids joined with ``\\x1f``):

- one **thread** per artifact: ``prefix + "f/" + app \\x1f user \\x1f "s" \\x1f session_id \\x1f
  filename`` for a session-scoped name, ``prefix + "f/" + app \\x1f user \\x1f "u" \\x1f filename``
  for a ``user:`` name (visible from every session of that user);
- one **checkpoint** per version, in store order: id ``str(version)``, ``step`` = version,
  label ``adk.artifact``; ``custom`` holds the payload kind, mime type, custom metadata (JSON)
  and create time. Saving is a compare-and-set on the head, so concurrent saves get distinct
  versions 0..n;
- the payload bytes (``inline_data``, and ``text`` as UTF-8) are a **blob**: content-addressed,
  so the same bytes saved as many versions, sessions or users are stored once. ``file_data``
  keeps only its URI. Deleting an artifact deletes its versions, not the blobs (other versions
  may share them).

Rules follow ``InMemoryArtifactService``: a session-scoped name without ``session_id`` raises
``InputValidationError`` (no silent fallback to user scope), path segments are validated the
same way, ``artifact://`` references are followed up to five hops within the caller's scope, and
a rewind tombstone loads as None.
"""

from __future__ import annotations

import json
import time
from typing import Any

try:
    from google.adk.artifacts import BaseArtifactService, artifact_util
    from google.adk.artifacts.base_artifact_service import ArtifactVersion, ensure_part
    from google.adk.errors.input_validation_error import InputValidationError
    from google.genai import types
except ImportError as exc:  # without the extra: one line that names it
    from relaystore._extras import missing_extra

    raise missing_extra("relaystore.integrations.adk", "adk") from exc

from relaystore.errors import Conflict, NotFound
from relaystore.integrations._shared import StoreHandle, dump_json
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.stores import Store

__all__ = ["RelayArtifactService"]

SEP = "\x1f"
LABEL = "adk.artifact"
_SAVE_ATTEMPTS = 100
_MAX_DEPTH = getattr(artifact_util, "_MAX_ARTIFACT_REFERENCE_DEPTH", 5)


class RelayArtifactService(BaseArtifactService):
    """Versioned ADK artifacts in relaystore; payload bytes in ``store.blobs``.

    ``url_or_store``: a store URL (its store lives on relaystore's loop thread, shared with every
    other user of the URL) or an opened :class:`~relaystore.stores.Store`. Raises ADK's
    ``InputValidationError`` for bad scopes or payloads, as the in-memory service does.
    """

    def __init__(self, url_or_store: str | Store, *, prefix: str = "adk/", **options: Any) -> None:
        self._handle = StoreHandle(url_or_store, options)
        self._prefix = prefix

    async def close(self) -> None:
        await self._handle.close()

    # ------------------------------------------------------------------ addressing

    def _scope(self, app_name: str, user_id: str, session_id: str | None, *, user_scoped: bool) -> str:
        artifact_util.validate_path_segment(app_name, "app_name")
        artifact_util.validate_path_segment(user_id, "user_id")
        _no_separator(app_name, user_id)
        base = f"{self._prefix}f/{app_name}{SEP}{user_id}{SEP}"
        if user_scoped:
            return base + "u" + SEP
        if session_id is None:
            raise InputValidationError("Session ID must be provided for session-scoped artifacts.")
        artifact_util._validate_session_id_for_flat_storage(session_id)
        _no_separator(session_id)
        return f"{base}s{SEP}{session_id}{SEP}"

    def _thread(self, app_name: str, user_id: str, filename: str, session_id: str | None) -> str:
        if not isinstance(filename, str) or not filename:
            raise InputValidationError("filename must not be empty.")
        _no_separator(filename)
        return self._scope(app_name, user_id, session_id, user_scoped=filename.startswith("user:")) + filename

    # ------------------------------------------------------------------ the service

    async def save_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        artifact: types.Part | dict[str, Any],
        session_id: str | None = None,
        custom_metadata: dict[str, Any] | None = None,
    ) -> int:
        """Save a new version and return its number (0 for the first, then 1, 2, …)."""
        thread = self._thread(app_name, user_id, filename, session_id)
        part = ensure_part(artifact)
        custom = {"ct": repr(time.time()), "meta": dump_json(custom_metadata or {}, "custom_metadata")}
        payload: bytes | None = None
        if part.inline_data is not None:
            payload = part.inline_data.data or b""
            custom.update(kind="blob", mime=part.inline_data.mime_type or "")
        elif part.text is not None:
            payload = part.text.encode("utf-8", "surrogatepass")
            custom.update(kind="text", mime="text/plain")
        elif part.file_data is not None and part.file_data.file_uri:
            if artifact_util.is_artifact_ref(part):
                target = artifact_util.parse_artifact_uri(part.file_data.file_uri)
                if target is None:
                    raise InputValidationError(f"Invalid artifact reference URI: {part.file_data.file_uri}")
                artifact_util.validate_artifact_reference_scope(
                    app_name=app_name, user_id=user_id, session_id=session_id, parsed_uri=target
                )
            custom.update(kind="file", uri=part.file_data.file_uri, mime=part.file_data.mime_type or "")
        else:
            raise InputValidationError("Not supported artifact type.")

        async def work(store: Store) -> int:
            if payload is not None:
                blob = await store.blobs.put(payload, mime=custom["mime"] or None)
                custom["sha256"] = blob.sha256
            cs = store.checkpoints
            for _ in range(_SAVE_ATTEMPTS):
                head = await cs.head(thread)
                version = 0 if head is None else int(head) + 1
                record = CheckpointMetadata(
                    id=str(version), thread_id=thread, step=version, label=LABEL, custom=custom
                )
                try:
                    await cs.save(thread, record, b"", expected_head=head)
                    return version
                except Conflict:
                    continue  # a concurrent save took this version
            raise Conflict(f"artifact {filename!r}: lost {_SAVE_ATTEMPTS} version races in a row")

        return await self._handle.run(work)

    async def load_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
        version: int | None = None,
    ) -> types.Part | None:
        """The latest version, or ``version``; None if absent (or a rewind tombstone)."""
        return await self._load(app_name, user_id, filename, session_id, version, _MAX_DEPTH)

    async def _load(
        self,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None,
        version: int | None,
        depth: int,
    ) -> types.Part | None:
        thread = self._thread(app_name, user_id, filename, session_id)

        async def work(store: Store) -> tuple[CheckpointMetadata, bytes | None] | None:
            record = await _version(store, thread, version)
            if record is None:
                return None
            sha = record.custom.get("sha256")
            return record, (await store.blobs.get(sha) if sha else None)

        found = await self._handle.run(work)
        if found is None:
            return None
        record, data = found
        kind, mime = record.custom.get("kind"), record.custom.get("mime") or None
        if kind == "text":
            return types.Part(text=(data or b"").decode("utf-8", "surrogatepass"))
        if kind == "file":
            uri = record.custom["uri"]
            part = types.Part(file_data=types.FileData(file_uri=uri, mime_type=mime))
            if not artifact_util.is_artifact_ref(part):
                return part
            target = artifact_util.resolve_artifact_reference(
                file_uri=uri, app_name=app_name, user_id=user_id, session_id=session_id, remaining_depth=depth
            )
            return await self._load(
                target.app_name, target.user_id, target.filename, target.session_id, target.version, depth - 1
            )
        part = types.Part(inline_data=types.Blob(data=data or b"", mime_type=mime))
        return None if artifact_util._is_rewind_tombstone(part) else part

    async def list_artifact_keys(
        self, *, app_name: str, user_id: str, session_id: str | None = None
    ) -> list[str]:
        """Sorted names: the session's own plus the user's ``user:`` names (only those when
        ``session_id`` is None)."""
        prefixes = [self._scope(app_name, user_id, None, user_scoped=True)]
        if session_id is not None:
            prefixes.append(self._scope(app_name, user_id, session_id, user_scoped=False))

        async def work(store: Store) -> list[str]:
            names: list[str] = []
            for prefix in prefixes:
                cursor: str | None = None
                while True:
                    page = await store.checkpoints.list_threads(prefix=prefix, limit=500, cursor=cursor)
                    names.extend(t[len(prefix) :] for t in page)
                    if page.next_cursor is None:
                        break
                    cursor = page.next_cursor
            return sorted(names)

        return await self._handle.run(work)

    async def delete_artifact(
        self, *, app_name: str, user_id: str, filename: str, session_id: str | None = None
    ) -> None:
        """Delete every version (a later save starts again at 0); missing is fine."""
        thread = self._thread(app_name, user_id, filename, session_id)
        await self._handle.run(lambda store: store.checkpoints.delete_thread(thread))

    async def list_versions(
        self, *, app_name: str, user_id: str, filename: str, session_id: str | None = None
    ) -> list[int]:
        records = await self._records(app_name, user_id, filename, session_id)
        return [r.step for r in records]

    async def list_artifact_versions(
        self, *, app_name: str, user_id: str, filename: str, session_id: str | None = None
    ) -> list[ArtifactVersion]:
        records = await self._records(app_name, user_id, filename, session_id)
        return [self._describe(app_name, user_id, filename, session_id, r) for r in records]

    async def get_artifact_version(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
        version: int | None = None,
    ) -> ArtifactVersion | None:
        thread = self._thread(app_name, user_id, filename, session_id)
        record = await self._handle.run(lambda store: _version(store, thread, version))
        return None if record is None else self._describe(app_name, user_id, filename, session_id, record)

    # ------------------------------------------------------------------ internals

    async def _records(
        self, app_name: str, user_id: str, filename: str, session_id: str | None
    ) -> list[CheckpointMetadata]:
        thread = self._thread(app_name, user_id, filename, session_id)
        return await self._handle.run(lambda store: _all_versions(store, thread))

    def _describe(
        self, app_name: str, user_id: str, filename: str, session_id: str | None, record: CheckpointMetadata
    ) -> ArtifactVersion:
        scope = "" if filename.startswith("user:") or session_id is None else f"/sessions/{session_id}"
        uri = (
            f"relaystore://apps/{app_name}/users/{user_id}{scope}/artifacts/{filename}/versions/{record.step}"
        )
        mime = record.custom.get("mime") or None
        return ArtifactVersion(
            version=record.step,
            canonical_uri=uri,
            custom_metadata=json.loads(record.custom.get("meta", "{}")),
            create_time=float(record.custom.get("ct", record.created_at)),
            mime_type=mime,
        )


async def _version(store: Store, thread: str, version: int | None) -> CheckpointMetadata | None:
    if version is None:
        newest = await store.checkpoints.list(thread, limit=1, newest_first=True)
        return newest[0] if newest else None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return None
    try:
        return (await store.checkpoints.load(thread, str(version))).metadata
    except NotFound:
        return None


async def _all_versions(store: Store, thread: str) -> list[CheckpointMetadata]:
    return list(await store.checkpoints.list(thread))


def _no_separator(*values: str) -> None:
    for value in values:
        if SEP in value:
            raise InputValidationError(f"names must not contain the unit separator \\x1f: {value!r}")
