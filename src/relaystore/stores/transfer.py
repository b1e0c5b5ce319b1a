"""Export and import of everything a :class:`~relaystore.stores.Store` holds, as JSON Lines.

The format (version 2; version 1 files still import) is one JSON object per line, each with a
``"type"``:

- ``header``: first line, ``{"type":"header","format":"relaystore-export","version":2,...}``;
- ``checkpoint``: ``thread_id``, ``metadata`` and ``state`` (base64), in each thread's store order;
- ``write``: ``thread_id``, ``checkpoint_id`` and that checkpoint's pending ``writes`` (values base64);
- ``attachment``: ``thread_id``, ``key`` and ``value`` (base64), after its thread's checkpoints;
- ``output``: ``record``, in store order (import keeps ids and ``created_at``, assigns new ``seq``);
- ``run``: ``run``, per agent in store order;
- ``document``: ``kind``, ``key`` and ``document``, for every kind in :data:`DOC_KINDS`;
- ``item``: long-term memory, ``namespace``, ``key``, ``value``, ``ttl`` (seconds) and ``vectors``;
- ``blob``: ``sha256``, ``mime`` and ``data`` (base64), the whole blob in one line;
- ``footer``: last line, the count of each type and the SHA-256 of every line between header and
  footer (as written, without newlines), so an import can tell a complete file from a cut one.

Only the public API of the faces is used, so any backend exports to any other. A record that
cannot be decoded is left out of the export and named in :attr:`Exporter.corrupt`; the rest goes
on. Item times restart on import (``created_at``/``updated_at`` become the import's time, and a
TTL counts from then).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from relaystore.errors import Conflict, CorruptRecord, InvalidInput, NotFound, NotSupported
from relaystore.models.adaptive import RunRecord
from relaystore.models.checkpoints import CheckpointMetadata, PendingWrite
from relaystore.models.common import Page, now_rfc3339
from relaystore.models.outputs import OutputRecord
from relaystore.stores import DOC_KINDS, AdaptiveStore, DocKind, Store
from relaystore.stores._applied import AlreadyApplied
from relaystore.stores.adaptive import ADAPTERS
from relaystore.stores.checkpoints import duplicate_conflict
from relaystore.stores.items import ItemWrite, StoredItem, encode_namespace

FORMAT = "relaystore-export"
VERSION = 2
READABLE_VERSIONS = (1, 2)
RECORD_TYPES = ("checkpoint", "write", "attachment", "output", "run", "document", "item", "blob")
LINE_TYPES = ("header", *RECORD_TYPES, "footer")
PAGE_SIZE = 200  # items per listing round trip: quick, and one page bounds memory

log = logging.getLogger("relaystore")


# --------------------------------------------------------------------------- line models


def _decode_base64(value: object) -> bytes:
    """Strict base64: a stray character is an error, not silently dropped."""
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not valid base64: {exc}") from exc


Base64 = Annotated[bytes, BeforeValidator(_decode_base64)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeaderLine(_Line):
    type: Literal["header"]
    format: Literal["relaystore-export"]
    version: Literal[1, 2]
    exported_at: str | None = None
    source: str | None = None


class CheckpointLine(_Line):
    type: Literal["checkpoint"]
    thread_id: str
    metadata: CheckpointMetadata
    state: Base64


class WireWrite(_Line):
    task_id: str
    idx: int
    channel: str
    value: Base64
    type: str | None = None
    task_path: str = ""


class WriteLine(_Line):
    type: Literal["write"]
    thread_id: str
    checkpoint_id: str
    writes: list[WireWrite]


class AttachmentLine(_Line):
    type: Literal["attachment"]
    thread_id: str
    key: str
    value: Base64


class OutputLine(_Line):
    type: Literal["output"]
    record: OutputRecord


class RunLine(_Line):
    type: Literal["run"]
    run: RunRecord


class DocumentLine(_Line):
    type: Literal["document"]
    kind: DocKind
    key: str
    document: Any  # validated by the store's own store_* method before anything is written


class ItemLine(_Line):
    type: Literal["item"]
    namespace: list[str]
    key: str
    value: dict[str, Any]
    ttl: float | None = None
    vectors: dict[str, list[float]] | None = None


class BlobLine(_Line):
    type: Literal["blob"]
    sha256: str
    mime: str | None = None
    data: Base64


class FooterLine(_Line):
    type: Literal["footer"]
    counts: dict[str, int]
    sha256: str


LINE_MODELS: dict[str, type[_Line]] = {
    "header": HeaderLine,
    "checkpoint": CheckpointLine,
    "write": WriteLine,
    "attachment": AttachmentLine,
    "output": OutputLine,
    "run": RunLine,
    "document": DocumentLine,
    "item": ItemLine,
    "blob": BlobLine,
    "footer": FooterLine,
}


def parse_line(text: str) -> _Line:
    """One validated line; :class:`InvalidInput` says what is wrong with it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"expected a JSON object, got {type(value).__name__}")
    kind = value.get("type")
    model = LINE_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise InvalidInput(f"unknown line type {kind!r}; expected one of {', '.join(LINE_TYPES)}")
    if kind == "header" and value.get("version") not in READABLE_VERSIONS:
        raise InvalidInput(
            f"export format version {value.get('version')!r}; this relaystore reads "
            f"{' and '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        line = model.model_validate(value)
        if isinstance(line, DocumentLine):
            # Checked here too (the store checks again) for a one-line message naming the field.
            ADAPTERS[line.kind].validate_python(line.document)
    except ValidationError as exc:
        raise InvalidInput(f"invalid {kind} line: {first_error(exc)}") from None
    return line


def first_error(exc: ValidationError) -> str:
    """``metadata.id: Field required (and 2 more errors)``: pydantic's report, on one line."""
    errors = exc.errors()
    where = ".".join(str(part) for part in errors[0]["loc"]) or "line"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {errors[0]['msg']}{more}"


def dump_line(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- documents by kind


def document_loaders(adaptive: AdaptiveStore) -> dict[str, Callable[[str], Awaitable[Any]]]:
    return {
        "plan": adaptive.load_plan,
        "trie": adaptive.load_trie,
        "accumulators": adaptive.load_accumulators,
        "acg_observations": adaptive.load_observations,
        "acg_stability": adaptive.load_stability,
    }


async def store_document(adaptive: AdaptiveStore, kind: DocKind, key: str, document: Any) -> None:
    """Write one document through the typed ``store_*`` method of its kind."""
    if kind == "plan":
        # NeMo Relay keys a plan by its own agent_id; an edited line must not move it silently.
        if isinstance(document, dict) and document.get("agent_id") != key:
            raise InvalidInput(f"plan key {key!r} differs from its agent_id {document.get('agent_id')!r}")
        await adaptive.store_plan(document)
    elif kind == "trie":
        await adaptive.store_trie(key, document)
    elif kind == "accumulators":
        await adaptive.store_accumulators(key, document)
    elif kind == "acg_observations":
        await adaptive.store_observations(key, document)
    else:
        await adaptive.store_stability(key, document)


def document_json(document: Any) -> Any:
    """The document as NeMo Relay's JSON value (observation windows are lists of models)."""
    if isinstance(document, list):
        return [item.to_dict() for item in document]
    return document.to_dict()


# --------------------------------------------------------------------------- checksums


class Tally:
    """Counts per line type and one SHA-256 over the record lines, in order (the footer's)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.documents: Counter[str] = Counter()
        self._digest = hashlib.sha256()

    def add(self, kind: str, text: str, line: dict[str, Any] | _Line) -> None:
        self.counts[kind] += 1
        if kind == "document":
            self.documents[line["kind"] if isinstance(line, dict) else line.kind] += 1  # type: ignore[attr-defined]
        self._digest.update(text.rstrip("\r\n").encode("utf-8"))
        self._digest.update(b"\n")

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def footer(self) -> dict[str, Any]:
        counts = {kind: self.counts[kind] for kind in RECORD_TYPES}
        return {"type": "footer", "counts": counts, "sha256": self.sha256}


# --------------------------------------------------------------------------- export


async def every(fetch: Callable[..., Awaitable[Page[Any]]]) -> AsyncIterator[Any]:
    """Every item of a cursor-paged listing, one page in memory at a time."""
    cursor: str | None = None
    while True:
        page = await fetch(limit=PAGE_SIZE, cursor=cursor)
        for item in page:
            yield item
        cursor = page.next_cursor
        if cursor is None:
            return


class _SkippedRecords(logging.Handler):
    """Collects the corrupt records that listings skip (they log each on ``relaystore``)."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for exc in args:
            # a backend that filters in Python rereads (and logs) a bad item on every page
            if isinstance(exc, CorruptRecord) and exc.key not in self.into:
                self.into.append(exc.key)


class Exporter:
    """Streams a store's lines: ``async for kind, line in Exporter(store).lines()``.

    After the last line, :attr:`tally` holds the counts and checksum (also written as the footer)
    and :attr:`corrupt` the keys of records that could not be read and were left out.
    """

    def __init__(self, store: Store, *, contents: bool = True) -> None:
        self.store = store
        self.contents = contents
        """False: read no attachment values and no blob bytes (blob lines then hold no data): a
        scan of everything that can be corrupt, as ``relaystore doctor`` runs it."""
        self.tally = Tally()
        self.corrupt: list[str] = []

    async def lines(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        yield "header", self._header()
        handler = _SkippedRecords(self.corrupt)
        log.addHandler(handler)
        try:
            for part in (self._threads, self._outputs, self._runs, self._documents, self._items, self._blobs):
                async for kind, line in part():
                    self.tally.add(kind, dump_line(line), line)
                    yield kind, line
        finally:
            log.removeHandler(handler)
        yield "footer", self.tally.footer()

    def _header(self) -> dict[str, Any]:
        return {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "exported_at": now_rfc3339(),
            "source": self.store.backend,
        }

    async def _threads(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        cps = self.store.checkpoints
        async for thread_id in every(cps.list_threads):
            async for bundle in every(partial(cps.list_full, thread_id, newest_first=False)):
                meta = bundle.metadata
                yield (
                    "checkpoint",
                    {
                        "type": "checkpoint",
                        "thread_id": thread_id,
                        "metadata": meta.model_dump(mode="json"),
                        "state": b64(bundle.state),
                    },
                )
                if bundle.writes:
                    yield "write", _write_line(thread_id, meta.id, bundle.writes)
            async for line in self._attachments(thread_id):
                yield "attachment", line

    async def _attachments(self, thread_id: str) -> AsyncIterator[dict[str, Any]]:
        """The thread's attachments (runtimes keep per-thread state there: LangGraph channel
        values, ADK session/app/user state), 100 values in memory at a time."""
        cps = self.store.checkpoints
        if not self.contents:
            return
        keys = [key async for key in every(partial(cps.list_attachments, thread_id))]
        for start in range(0, len(keys), 100):
            found = await cps.get_attachments(thread_id, keys[start : start + 100])
            for key, value in found.items():
                yield {"type": "attachment", "thread_id": thread_id, "key": key, "value": b64(value)}

    async def _outputs(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async for record in every(self.store.outputs.list):
            yield "output", {"type": "output", "record": record.model_dump(mode="json")}

    async def _runs(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        adaptive = self.store.adaptive
        async for agent in every(adaptive.list_agents):
            async for item in every(partial(adaptive.list_runs, agent)):
                yield "run", {"type": "run", "run": item.to_dict()}

    async def _documents(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        adaptive = self.store.adaptive
        loaders = document_loaders(adaptive)
        for kind in DOC_KINDS:
            async for key in every(partial(adaptive.list_keys, kind)):
                try:
                    document = await loaders[kind](key)
                except CorruptRecord as exc:
                    if exc.key not in self.corrupt:
                        self.corrupt.append(exc.key)
                    continue
                if document is not None:  # None: deleted since it was listed
                    line = {"type": "document", "kind": kind, "key": key, "document": document_json(document)}
                    yield "document", line

    async def _items(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            items = self.store.items
        except NotSupported:
            return
        offset, last = 0, ("", "")
        while True:
            found = await items.search((), limit=PAGE_SIZE, offset=offset, newest_first=False, vectors=True)
            # A short page is not the end: a backend may have left a corrupt item out of it.
            if not found:
                return
            offset += len(found)
            for item in found:
                # Where a skipped corrupt row still took its place in the offset, the next page
                # starts one early: items come in (namespace, key) order, so a repeat is dropped.
                place = (encode_namespace(item.namespace), item.key)
                if place <= last:
                    continue
                last = place
                yield "item", _item_line(item)

    async def _blobs(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            blobs = self.store.blobs
        except NotSupported:
            return
        async for blob in every(blobs.list):
            if not self.contents:
                yield "blob", {"type": "blob", "sha256": blob.sha256, "mime": blob.mime}
                continue
            try:
                data = await blobs.get(blob.sha256)
            except NotFound:  # deleted since it was listed
                continue
            yield "blob", {"type": "blob", "sha256": blob.sha256, "mime": blob.mime, "data": b64(data)}


def _item_line(item: StoredItem) -> dict[str, Any]:
    return {
        "type": "item",
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "ttl": item.ttl,
        "vectors": {k: list(v) for k, v in item.vectors.items()} if item.vectors else None,
    }


def _write_line(thread_id: str, checkpoint_id: str, writes: list[PendingWrite]) -> dict[str, Any]:
    return {
        "type": "write",
        "thread_id": thread_id,
        "checkpoint_id": checkpoint_id,
        "writes": [{**w.model_dump(exclude={"value"}), "value": b64(w.value)} for w in writes],
    }


# --------------------------------------------------------------------------- import


async def write_line(store: Store, line: _Line) -> None:
    """Store one parsed record line: a single library call, so a failure writes nothing of it."""
    if isinstance(line, CheckpointLine):
        saved = await store.checkpoints.save(line.thread_id, line.metadata, line.state)
        if isinstance(saved, AlreadyApplied):  # an import reports what was there (--skip-existing skips)
            raise duplicate_conflict(line.thread_id, saved)
    elif isinstance(line, WriteLine):
        writes = [PendingWrite(**w.model_dump()) for w in line.writes]
        await store.checkpoints.put_writes(line.thread_id, line.checkpoint_id, writes, replace=True)
    elif isinstance(line, AttachmentLine):
        await store.checkpoints.put_attachments(line.thread_id, {line.key: line.value})
    elif isinstance(line, OutputLine):
        await store.outputs.import_record(line.record)
    elif isinstance(line, RunLine):
        await store.adaptive.store_run(line.run)
    elif isinstance(line, DocumentLine):
        await store_document(store.adaptive, line.kind, line.key, line.document)
    elif isinstance(line, ItemLine):
        write = ItemWrite(tuple(line.namespace), line.key, line.value, line.ttl, line.vectors)
        await store.items.write([write])
    elif isinstance(line, BlobLine):
        await store.blobs.put(line.data, mime=line.mime, expected_sha256=line.sha256)


class Importer:
    """Writes lines to a store in order, counting them and checking the footer against them.

    ``skip_existing`` turns a :class:`Conflict` (a checkpoint, output or run already stored) into
    a skip, so an interrupted import can be run again; other kinds overwrite, which is the same.
    """

    def __init__(self, store: Store, skip_existing: bool) -> None:
        self.store = store
        self.skip_existing = skip_existing
        self.version: int | None = None
        self.footer: FooterLine | None = None
        self.tallies: list[Tally] = []  # one per concatenated export, each checked by its footer
        self.skipped: Counter[str] = Counter()

    async def add(self, text: str) -> None:
        """Validate and store one line; raise :class:`RelayStoreError` if it is bad."""
        line = parse_line(text)
        if isinstance(line, HeaderLine):
            self.finish(expect_more=True)  # a later header is fine: exports can be concatenated
            self.version = line.version
            self.footer = None
            self.tallies.append(Tally())
            return
        if self.version is None:
            raise InvalidInput(f"not a {FORMAT} file: the first line must be its header")
        if isinstance(line, FooterLine):
            self._check(line)
            self.footer = line
            return
        kind: str = line.type  # type: ignore[attr-defined]
        try:
            await write_line(self.store, line)
        except Conflict:
            if not self.skip_existing:
                raise
            self.skipped[kind] += 1
        self.tallies[-1].add(kind, text, line)

    def _check(self, footer: FooterLine) -> None:
        tally = self.tallies[-1]
        counts = {kind: tally.counts[kind] for kind in RECORD_TYPES}
        if footer.counts != counts or footer.sha256 != tally.sha256:
            raise InvalidInput(
                f"the export was altered: its footer lists {footer.counts} (sha256 {footer.sha256[:12]}…), "
                f"the lines before it {counts} (sha256 {tally.sha256[:12]}…)"
            )

    def imported(self) -> tuple[Counter[str], Counter[str]]:
        """Records written (lines read less those skipped) by type, and documents by kind."""
        counts: Counter[str] = Counter()
        documents: Counter[str] = Counter()
        for tally in self.tallies:
            counts.update(tally.counts)
            documents.update(tally.documents)
        counts.subtract(self.skipped)
        return counts, documents

    def checksums(self) -> list[str]:
        """The SHA-256 of each export read, as its footer states it (matched)."""
        return [t.sha256 for t in self.tallies]

    def finish(self, *, expect_more: bool = False) -> None:
        """Raise :class:`InvalidInput` for an empty input, or a version-2 file cut before its footer."""
        if self.version is None:
            if expect_more:
                return
            raise InvalidInput(f"empty input: not a {FORMAT} file")
        if self.version >= 2 and self.footer is None:
            raise InvalidInput(
                "the export ends before its footer: it was cut short (what came before is imported; "
                "export again, then import with --skip-existing)"
            )
