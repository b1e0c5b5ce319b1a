"""``relaystore token issue``: a scoped, expiring token for one sub-agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from relaystore.backends import scheme_of
from relaystore.cli.app import (
    DEFAULT_URL,
    JsonOption,
    UrlOption,
    app,
    print_json,
    require_server,
    run,
    sub_app,
)


def names_a_server(url: str) -> bool:
    """True for the URL of a running relaystore server (``http(s)://``), which signs and revokes
    tokens itself with the key only it holds; any other URL is a store opened here."""
    return scheme_of(url) in ("http", "https")


token_app = sub_app("Issue and revoke tokens for sub-agents.")
app.add_typer(token_app, name="token")


@token_app.command("issue")
def issue(
    task: Annotated[str, typer.Option("--task", help="The task the agent works on.")],
    attempt: Annotated[int, typer.Option("--attempt", min=0, help="Its attempt number.")],
    producer: Annotated[str, typer.Option("--producer", help="The producer_agent it appends as.")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime: 90s, 15m, 1h, 2d (at most 30d).")] = "1h",
    reads: Annotated[
        list[str] | None, typer.Option("--read", help="An output ref handed over (IN_REFS), repeatable.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    admin_token: Annotated[
        str | None,
        typer.Option(
            "--admin-token", envvar="RELAYSTORE_TOKEN", help="For an http:// --url: the admin token."
        ),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="For a local --url: where the signing key is.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a token that appends only as (task, attempt, producer) and reads only that task's
    outputs and the --read refs.

    With an http(s):// --url the running server issues it (admin token needed); otherwise it is
    signed here with the key that `relaystore serve` keeps in the state directory.
    """
    require_server("token issue")
    from relaystore.server.tokens import (
        issue_token,
        load_signing_key,
        parse_ttl,
        request_token,
        state_dir_for,
        store_id,
    )

    async def work() -> str:
        if names_a_server(url):
            if not admin_token:
                from relaystore.errors import Unauthorized

                raise Unauthorized(
                    "an http:// --url needs the admin token (--admin-token or RELAYSTORE_TOKEN)"
                )
            return request_token(
                url, admin_token, task=task, attempt=attempt, producer=producer, ttl=ttl, reads=reads or ()
            )
        key = load_signing_key(state_dir or state_dir_for(url))
        return issue_token(
            key,
            task=task,
            attempt=attempt,
            producer=producer,
            ttl=parse_ttl(ttl),
            reads=reads or (),
            audience=store_id(url),
        )

    token = run(work)
    if as_json:
        from relaystore.server.tokens import unverified_claims

        claims = unverified_claims(token)
        print_json(
            {
                "token": token,
                "jti": claims["jti"],
                "expires_at": claims["exp"],
                "task": task,
                "attempt": attempt,
                "producer": producer,
                "read": reads or [],
            }
        )
    else:
        typer.echo(token)


@token_app.command("adaptive")
def adaptive(
    agents: Annotated[list[str], typer.Option("--agent", help="An agent id it may use (repeatable).")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime: 90s, 15m, 1h, 2d (at most 30d).")] = "1h",
    url: UrlOption = DEFAULT_URL,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Where `relaystore serve` keeps the signing key.")
    ] = None,
) -> None:
    """Print a token for `serve --resp` (NeMo Relay's Redis password) that may use only the keys
    of the --agent ids (docs/resp.md). Signed here with the server's key; --url is the store."""
    from relaystore.errors import InvalidInput
    from relaystore.server.tokens import issue_adaptive_token, load_signing_key, state_dir_for, store_id

    async def work() -> str:
        if names_a_server(url):
            raise InvalidInput(
                "pass the store's own URL as --url (the one `serve --url` has), not the server's"
            )
        key = load_signing_key(state_dir or state_dir_for(url))
        return issue_adaptive_token(key, agents=agents, audience=store_id(url), ttl=ttl)

    typer.echo(run(work))


@token_app.command("revoke")
def revoke_command(
    jti: Annotated[
        str, typer.Argument(help="The token's id (its jti claim; `token issue --json` shows it).")
    ],
    url: UrlOption = DEFAULT_URL,
    admin_token: Annotated[
        str | None,
        typer.Option(
            "--admin-token", envvar="RELAYSTORE_TOKEN", help="For an http:// --url: the admin token."
        ),
    ] = None,
) -> None:
    """Refuse the agent token JTI from now on, on every server of the store at --url.

    The deny-list lives in the store, so a server revokes it for all its replicas; a local --url
    writes it straight into the store (servers notice within a second).
    """
    import relaystore
    from relaystore.errors import Unauthorized
    from relaystore.server.revocation import revoke

    async def work() -> None:
        if not names_a_server(url):
            async with relaystore.connect(url) as store:
                await revoke(store, jti)
            return
        if not admin_token:
            raise Unauthorized("an http:// --url needs the admin token (--admin-token or RELAYSTORE_TOKEN)")
        from relaystore.server.tokens import request_revoke

        request_revoke(url, admin_token, jti)

    run(work)
    typer.echo(f"revoked {jti}")
