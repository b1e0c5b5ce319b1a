"""The PostgreSQL backend's options: a ``postgresql://`` URL and keywords, parsed once into one
:class:`PgOptions`."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import ConfigDict, Field

from relaystore.backends._options import flag, number
from relaystore.backends._policy import BackendOptions
from relaystore.errors import InvalidInput
from relaystore.stores import redact

DEFAULT_SCHEMA = "relaystore"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
OPTIONS = frozenset(
    {
        "schema",
        "pool_min",
        "pool_max",
        "timeout",
        "call_timeout",
        "check",
        "max_idle",
        "max_lifetime",
        "statement_timeout",
        "application_name",
    }
)
"""relaystore's own options; any other query parameter (``sslmode`` …) goes to libpq."""


class PgOptions(BackendOptions):
    """Where and how to connect. Times are seconds.

    ``url`` is the URL as given, password replaced by ``***``; ``conninfo`` is what libpq gets
    (the URL without relaystore's options, password kept), left out of ``repr`` and dumps.
    """

    # Serialized as "schema", the name users write; the attribute is schema_name because
    # BaseModel already has a ``schema`` (its deprecated JSON Schema method).
    model_config = ConfigDict(serialize_by_alias=True)

    conninfo: str = Field(repr=False, exclude=True)
    schema_name: str = Field(DEFAULT_SCHEMA, alias="schema")
    pool_min: int = 1
    pool_max: int = 10
    timeout: float = 10.0
    call_timeout: float = 30.0  # 0: no limit; parse_url defaults it to 3 × timeout
    check: bool = False
    max_idle: float = 600.0
    max_lifetime: float = 3600.0
    statement_timeout: float = 0.0  # 0: no limit
    application_name: str = ""

    @property
    def schema(self) -> str:  # type: ignore[override]
        """The PostgreSQL schema that holds every table (as ``?schema=`` named it)."""
        return self.schema_name


def _public(url: str) -> str:
    """``url`` with its password, in the user part or a ``password=`` parameter, as ``***``."""
    public = redact(url)
    parts = urlsplit(public)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if all(k != "password" for k, _ in query):
        return public
    query = [(k, "***" if k == "password" else v) for k, v in query]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def check_schema_name(name: object) -> str:
    """Return ``name`` if it is a usable schema name: lowercase ``[a-z_][a-z0-9_]*``, at most 63
    bytes, not ``pg_…`` (reserved). Raise :class:`InvalidInput` otherwise."""
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name) or name.startswith("pg_"):
        raise InvalidInput(
            f"schema must match [a-z_][a-z0-9_]* (at most 63 characters, not pg_…), got {name!r}"
        )
    return name


def parse_url(url: str, options: dict[str, Any]) -> PgOptions:
    """Split a ``postgresql://`` URL into libpq's connection string and relaystore's options.

    relaystore's options (``schema``, ``pool_min``, ``pool_max``, ``timeout``, ``call_timeout``,
    ``check``, ``max_idle``, ``max_lifetime``, ``statement_timeout``, ``application_name``) may
    be URL query parameters or keywords (keywords win); other query parameters (``sslmode`` …)
    are passed to libpq. Raises :class:`InvalidInput` for a malformed URL or option.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in OPTIONS}
    unknown = set(options) - OPTIONS
    if unknown:
        raise InvalidInput(f"unknown postgres option(s): {', '.join(sorted(unknown))}")
    ours.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()})
    conninfo = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in OPTIONS])))
    try:
        conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise InvalidInput(f"not a usable PostgreSQL URL: {exc}") from None
    pool_min = number(ours, "pool_min", int, 1, low=0)
    pool_max = number(ours, "pool_max", int, max(10, pool_min), low=1)
    if pool_max < pool_min:
        raise InvalidInput(f"pool_max ({pool_max}) must be at least pool_min ({pool_min})")
    timeout = number(ours, "timeout", float, 10.0, low=0.001)
    return PgOptions(
        scheme=parts.scheme.lower(),
        url=_public(url),
        conninfo=conninfo,
        schema=check_schema_name(ours.get("schema", DEFAULT_SCHEMA)),
        pool_min=pool_min,
        pool_max=pool_max,
        timeout=timeout,
        # Three times `timeout` (30 s by default): a call's work may legitimately outlast a
        # connect, and whoever lowers `timeout` to fail fast wants calls to fail fast too.
        call_timeout=number(ours, "call_timeout", float, 3 * timeout, low=0),
        check=flag(ours, "check", False),
        max_idle=number(ours, "max_idle", float, 600.0, low=1),
        max_lifetime=number(ours, "max_lifetime", float, 3600.0, low=1),
        statement_timeout=number(ours, "statement_timeout", float, 0.0, low=0),
        application_name=ours.get("application_name") or f"relaystore-{uuid.uuid4().hex[:12]}",
    )
