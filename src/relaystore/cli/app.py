"""The Typer app and the options every command shares."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from relaystore.errors import RelayStoreError

T = TypeVar("T")
DEFAULT_URL = "sqlite:///./relaystore.db"

app = typer.Typer(
    name="relaystore",
    help="Inspect and move relaystore state: checkpoints, swarm outputs and adaptive state.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="RELAYSTORE_URL",
        help="Store URL (memory://, sqlite:///file.db, redis://, postgresql://, file:///dir, http://).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body; report relaystore errors as one line and exit 1."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except RelayStoreError as exc:
        # Text, not markup: ids in messages may contain "[...]"; soft_wrap keeps it one line.
        err_console.print(Text.assemble(("error:", "red"), f" {type(exc).__name__}: {exc}"), soft_wrap=True)
        raise typer.Exit(1) from None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def default_url() -> str:
    return os.environ.get("RELAYSTORE_URL", DEFAULT_URL)
