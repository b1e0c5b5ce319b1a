"""``relaystore serve``: run the HTTP server (Starlette under uvicorn) in front of a store."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from relaystore.backends import open_backend
from relaystore.cli.app import DEFAULT_URL, UrlOption, app, err_console, require_server, run
from relaystore.errors import InvalidInput

_SIZE = re.compile(r"^(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)$")
_FACTOR = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64KiB``, ``8M`` or ``1GiB`` (binary units); InvalidInput otherwise."""
    match = _SIZE.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"a size is a positive number of bytes with an optional KiB/MiB/GiB, got {text!r}")
    return int(match.group(1)) * _FACTOR[match.group(2)]


def parse_umask(text: str) -> int:
    """The umask from octal text such as ``077`` or ``0o027``; InvalidInput otherwise."""
    try:
        value = int(text.removeprefix("0o"), 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise InvalidInput(f"--umask is an octal number such as 077, got {text!r}")
    return value


@app.command()
def serve(
    url: UrlOption = DEFAULT_URL,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8787,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Where admin-token and signing-key live (default: .relaystore/ "
            "beside a sqlite or file store, else ./.relaystore).",
        ),
    ] = None,
    admin_token_file: Annotated[
        Path | None, typer.Option("--admin-token-file", help="Read (or create) the admin token here.")
    ] = None,
    body_limit: Annotated[
        str, typer.Option("--body-limit", help="Largest JSON or checkpoint body.")
    ] = "8MiB",
    blob_limit: Annotated[str, typer.Option("--blob-limit", help="Largest blob upload.")] = "4GiB",
    memory_budget: Annotated[
        str, typer.Option("--memory-budget", help="Request data held at once, all requests together.")
    ] = "96MiB",
    file_roots: Annotated[
        list[Path] | None,
        typer.Option("--file-root", help="Directory file_ref paths may point into (repeatable)."),
    ] = None,
    tenant_url: Annotated[
        str | None,
        typer.Option("--tenant-url", help="Store URL template with {tenant}: serves /t/NAME/… from it."),
    ] = None,
    graceful_timeout: Annotated[
        int,
        typer.Option("--graceful-timeout", min=1, help="Seconds to let in-flight requests finish on stop."),
    ] = 30,
    max_connections: Annotated[
        int, typer.Option("--max-connections", min=1, help="Open connections at once; more get 503.")
    ] = 1000,
    header_timeout: Annotated[
        float, typer.Option("--header-timeout", min=0.1, help="Seconds to send complete headers (408).")
    ] = 10.0,
    header_limit: Annotated[
        str, typer.Option("--header-limit", help="Largest request line + headers (16KiB to 64KiB).")
    ] = "64KiB",
    body_timeout: Annotated[
        float, typer.Option("--body-timeout", min=0.1, help="Seconds a body may send nothing (408).")
    ] = 10.0,
    keep_alive: Annotated[
        int, typer.Option("--keep-alive-timeout", min=1, help="Seconds an idle kept-alive connection lives.")
    ] = 5,
    token_share: Annotated[
        float,
        typer.Option("--token-share", min=0.01, max=1.0, help="Part of --memory-budget one token may hold."),
    ] = 0.5,
    umask: Annotated[
        str,
        typer.Option("--umask", help="Octal umask for files the store creates (077: 0600 files, 0700 dirs)."),
    ] = "077",
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    resp: Annotated[
        str | None,
        typer.Option("--resp", help="Also speak Redis (RESP) on HOST:PORT for NeMo Relay (docs/resp.md)."),
    ] = None,
    resp_prefix: Annotated[
        str, typer.Option("--resp-prefix", help="NeMo Relay's key_prefix: keys under it are adaptive state.")
    ] = "nemo_relay:",
    resp_frame_limit: Annotated[
        str, typer.Option("--resp-frame-limit", help="Largest RESP command; more closes the connection.")
    ] = "8MiB",
    http: Annotated[
        bool, typer.Option("--http/--no-http", help="Serve HTTP (--no-http: only --resp).")
    ] = True,
) -> None:
    """Serve the store at --url over HTTP (routes and auth: docs/server.md).

    On first start it writes a random admin token and a token-signing key (mode 0600) to the state
    directory and prints where they are. Stop it with Ctrl-C or SIGTERM: requests in flight finish,
    then the store is closed.
    """
    require_server("serve")
    import uvicorn

    from relaystore.server import create_app
    from relaystore.server.guard import (
        ConnectionLimits,
        guarded_protocol,
        log_to_stderr,
        raise_fd_limit,
        rate_limit_logs,
        redact_access_log,
    )
    from relaystore.server.tokens import load_secrets, state_dir_for

    async def prepare() -> tuple[object, str, str]:
        os.umask(parse_umask(umask))  # before the store opens: its database, WAL and dirs
        if not 16 * 1024 <= parse_size(header_limit) <= 64 * 1024:
            raise InvalidInput(f"--header-limit must be between 16KiB and 64KiB, got {header_limit}")
        await (await open_backend(url)).close()  # a bad URL or a store that is down: one line, now
        secrets = load_secrets(state_dir or state_dir_for(url), admin_token_file=admin_token_file)
        application = create_app(
            url,
            admin_token=secrets.admin_token,
            signing_key=secrets.signing_key,
            body_limit=parse_size(body_limit),
            blob_limit=parse_size(blob_limit),
            memory_budget=parse_size(memory_budget),
            file_roots=file_roots or (),
            tenant_url=tenant_url,
            body_timeout=body_timeout,
            token_share=token_share,
        )
        return application, secrets.admin_token_source, secrets.signing_key_source

    if not http:
        _serve_resp_only(url, state_dir, admin_token_file, umask, resp, resp_prefix, resp_frame_limit)
        return
    application, admin_source, key_source = run(prepare)
    if resp is not None:
        from relaystore.server.resp import attach

        resp_host, resp_port = _resp_address(resp)
        attach(application, resp_host, resp_port, **_resp_options(resp_prefix, resp_frame_limit))
        err_console.print(Text(f"relaystore: serving {url} over RESP on {resp_host}:{resp_port}"))
    err_console.print(Text(f"relaystore: serving {url} on http://{host}:{port}"))
    err_console.print(Text(f"relaystore: admin token in {admin_source}; signing key in {key_source}"))
    limits = ConnectionLimits(
        max_connections=raise_fd_limit(max_connections),
        header_timeout=header_timeout,
        header_limit=parse_size(header_limit),
        budget=application.state.config.budget,  # type: ignore[attr-defined]
    )
    config = uvicorn.Config(
        application,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_protocol(limits),
        timeout_keep_alive=keep_alive,
        timeout_graceful_shutdown=graceful_timeout,
        h11_max_incomplete_event_size=parse_size(header_limit),
    )
    rate_limit_logs()  # after uvicorn.Config, which (re)configures logging
    redact_access_log()
    log_to_stderr(log_level)
    uvicorn.Server(config).run()


