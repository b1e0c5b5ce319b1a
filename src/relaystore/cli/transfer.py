"""``export`` and ``import``: move everything a store holds to any other backend as JSON Lines.

The format and the streaming live in :mod:`relaystore.stores.transfer` (a library API as well);
this module adds the progress bar on a terminal, the summary and the command-line options.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import relaystore
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
from relaystore.errors import InvalidInput, RelayStoreError
from relaystore.stores import DOC_KINDS, redact
from relaystore.stores.transfer import RECORD_TYPES, Exporter, Importer, dump_line

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
    return ", ".join(f"{counts[kind]} {kind}s" for kind in RECORD_TYPES if counts[kind])


def summary(
    counts: Counter[str],
    documents: Counter[str],
    checksums: list[str],
    *,
    skipped: Counter[str] | None = None,
    corrupt: list[str] | None = None,
) -> dict[str, Any]:
    """Counts per record type (and per document kind), checksums and what was left out: the
    ``--json`` summary."""
    result: dict[str, Any] = {
        "counts": {kind: counts[kind] for kind in RECORD_TYPES},
        "documents": {kind: documents[kind] for kind in DOC_KINDS},
        "sha256": checksums,
    }
    if skipped is not None:
        result["skipped"] = {kind: skipped[kind] for kind in RECORD_TYPES}
    if corrupt is not None:
        result["corrupt"] = corrupt
    return result


def print_summary(title: str, result: dict[str, Any]) -> None:
    """The summary as a small table on stderr, then the checksums and any corrupt records."""
    table = Table("type", "count", box=box.SIMPLE_HEAD, title=Text(title), title_justify="left")
    skipped = result.get("skipped", {})
    if skipped:
        table.add_column("skipped (existing)")
    for kind, count in result["counts"].items():
        table.add_row(kind, str(count), *([str(skipped[kind])] if skipped else []))
    for kind, count in result["documents"].items():
        table.add_row(f"  {kind}", str(count), *([""] if skipped else []))
    err_console.print(table)
    for digest in result["sha256"]:
        err_console.print(Text(f"sha256 of the records: {digest} (verified by import against the footer)"))
    corrupt = result.get("corrupt") or []
    if corrupt:
        err_console.print(
            Text(f"left out {len(corrupt)} corrupt record(s): {', '.join(corrupt)}", style="yellow")
        )


# --------------------------------------------------------------------------- export


async def export_to(url: str, sink: IO[str]) -> dict[str, Any]:
    async with open_existing(url) as store:
        exporter = Exporter(store)
        with progress_bar(f"exporting {store.backend}") as (progress, task):
            async for kind, line in exporter.lines():
                sink.write(dump_line(line) + "\n")
                if kind not in ("header", "footer"):
                    progress.update(task, advance=1, counts=describe_counts(exporter.tally.counts))
    tally = exporter.tally
    return summary(tally.counts, tally.documents, [tally.sha256], corrupt=exporter.corrupt)


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
    """Export everything the store holds as JSON Lines (stdout or --output), verified by a footer.

    Checkpoints with their pending writes and attachments, outputs, runs, adaptive documents,
    long-term memory items and blobs. A record that cannot be read is left out and named at the end.

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


def numbered_lines(source: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line; bad UTF-8 is reported by line."""
    for number, raw in enumerate(source, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"line {number}: not UTF-8 text ({exc.reason})") from None
        if text.strip():
            yield number, text


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
                counts, _ = importer.imported()
                progress.update(task, advance=len(text.encode()), counts=describe_counts(counts))
    importer.finish()
    counts, documents = importer.imported()
    skipped = importer.skipped if skip_existing else None
    return summary(counts, documents, importer.checksums(), skipped=skipped)


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
