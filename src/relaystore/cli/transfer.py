"""``export`` and ``import``: move everything a store holds to any other backend as JSON Lines.

The format (version 1) is one JSON object per line, each with a ``"type"``:

- ``header``: first line, ``{"type":"header","format":"relaystore-export","version":1,...}``;
- ``checkpoint``: ``thread_id``, ``metadata`` and ``state`` (base64), in each thread's store order;
- ``output``: ``record``, in store order (import keeps ids and ``created_at``, assigns new ``seq``);
- ``run``: ``run``, per agent in store order;
- ``document``: ``kind``, ``key`` and ``document``, for every kind in :data:`DOC_KINDS`;
- ``attachment``: ``thread_id``, ``key`` and ``value`` (base64), after its thread's checkpoints;
- ``blob``: ``sha256``, ``mime`` and ``data`` (base64), the whole blob in one line.

Both commands use only the public library API, so they work from and to every backend.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import typer
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from rich import box
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import relaystore
from relaystore.cli._paging import every
from relaystore.cli.app import (
    DEFAULT_URL,
    JsonOption,
    UrlOption,
    app,
    err_console,
    open_existing,
    print_json,
    run,
)
from relaystore.errors import Conflict, InvalidInput, NotFound, RelayStoreError
from relaystore.models.adaptive import RunRecord
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.models.common import now_rfc3339
from relaystore.models.outputs import OutputRecord
from relaystore.stores import DOC_KINDS, AdaptiveStore, DocKind, Store, redact
from relaystore.stores.adaptive import ADAPTERS

FORMAT = "relaystore-export"
VERSION = 1
LINE_TYPES = ("header", "checkpoint", "output", "run", "document", "attachment", "blob")


# --------------------------------------------------------------------------- line models


def _decode_base64(value: object) -> bytes:
    """Strict base64: a stray character is an error, not silently dropped."""
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not valid base64: {exc}") from exc


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeaderLine(_Line):
    type: Literal["header"]
    format: Literal["relaystore-export"]
    version: Literal[1]
    exported_at: str | None = None
    source: str | None = None


class CheckpointLine(_Line):
    type: Literal["checkpoint"]
    thread_id: str
    metadata: CheckpointMetadata
    state: Annotated[bytes, BeforeValidator(_decode_base64)]


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


class AttachmentLine(_Line):
    type: Literal["attachment"]
    thread_id: str
    key: str
    value: Annotated[bytes, BeforeValidator(_decode_base64)]


class BlobLine(_Line):
    type: Literal["blob"]
    sha256: str
    mime: str | None = None
    data: Annotated[bytes, BeforeValidator(_decode_base64)]


LINE_MODELS: dict[str, type[_Line]] = {
    "attachment": AttachmentLine,
    "blob": BlobLine,
    "header": HeaderLine,
    "checkpoint": CheckpointLine,
    "output": OutputLine,
    "run": RunLine,
    "document": DocumentLine,
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
    if kind == "header" and value.get("version") != VERSION:
        raise InvalidInput(f"export format version {value.get('version')!r}; this relaystore reads {VERSION}")
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


# --------------------------------------------------------------------------- progress and summary


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[tuple[Progress, TaskID]]:
    """A progress bar on stderr; hidden when stderr is not a terminal, never touching stdout."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    with progress:
        yield progress, progress.add_task(description, total=total, counts="")


def describe_counts(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[kind]} {kind}s" for kind in LINE_TYPES[1:] if counts[kind])


def summary(
    counts: Counter[str], documents: Counter[str], skipped: Counter[str] | None = None
) -> dict[str, Any]:
    """Counts per line type (and per document kind) as the ``--json`` summary."""
    result: dict[str, Any] = {
        "counts": {kind: counts[kind] for kind in LINE_TYPES[1:]},
        "documents": {kind: documents[kind] for kind in DOC_KINDS},
    }
    if skipped is not None:
        result["skipped"] = {kind: skipped[kind] for kind in LINE_TYPES[1:]}
    return result


