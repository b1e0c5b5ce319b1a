"""The Typer app and the options every command shares.

Errors: a relaystore error, or an OS error opening the store, ends the command with exit code 1
and one line on stderr, ``error: Kind: message``; with ``--json`` that line is a JSON object,
``{"error": "Kind", "message": "..."}``, still on stderr (stdout stays empty, so a pipe reading
JSON sees nothing half-written). Usage mistakes are click's, exit code 2.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import sys
import typing
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.text import Text
from typer.models import ArgumentInfo, OptionInfo

import relaystore
from relaystore._extras import installed, missing_extra
from relaystore.errors import NotFound, RelayStoreError, Unauthorized
from relaystore.stores import Store

T = TypeVar("T")
DEFAULT_URL = "sqlite:///./relaystore.db"
PIPE_WIDTH = 1_000  # piped output is not cut to a terminal's width; tables stay one row a line

app = typer.Typer(
    name="relaystore",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's help: paragraphs rewrapped whole, no <bool>/<str> labels
    context_settings={"max_content_width": 100},
)
console = Console()
err_console = Console(stderr=True)


def sub_app(help: str) -> typer.Typer:
    """A command group (``token``, ``memory``) with the main app's help style."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"relaystore {relaystore.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="RELAYSTORE_TOKEN",
            show_envvar=True,
            help="Bearer token for an http(s):// --url (an agent token, or the admin token for "
            "`token issue`/`token revoke`).",
        ),
    ] = None,
) -> None:
    """Inspect and move relaystore state: checkpoints, swarm outputs and adaptive state.

    Every command takes --url (default $RELAYSTORE_URL, else sqlite:///./relaystore.db) and most
    take --json. Reading commands never create a store: a sqlite path that does not exist is an
    error. Docs: docs/cli.md.
    """
    if token:
        os.environ["RELAYSTORE_TOKEN"] = token  # what the http:// backend and `token` read
    for out in (console, err_console):
        if "COLUMNS" not in os.environ and not out.file.isatty():
            out.width = PIPE_WIDTH


UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="RELAYSTORE_URL",
        help="Store URL (memory://, sqlite:///file.db, redis://, postgresql://, file:///dir, http://).",
    ),
]
_json_errors = contextvars.ContextVar("json_errors", default=False)


def _remember_json(value: bool) -> bool:
    _json_errors.set(value)  # for fail(): errors then come as JSON too
    return value


JsonOption = Annotated[
    bool, typer.Option("--json", callback=_remember_json, help="Print machine-readable JSON (errors too).")
]


def fail(kind: str, message: str) -> typer.Exit:
    """Print the one-line error (JSON with --json) and return the exit to raise."""
    if _json_errors.get():
        sys.stderr.write(json.dumps({"error": kind, "message": message}, ensure_ascii=False) + "\n")
    else:
        # Text, not markup: ids in messages may contain "[...]"; soft_wrap keeps it one line.
        err_console.print(Text.assemble(("error:", "red"), f" {kind}: {message}"), soft_wrap=True)
    return typer.Exit(1)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body; report relaystore and OS errors as one line and exit 1."""
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except RelayStoreError as exc:
        message = str(exc)
        if isinstance(exc, Unauthorized) and "RELAYSTORE_TOKEN" not in message:
            message += " (pass relaystore --token TOKEN, or set RELAYSTORE_TOKEN)"
        raise fail(type(exc).__name__, message) from None
    except OSError as exc:  # the store's path: a missing parent, a parent that is a file, no rights
        where = f" {exc.filename}" if exc.filename else ""
        raise fail(type(exc).__name__, f"{exc.strerror or exc}:{where} (fix the path in --url)") from None


def open_existing(url: str) -> AbstractAsyncContextManager[Store]:
    """Open the store at ``url`` for a reading command, which must not create one.

    A store kept in local files (``sqlite://``, ``file://``: its options carry ``local_path``)
    whose path does not exist raises :class:`NotFound` (a typo would otherwise leave an empty
    store, and its directories, behind). Writing commands use :func:`relaystore.connect`, which
    creates.
    """
    from relaystore.backends import parse_url

    path = getattr(parse_url(url), "local_path", None)
    if path is not None and not path.exists():
        raise NotFound(  # the URL as the user wrote it, to spot the typo
            f"no store at {url}: {path} does not exist (check the path in --url; a writing "
            "command such as import or serve creates it)"
        )
    return relaystore.connect(url)


def require_server(command: str) -> None:
    """Exit with one line naming the ``server`` extra when ``command`` cannot run without it."""
    if not installed("starlette", "uvicorn", "jwt", "prometheus_client", "httpx"):
        raise fail("ImportError", str(missing_extra(f"relaystore {command}", "server")))


_METAVARS = {
    "limit": "N",
    "offset": "N",
    "body_limit": "SIZE",
    "blob_limit": "SIZE",
    "header_limit": "SIZE",
    "memory_budget": "SIZE",
    "file_roots": "DIR",
    "state_dir": "DIR",
    "tenant_url": "URL",
    "reads": "REF",
    "admin_token_file": "FILE",
    "graceful_timeout": "SECONDS",
    "header_timeout": "SECONDS",
    "body_timeout": "SECONDS",
    "keep_alive": "SECONDS",
    "max_connections": "N",
    "token_share": "FRACTION",
    "log_level": "LEVEL",
    "after": "RUN_ID",
}


def name_values(group: typer.Typer) -> None:
    """Give every option and argument a word for its value (``--url URL``), in place of the type
    labels (``<str>``) Typer shows otherwise."""
    callbacks = [info.callback for info in (group.registered_callback, *group.registered_commands) if info]
    for callback in callbacks:
        # Evaluated once and kept: string annotations would give Typer fresh, unnamed copies.
        hints = typing.get_type_hints(callback, include_extras=True)
        for name, hint in hints.items():
            for meta in getattr(hint, "__metadata__", ()):
                is_value = isinstance(meta, ArgumentInfo | OptionInfo) and hint.__origin__ is not bool
                if is_value and meta.metavar is None:
                    meta.metavar = _METAVARS.get(name, name.upper())
        callback.__annotations__ = hints
    # Typer labels an argument with its Python type too (``THREAD <str>``); its name says enough.
    typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            name_values(sub.typer_instance)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")


def default_url() -> str:
    return os.environ.get("RELAYSTORE_URL", DEFAULT_URL)
