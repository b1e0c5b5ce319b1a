"""``doctor``: report corrupt records and untrusted counters; ``--repair`` rebuilds counters.

Thin over :func:`relaystore.stores.doctor.diagnose`. Exit status: 0 when the store is healthy
(after repairs), 1 for an error reaching it, 2 when corrupt records or untrusted counters remain.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from relaystore.cli.app import (
    DEFAULT_URL,
    JsonOption,
    UrlOption,
    app,
    console,
    open_existing,
    print_json,
    run,
)
from relaystore.stores.doctor import DoctorReport, diagnose


async def _diagnose(url: str, repair: bool) -> DoctorReport:
    async with open_existing(url) as store:
        return await diagnose(store, repair=repair)


def _print(report: DoctorReport) -> None:
    read = ", ".join(f"{n} {kind}s" for kind, n in report.read.items()) or "nothing"
    console.print(Text(f"read {read}"), soft_wrap=True)
    for key in report.corrupt:
        console.print(Text.assemble(("corrupt ", "yellow"), key), soft_wrap=True)
    for check in report.counters:
        if check.repaired:
            line = Text.assemble(
                ("repaired ", "green"), f"{check.name}: {check.detail}; now {check.expected}"
            )
        elif check.trusted:
            line = Text.assemble(("ok ", "green"), f"{check.name} ({check.stored})")
        else:
            line = Text.assemble(("untrusted ", "red"), f"{check.name}: {check.detail} (run with --repair)")
        console.print(line, soft_wrap=True)
    if report.corrupt:
        console.print(
            Text(
                f"{len(report.corrupt)} corrupt record(s): reads of them fail and listings skip them; "
                "delete or overwrite them (export leaves them out)"
            ),
            soft_wrap=True,
        )
    console.print(Text("healthy" if report.healthy else "not healthy", style="bold"), soft_wrap=True)


@app.command("doctor")
def doctor(
    url: UrlOption = DEFAULT_URL,
    repair: Annotated[
        bool, typer.Option("--repair", help="Rebuild untrusted counters from the records they number.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check a store: name every corrupt record and every counter the data does not back.

    Every record is read (blob bytes aside). Counters kept beside the data (the file backend's seq
    file, Redis' seq keys) are compared with the highest number in use; --repair rewrites the
    untrusted ones from it. Corrupt records are only reported. Exits 2 if anything is left.
    """
    report = run(lambda: _diagnose(url, repair))
    if as_json:
        print_json(report.to_dict())
    else:
        _print(report)
    if not report.healthy:
        raise typer.Exit(2)
