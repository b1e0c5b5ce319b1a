"""Server secrets and scoped agent tokens.

Two kinds of bearer token open the server (see ``docs/server.md``):

- the **admin token**: one random string per server, allowed everything;
- an **agent token**: a JWT (HS256, signed with the server's signing key) that lets one sub-agent
  append outputs only as its own ``(task, attempt, producer)`` and read only its task's outputs
  plus the refs it was handed (its ``IN_REFS``). Unlike mlua-swarm's CapToken, attempt and
  producer are bound too, and it expires.

Both secrets live in files with mode 0600 in the server's *state directory* (``.relaystore/``
beside a local store's database file or directory, else in the working directory), created on first
start; ``RELAYSTORE_ADMIN_TOKEN`` and ``RELAYSTORE_SIGNING_KEY`` override them.

This module needs PyJWT only to sign or verify; :func:`request_token` (asking a running server to
issue one) needs only httpx.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from relaystore import wire
from relaystore.errors import Forbidden, InvalidInput, Unauthorized
from relaystore.models.outputs import OutputRef
from relaystore.server.token_cache import VerifiedTokens
from relaystore.stores._common import check_id, check_u32

ADMIN_TOKEN_FILE = "admin-token"
SIGNING_KEY_FILE = "signing-key"
STATE_DIR_NAME = ".relaystore"
ALGORITHM = "HS256"
MAX_TTL_SECONDS = 30 * 86_400  # a leaked agent token must not outlive a month
MIN_TTL_SECONDS = 1.0  # under a second, clock skew alone decides whether the token works
MIN_SECRET_LENGTH = 32  # characters; a new secret has 43 (256 random bits in base64url)
_TTL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
_CLAIMS = ("exp", "iat", "aud")  # plus task/att/prd (agent), ns (memory) or blob (download token)
MAX_DOWNLOAD_TTL_SECONDS = 3600
MAX_LABELS_CLAIM = 100


# --------------------------------------------------------------------------- who is asking


@dataclass(frozen=True)
class Principal:
    """The bearer of a verified token: the admin, or one agent's scope."""

    admin: bool
    tenant: str | None = None
    task: str | None = None
    attempt: int | None = None
    producer: str | None = None
    reads: frozenset[str] = field(default_factory=frozenset)
    namespaces: tuple[tuple[str, ...], ...] | None = None
    """Namespace prefixes of a memory token (``/v1/store/...`` routes); None for other tokens."""
    token_id: str | None = None  # the jti of an agent or download token
    blob: str | None = None  # a download token: the one blob it may GET
    blob_mime: str | None = None  # … and the type to serve it as
    agents: tuple[str, ...] | None = None
    """Agent ids of an adaptive token (the RESP listener's keys); None for other tokens."""

    @property
    def budget_key(self) -> str:
        """Whose share of the server's memory budget this request draws on: one per token."""
        return "admin" if self.admin else f"token:{self.token_id or self.task}"

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("this route needs the admin token")

    def require_tenant(self, tenant: str | None) -> None:
        if not self.admin and self.tenant != tenant:
            raise Forbidden("the token belongs to another tenant")

    def require_writer(self, task_id: str, attempt: int, producer: str) -> None:
        """Raise :class:`Forbidden` unless the token may append as (task, attempt, producer)."""
        if self.admin:
            return
        for what, mine, theirs in (
            ("task", self.task, task_id),
            ("attempt", self.attempt, attempt),
            ("producer", self.producer, producer),
        ):
            if mine != theirs:
                raise Forbidden(f"the token may append as {what} {mine!r} only, not {theirs!r}")

    def require_task(self, task_id: str | None) -> None:
        """Raise :class:`Forbidden` unless the token may list ``task_id``'s outputs."""
        if not self.admin and (self.task is None or task_id != self.task):
            raise Forbidden(f"the token may list outputs of task {self.task!r} only")

    def may_read(self, record: Any) -> bool:
        if self.admin:
            return True
        return (self.task is not None and record.task_id == self.task) or str(record.id) in self.reads

    def require_read(self, record: Any) -> None:
        if not self.may_read(record):
            raise Forbidden(f"output {record.id} was not handed to this token")


