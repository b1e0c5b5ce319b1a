"""The ``/ui`` routes: the shell page, its two static files and the authorised HTML fragments.

Token scheme (see ``docs/ui.md``): the shell is the same for everyone and holds no data. Its script
keeps the token in ``sessionStorage`` (gone when the tab closes) and fetches each view from
``/ui/f/<view>?…`` with ``Authorization: Bearer``. No cookie is set, so there is nothing for
another site to ride on (no CSRF), and the token never appears in a URL, so it cannot reach an
access log, the history or a ``Referer``. Each fragment is authorised like an API call: a valid
token of this store and tenant, not revoked, whose kind may see the view (:data:`ACCESS`).

Every answer carries a strict CSP (scripts and styles from this origin only, no inline script,
no framing), ``X-Frame-Options: DENY``, ``nosniff``, ``Referrer-Policy: no-referrer`` and
``Cache-Control: no-store``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from relaystore.errors import Forbidden, NotFound
from relaystore.server.stores import TENANT
from relaystore.server.tokens import Principal, bearer, verify_token
from relaystore.server.ui import views_adaptive, views_memory, views_outputs, views_store
from relaystore.server.ui.context import Access, Ctx, Fragment
from relaystore.server.ui.render import HERE, render
from relaystore.server.web import (
    ROUTE_KEY,
    STORE_KEY,
    TENANT_KEY,
    ServerConfig,
    collect_warnings,
    error_response,
    refuse_revoked,
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PAGES = ("overview", "threads", "thread", "diff", "outputs", "adaptive", "memory")
STATIC = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8"}


def _views() -> dict[str, Fragment]:
    return {
        **views_store.FRAGMENTS,
        **views_outputs.FRAGMENTS,
        **views_adaptive.FRAGMENTS,
        **views_memory.FRAGMENTS,
    }


def allow(principal: Principal, access: Access) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may see a view of kind ``access``: the admin
    sees everything, an agent token only outputs (of its task and its handed refs), a memory
    token only memory (under its prefixes), a download token nothing."""
    if principal.blob is not None:
        raise Forbidden("a download token opens only its blob, not the inspector")
    if principal.admin or access == "any":
        return
    if access == "outputs" and principal.task is not None:
        return
    if access == "memory" and principal.namespaces is not None:
        return
    raise Forbidden(
        "this view needs the admin token" if access == "admin" else f"this token cannot see {access}"
    )


def secure(response: Response, *, blob: bool = False) -> Response:
    """Add the inspector's security headers (a blob keeps its own sandbox CSP and disposition)."""
    for name, value in SECURITY_HEADERS.items():
        if not (blob and name == "Content-Security-Policy"):
            response.headers[name] = value
    return response


def ui_routes(config: ServerConfig) -> list[Route]:
    """The inspector's routes, to add to the server's route table."""
    views = _views()

    async def shell(request: Request) -> Response:
        page = request.path_params.get("page", "overview") or "overview"
        tenant = request.scope.get(TENANT_KEY)
        if page not in PAGES or (tenant is not None and not TENANT.match(tenant)):
            return secure(error_response(NotFound(f"no inspector page {request.url.path[:80]!r}")))
        base = request.scope.get("root_path", "")
        return secure(HTMLResponse(render("shell.html", base=base, pages=PAGES)))

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return secure(error_response(NotFound(f"no static file {name[:60]!r}")))
        return secure(Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name]))

    async def fragment(request: Request) -> Response:

        name = request.path_params["view"]
        found = views.get(name)
        request.scope[ROUTE_KEY] = f"/ui/f/{name}" if found else "/ui/f/{view}"
        collect_warnings()
        try:
            tenant = request.scope.get(TENANT_KEY)
            principal = verify_token(
                bearer(request.headers, request.query_params, query_allowed=False),
                admin_token=config.admin_token,
                signing_key=config.signing_key,
                audience=config.audience(tenant),
            )
            principal.require_tenant(tenant)
            if found is None:
                raise NotFound(f"no inspector view {name[:60]!r}")
            allow(principal, found.access)
            store = await request.scope[STORE_KEY]()
            if principal.token_id is not None:
                await refuse_revoked(principal.token_id, store, tenant, config)
            ctx = Ctx(request, principal, store, request.scope.get("root_path", ""))
            response = await found.view(ctx)
        except Exception as exc:
            response = error_response(exc)
        return secure(response, blob=response.headers.get("content-disposition") is not None)

    return [
        Route("/ui/static/{name}", static, methods=["GET"]),
        Route("/ui/f/{view}", fragment, methods=["GET"]),
        Route("/ui", shell, methods=["GET"]),
        Route("/ui/{page}", shell, methods=["GET"]),
    ]