def _resp_address(text: str) -> tuple[str, int]:
    from relaystore.server.resp.listener import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--resp") from None


def _resp_options(prefix: str, frame_limit: str) -> dict[str, object]:
    try:
        return {"prefix": prefix, "frame_limit": parse_size(frame_limit)}
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--resp-frame-limit") from None


def _serve_resp_only(
    url: str,
    state_dir: Path | None,
    admin_token_file: Path | None,
    umask: str,
    resp: str | None,
    prefix: str,
    frame_limit: str,
) -> None:
    """``serve --no-http --resp HOST:PORT``: the RESP listener alone, until Ctrl-C or SIGTERM."""
    from relaystore.server.resp import serve_alone
    from relaystore.server.tokens import load_secrets, state_dir_for

    if resp is None:
        raise typer.BadParameter("--no-http needs --resp HOST:PORT (there would be nothing to serve)")
    host, port = _resp_address(resp)
    options = _resp_options(prefix, frame_limit)

    async def work() -> None:
        os.umask(parse_umask(umask))
        secrets = load_secrets(state_dir or state_dir_for(url), admin_token_file=admin_token_file)
        err_console.print(Text(f"relaystore: serving {url} over RESP on {host}:{port}"))
        err_console.print(Text(f"relaystore: admin token in {secrets.admin_token_source}"))
        await serve_alone(url, secrets.admin_token, secrets.signing_key, host, port, **options)

    run(work)