# --------------------------------------------------------------------------- agent tokens


VERIFIED: VerifiedTokens[Principal] = VerifiedTokens()
"""Agent tokens verified by this process (see :mod:`relaystore.server.token_cache`)."""


def parse_ttl(text: str | float | int) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h`` or ``2d``; InvalidInput if not in [1 s, 30 d]."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _TTL.match(str(text).strip().lower())
        if not match:
            raise InvalidInput(f"ttl must look like 90s, 15m, 1h or 2d, got {text!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not MIN_TTL_SECONDS <= seconds <= MAX_TTL_SECONDS:
        raise InvalidInput(f"ttl must be at least {MIN_TTL_SECONDS:g} and at most {MAX_TTL_SECONDS} seconds")
    return seconds


def issue_token(
    signing_key: str,
    *,
    task: str,
    attempt: int,
    producer: str,
    ttl: str | float = "1h",
    reads: Iterable[str] = (),
    audience: str,
    tenant: str | None = None,
    now: float | None = None,
) -> str:
    """A signed agent token (JWT, HS256) for one ``(task, attempt, producer)`` of one store.

    ``audience`` is the store's id (:func:`store_id`; ``GET /v1/info`` shows it): a server
    refuses a token minted for another store, even one signed with the same key.
    ``reads`` are the output refs handed over (IN_REFS); ``ttl`` seconds or ``"1h"``-style text.
    Raises :class:`InvalidInput` for a bad id, attempt, ref or ttl.
    """
    import jwt

    issued = int(time.time() if now is None else now)
    claims = {
        "iat": issued,
        "exp": issued + int(parse_ttl(ttl)),
        "jti": uuid.uuid4().hex,
        "task": check_id(task, "task"),
        "att": check_u32(attempt, "attempt"),
        "prd": check_id(producer, "producer"),
        "read": [_ref(r) for r in reads],
        "aud": audience,
    }
    if tenant is not None:
        claims["ten"] = tenant
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM)


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a token this process just signed (not verified: never use on input)."""
    import jwt

    return dict(jwt.decode(token, options={"verify_signature": False}))


def issue_memory_token(
    signing_key: str,
    *,
    namespaces: Iterable[Sequence[str]],
    audience: str,
    ttl: str | float = "1h",
    tenant: str | None = None,
    now: float | None = None,
) -> str:
    """A signed memory token (JWT, HS256) for the ``/v1/store/...`` routes: it may use only items
    whose namespace starts with one of ``namespaces`` (each a non-empty list of labels).
    ``audience`` is the store id, as for :func:`issue_token`.
    Raises :class:`InvalidInput` for a bad prefix or ttl."""
    import jwt

    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iat": issued,
        "exp": issued + int(parse_ttl(ttl)),
        "jti": uuid.uuid4().hex,
        "ns": [list(_prefix(p)) for p in namespaces],
        "aud": audience,
    }
    if not claims["ns"]:
        raise InvalidInput("a memory token needs at least one namespace prefix")
    if tenant is not None:
        claims["ten"] = tenant
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM)


def issue_adaptive_token(
    signing_key: str,
    *,
    agents: Iterable[str],
    audience: str,
    ttl: str | float = "1h",
    tenant: str | None = None,
) -> str:
    """A signed adaptive token (JWT, HS256): NeMo Relay's Redis password for ``serve --resp``,
    allowed only the keys of ``agents`` (see docs/resp.md). ``audience`` is the store id, as for
    :func:`issue_token`. Raises :class:`InvalidInput` for a bad agent id or ttl."""
    import jwt

    issued = int(time.time())
    claims: dict[str, Any] = {
        "iat": issued,
        "exp": issued + int(parse_ttl(ttl)),
        "jti": uuid.uuid4().hex,
        "agents": [check_id(a, "agent") for a in agents],
        "aud": audience,
    }
    if not claims["agents"]:
        raise InvalidInput("an adaptive token needs at least one agent id")
    if tenant is not None:
        claims["ten"] = tenant
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM)


def _prefix(labels: object) -> tuple[str, ...]:
    from relaystore.stores.items import check_namespace

    if isinstance(labels, str):
        raise InvalidInput(f"a namespace prefix is a list of labels, got the string {labels!r}")
    prefix = check_namespace(labels)
    if "*" in prefix or len(prefix) > MAX_LABELS_CLAIM:
        raise InvalidInput(f"a token's namespace prefix is literal labels, got {prefix!r}")
    return prefix


def _ref(value: object) -> str:
    try:
        return str(OutputRef(value))  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def verify_token(token: str, *, admin_token: str, signing_key: str, audience: str) -> Principal:
    """The principal a bearer token stands for; :class:`Unauthorized` if it is not valid, has
    expired or was minted for another store than ``audience``."""
    if secrets.compare_digest(token.encode(), admin_token.encode()):
        return Principal(admin=True)
    key = (token, audience, signing_key)
    cached = VERIFIED.get(key)  # checked before: only its expiry is checked again
    if cached is not None:
        return cached
    import jwt

    try:
        claims = jwt.decode(
            token,
            signing_key,
            algorithms=[ALGORITHM],
            audience=audience,
            options={"require": list(_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("the token was issued for another store") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"not a valid token: {exc}") from None
    principal = _principal(claims)
    VERIFIED.put(key, principal, float(claims["exp"]))
    return principal


def issue_download_token(
    signing_key: str,
    *,
    sha256: str,
    audience: str,
    mime: str | None = None,
    ttl: float = 300,
    tenant: str | None = None,
) -> str:
    """A token that opens one blob download (``GET /v1/blobs/{sha256}?token=…``) and nothing
    else, for ``ttl`` seconds (at most an hour): what to put in a browser link instead of a token
    that can do more. ``mime`` is the type to serve the blob as."""
    import jwt

    if not MIN_TTL_SECONDS <= ttl <= MAX_DOWNLOAD_TTL_SECONDS:
        raise InvalidInput(f"a download token lives 1 to {MAX_DOWNLOAD_TTL_SECONDS} seconds")
    issued = int(time.time())
    claims: dict[str, Any] = {
        "iat": issued,
        "exp": issued + int(ttl),
        "jti": uuid.uuid4().hex,
        "aud": audience,
        "blob": sha256,
    }
    if mime is not None:
        claims["mime"] = mime
    if tenant is not None:
        claims["ten"] = tenant
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM)


def _principal(claims: dict[str, Any]) -> Principal:
    if "blob" in claims:
        return _download_principal(claims)
    try:
        reads = claims.get("read", [])
        tenant = claims.get("ten")
        assert isinstance(reads, list) and all(isinstance(r, str) for r in reads)
        assert tenant is None or isinstance(tenant, str)
        if "agents" in claims:
            assert isinstance(claims["agents"], list) and claims["agents"]
            agents = tuple(check_id(a, "agent") for a in claims["agents"])
            return Principal(admin=False, tenant=tenant, agents=agents, token_id=claims.get("jti") or None)
        if "ns" in claims:
            assert isinstance(claims["ns"], list) and claims["ns"]
            scopes = tuple(_prefix(p) for p in claims["ns"])
            jti = str(claims.get("jti") or "") or None
            return Principal(admin=False, tenant=tenant, namespaces=scopes, token_id=jti)
        return Principal(
            admin=False,
            tenant=tenant,
            task=check_id(claims["task"], "task"),
            attempt=check_u32(claims["att"], "attempt"),
            producer=check_id(claims["prd"], "producer"),
            reads=frozenset(reads),
            token_id=str(claims.get("jti") or "") or None,
        )
    except (AssertionError, InvalidInput, KeyError) as exc:  # signed by us, not by this code: refuse
        raise Unauthorized(f"the token's claims are malformed: {exc}") from None


def _download_principal(claims: dict[str, Any]) -> Principal:
    blob, mime, tenant = claims["blob"], claims.get("mime"), claims.get("ten")
    if not isinstance(blob, str) or not (mime is None or isinstance(mime, str)):
        raise Unauthorized("the token's claims are malformed")
    if tenant is not None and not isinstance(tenant, str):
        raise Unauthorized("the token's claims are malformed")
    jti = claims.get("jti")
    return Principal(
        admin=False, tenant=tenant, blob=blob, blob_mime=mime, token_id=jti if isinstance(jti, str) else None
    )


def store_id(store_url: str) -> str:
    """A store's id, the ``aud`` of its agent tokens: derived from its URL, so every replica
    serving the same store agrees, and two stores never do.

    A local store (one whose options name a :func:`local_path`) counts by its absolute path;
    elsewhere the scheme, host, port and path count (not credentials or options). Raises
    :class:`InvalidInput` for a URL no backend accepts.
    """
    parts = urlsplit(store_url)
    local = local_path(store_url)
    where = (
        str(local) if local is not None else f"{parts.hostname or ''}:{parts.port or ''}{unquote(parts.path)}"
    )
    digest = hashlib.sha256(f"{parts.scheme.lower()}://{where}".encode()).hexdigest()
    return f"rs-{digest[:24]}"


def local_path(store_url: str) -> Path | None:
    """The absolute file or directory a local store lives in, from its backend's typed options
    (:func:`relaystore.backends.parse_url`): their ``local_path`` (a SQLite database file, a file
    store's root; None for a private in-memory database and for network stores)."""
    from relaystore.backends import parse_url

    path = getattr(parse_url(store_url), "local_path", None)
    return None if path is None else Path(path).resolve()


def bearer(headers: Any, query: Any, *, query_allowed: bool = True) -> str:
    """The token of a request: ``Authorization: Bearer …`` wins over ``?token=`` (as mlua-swarm).

    ``?token=`` is read only where ``query_allowed`` (a blob download from a browser, which
    cannot set a header). Raises :class:`Unauthorized` (never a 400 or 500) when there is none.
    """
    header = headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return token.strip()
    token = query.get("token") if query_allowed else None
    if not token:
        raise Unauthorized("a token is required: Authorization: Bearer <token>")
    return str(token)


# --------------------------------------------------------------------------- secret files


@dataclass(frozen=True)
class Secrets:
    """The server's admin token and signing key, and where they came from."""

    admin_token: str
    signing_key: str
    admin_token_source: str
    signing_key_source: str


def state_dir_for(store_url: str) -> Path:
    """Where a server for ``store_url`` keeps its secrets: ``.relaystore/`` beside a local store's
    database file or directory (:func:`local_path`), else ``./.relaystore``."""
    local = local_path(store_url)
    return (Path.cwd() if local is None else local.parent) / STATE_DIR_NAME


def load_secrets(state_dir: Path, *, create: bool = True, admin_token_file: Path | None = None) -> Secrets:
    """Read (or, with ``create``, make) the admin token and signing key.

    Order: ``RELAYSTORE_ADMIN_TOKEN`` / ``RELAYSTORE_SIGNING_KEY``, then ``admin_token_file``,
    then the files in ``state_dir``. New files get 256 random bits and mode 0600, created
    atomically. Raises :class:`InvalidInput` if a secret is missing and ``create`` is false, or
    if a file or the state directory is unsafe (see :func:`check_state_dir`, :func:`_read_private`).
    """
    admin, admin_source = _secret(
        "RELAYSTORE_ADMIN_TOKEN",
        admin_token_file or state_dir / ADMIN_TOKEN_FILE,
        create,
        in_state_dir=admin_token_file is None,
    )
    key, key_source = _secret("RELAYSTORE_SIGNING_KEY", state_dir / SIGNING_KEY_FILE, create)
    return Secrets(admin, key, admin_source, key_source)


def load_signing_key(state_dir: Path) -> str:
    """The signing key alone (``$RELAYSTORE_SIGNING_KEY`` or ``state_dir/signing-key``), for
    issuing tokens without a server. Raises :class:`InvalidInput` if there is none yet."""
    return _secret("RELAYSTORE_SIGNING_KEY", state_dir / SIGNING_KEY_FILE, create=False)[0]


def _secret(env: str, path: Path, create: bool, *, in_state_dir: bool = True) -> tuple[str, str]:
    value = os.environ.get(env, "").strip()
    if value:
        return value, f"${env}"
    if in_state_dir:  # an explicit --admin-token-file may live in a directory of the operator's
        check_state_dir(path.parent, create)
    elif create:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        if not create:
            raise InvalidInput(f"{path} does not exist: start `relaystore serve` once, or set ${env}")
        _create_private(path, secrets.token_urlsafe(32))
    return _read_private(path), str(path)


def check_state_dir(directory: Path, create: bool = True) -> None:
    """Refuse a state directory that another user owns or may write into.

    In a shared place such as ``/tmp`` another user could create it first and plant secrets.
    Raises :class:`InvalidInput` (one line naming the fix).
    """
    if create:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not directory.exists():
        return
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise InvalidInput(f"{directory} belongs to another user: use a --state-dir of your own")
    if info.st_mode & 0o022:
        raise InvalidInput(f"{directory} is writable by other users: chmod 700 {directory}")


def _read_private(path: Path) -> str:
    """A secret file's text, refused unless only its owner (this user) can read it and it holds
    at least :data:`MIN_SECRET_LENGTH` characters."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as file:
        info = os.fstat(file.fileno())
        if info.st_uid != os.getuid():
            raise InvalidInput(f"{path} belongs to another user: remove it or use another --state-dir")
        if info.st_mode & 0o077:
            raise InvalidInput(f"{path} is readable or writable by others: chmod 600 {path}")
        text = file.read().strip()
    if len(text) < MIN_SECRET_LENGTH:
        raise InvalidInput(f"{path} holds under {MIN_SECRET_LENGTH} characters: remove it to get a new one")
    return text


def _create_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600, all at once: the whole file appears in one step (a hard link
    of a finished temporary file), and when several servers start together exactly one wins
    and the others read its secret."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another server created it first: keep theirs
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


# --------------------------------------------------------------------------- asking a server


def request_token(
    url: str,
    admin_token: str,
    *,
    task: str,
    attempt: int,
    producer: str,
    ttl: str | float = "1h",
    reads: Iterable[str] = (),
    timeout: float = 10.0,
) -> str:
    """Ask a running server (``POST /v1/tokens`` with the admin token) to issue an agent token.

    ``url`` is the server's base URL (a tenant's ``…/t/NAME`` too). Raises
    :class:`Unauthorized`/:class:`Forbidden` if the admin token is refused, :class:`InvalidInput`
    for bad arguments and :class:`BackendUnavailable` if the server cannot be reached.
    """
    body = {"task": task, "attempt": attempt, "producer": producer, "ttl": ttl, "read": list(reads)}
    return str(ask_server(url, admin_token, wire.TOKENS, body, timeout)["token"])


def request_revoke(url: str, admin_token: str, jti: str, *, timeout: float = 10.0) -> None:
    """Ask a running server (``POST /v1/tokens/revoke``) to refuse agent token ``jti`` from now on,
    on every server of its store. Raises as :func:`request_token`."""
    ask_server(url, admin_token, wire.TOKENS_REVOKE, {"jti": jti}, timeout)


def ask_server(url: str, admin_token: str, path: str, body: dict[str, Any], timeout: float) -> Any:
    """POST ``body`` to ``path`` of the server at ``url`` with the admin token; the JSON answer.

    An error answer raises its :mod:`relaystore.errors` class (:func:`relaystore.wire.error_from_answer`),
    a transport failure :class:`BackendUnavailable`.
    """
    import httpx

    try:
        response = httpx.post(
            base_url(url) + path,
            json=body,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise wire.unreachable(url, exc) from exc
    if response.status_code >= 400:
        raise wire.error_from_answer(response.status_code, response.content, response.reason_phrase)
    return response.json()


def base_url(url: str) -> str:
    """``url`` without query, fragment and trailing slash."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