def print_summary(title: str, result: dict[str, Any]) -> None:
    """The summary as a small table on stderr."""
    table = Table("type", "count", box=box.SIMPLE_HEAD, title=Text(title), title_justify="left")
    skipped = result.get("skipped", {})
    if skipped:
        table.add_column("skipped (existing)")
    for kind, count in result["counts"].items():
        table.add_row(kind, str(count), *([str(skipped[kind])] if skipped else []))
    for kind, count in result["documents"].items():
        table.add_row(f"  {kind}", str(count), *([""] if skipped else []))
    err_console.print(table)


# --------------------------------------------------------------------------- export


async def export_lines(store: Store) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(type, line)`` for everything in the store: header, checkpoints, outputs, runs, documents."""
    yield (
        "header",
        {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "exported_at": now_rfc3339(),
            "source": store.backend,
        },
    )
    cps = store.checkpoints
    async for thread_id in every(cps.list_threads):
        async for meta in every(partial(cps.list, thread_id)):
            try:
                _, state = await cps.load(thread_id, meta.id)
            except NotFound:  # deleted since it was listed
                continue
            yield (
                "checkpoint",
                {
                    "type": "checkpoint",
                    "thread_id": thread_id,
                    "metadata": meta.model_dump(mode="json"),
                    "state": base64.b64encode(state).decode("ascii"),
                },
            )
        async for line in _attachment_lines(store, thread_id):
            yield "attachment", line
    async for record in every(store.outputs.list):
        yield "output", {"type": "output", "record": record.model_dump(mode="json")}
    adaptive = store.adaptive
    async for agent in every(adaptive.list_agents):
        async for item in every(partial(adaptive.list_runs, agent)):
            yield "run", {"type": "run", "run": item.to_dict()}
    loaders = document_loaders(adaptive)
    for kind in DOC_KINDS:
        async for key in every(partial(adaptive.list_keys, kind)):
            document = await loaders[kind](key)
            if document is not None:  # None: deleted since it was listed
                yield (
                    "document",
                    {"type": "document", "kind": kind, "key": key, "document": document_json(document)},
                )

    async for line in _blob_lines(store):
        yield "blob", line


async def _attachment_lines(store: Store, thread_id: str) -> AsyncIterator[dict[str, Any]]:
    """The thread's attachments (runtimes keep per-thread state there: LangGraph channel values,
    ADK session/app/user state)."""
    cps = store.checkpoints
    try:
        keys = [key async for key in every(partial(cps.list_attachments, thread_id))]
    except InvalidInput:  # a backend without attachments
        return
    for start in range(0, len(keys), 100):
        found = await cps.get_attachments(thread_id, keys[start : start + 100])
        for key, value in found.items():
            encoded = base64.b64encode(value).decode("ascii")
            yield {"type": "attachment", "thread_id": thread_id, "key": key, "value": encoded}


async def _blob_lines(store: Store) -> AsyncIterator[dict[str, Any]]:
    try:
        blobs = store.blobs
    except InvalidInput:  # a backend without blobs
        return
    async for blob in every(blobs.list):
        try:
            data = await blobs.get(blob.sha256)
        except NotFound:  # deleted since it was listed
            continue
        yield {
            "type": "blob",
            "sha256": blob.sha256,
            "mime": blob.mime,
            "data": base64.b64encode(data).decode("ascii"),
        }


async def export_to(url: str, sink: IO[str]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    documents: Counter[str] = Counter()
    async with open_existing(url) as store:
        with progress_bar(f"exporting {store.backend}") as (progress, task):
            async for kind, line in export_lines(store):
                sink.write(dump_line(line) + "\n")
                if kind == "header":
                    continue
                counts[kind] += 1
                if kind == "document":
                    documents[line["kind"]] += 1
                progress.update(task, advance=1, counts=describe_counts(counts))
    return summary(counts, documents)


@contextmanager
def replaced_on_success(path: Path) -> Iterator[IO[str]]:
    """Write to ``path.partial`` and rename it over ``path`` only if the export completes."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            yield handle
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@app.command("export")
def export(
    url: UrlOption = DEFAULT_URL,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help="Write here instead of stdout.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Export every checkpoint, output, run and document as JSON Lines (stdout or --output).

    Counts go to stderr at the end; with --json they are one JSON document, on stdout when
    --output is given and on stderr otherwise (stdout then carries the export itself).
    """
    if output is None:
        result = run(lambda: export_to(url, sys.stdout))
    else:
        with replaced_on_success(output) as handle:
            result = run(lambda: export_to(url, handle))
    if as_json:
        if output is None:
            err_console.file.write(json.dumps(result) + "\n")
        else:
            print_json(result)
    else:
        print_summary(f"exported to {output or 'stdout'}", result)


# --------------------------------------------------------------------------- import


async def write_line(store: Store, line: _Line) -> None:
    """Store one parsed line: a single library call, so a failure writes nothing of it."""
    if isinstance(line, CheckpointLine):
        await store.checkpoints.save(line.thread_id, line.metadata, line.state)
    elif isinstance(line, OutputLine):
        await store.outputs.import_record(line.record)
    elif isinstance(line, RunLine):
        await store.adaptive.store_run(line.run)
    elif isinstance(line, DocumentLine):
        await store_document(store.adaptive, line.kind, line.key, line.document)
    elif isinstance(line, AttachmentLine):
        await store.checkpoints.put_attachments(line.thread_id, {line.key: line.value})
    elif isinstance(line, BlobLine):
        await store.blobs.put(line.data, mime=line.mime, expected_sha256=line.sha256)


def numbered_lines(source: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line; bad UTF-8 is reported by line."""
    for number, raw in enumerate(source, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"line {number}: not UTF-8 text ({exc.reason})") from None
        if text.strip():
            yield number, text


class Importer:
    """Writes parsed lines to a store, counting them; remembers whether the header was seen."""

    def __init__(self, store: Store, skip_existing: bool) -> None:
        self.store = store
        self.skip_existing = skip_existing
        self.seen_header = False
        self.counts: Counter[str] = Counter()
        self.documents: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    async def add(self, text: str) -> None:
        """Validate and store one line; raise :class:`RelayStoreError` if it is bad."""
        line = parse_line(text)
        if isinstance(line, HeaderLine):
            self.seen_header = True  # a later header is fine: exports can be concatenated
            return
        if not self.seen_header:
            raise InvalidInput(f"not a {FORMAT} file: the first line must be its header")
        kind: str = line.type  # type: ignore[attr-defined]
        try:
            await write_line(self.store, line)
        except Conflict:
            if not self.skip_existing:
                raise
            self.skipped[kind] += 1
            return
        self.counts[kind] += 1
        if isinstance(line, DocumentLine):
            self.documents[line.kind] += 1

    def summary(self) -> dict[str, Any]:
        return summary(self.counts, self.documents, self.skipped if self.skip_existing else None)


async def import_from(
    url: str, source: Iterable[bytes], skip_existing: bool, size: int | None
) -> dict[str, Any]:
    async with relaystore.connect(url) as store:
        importer = Importer(store, skip_existing)
        with progress_bar(f"importing into {store.backend}", total=size) as (progress, task):
            for number, text in numbered_lines(source):
                try:
                    await importer.add(text)
                except RelayStoreError as exc:
                    exc.args = (f"line {number}: {exc}",)  # same class, so the message says what failed
                    raise
                progress.update(task, advance=len(text.encode()), counts=describe_counts(importer.counts))
    if not importer.seen_header:
        raise InvalidInput(f"empty input: not a {FORMAT} file")
    return importer.summary()


def stdin_bytes() -> Iterable[bytes]:
    """Standard input as byte lines, so that bad UTF-8 is reported with its line number."""
    buffer = getattr(sys.stdin, "buffer", None)
    return buffer if buffer is not None else (text.encode("utf-8") for text in sys.stdin)


@app.command("import")
def import_(
    url: UrlOption = DEFAULT_URL,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", "-i", exists=True, dir_okay=False, help="Read this file instead of stdin."),
    ] = None,
    skip_existing: Annotated[
        bool,
        typer.Option("--skip-existing", help="Skip checkpoints, outputs and runs already stored (resume)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Import a JSON Lines export (stdin or --input) into the store at --url.

    Lines are validated and written one by one; a bad line stops the import with its line
    number, and nothing of that line is written (earlier lines stay: rerun with --skip-existing).
    """
    if input_file is None:
        result = run(lambda: import_from(url, stdin_bytes(), skip_existing, None))
    else:
        with input_file.open("rb") as handle:
            size = input_file.stat().st_size
            result = run(lambda: import_from(url, handle, skip_existing, size))
    if as_json:
        print_json(result)
    else:
        print_summary(f"imported into {redact(url)}", result)
