"""What a view of the inspector gets (:class:`Ctx`) and how a view is registered (:class:`Fragment`).

Apart from :mod:`.routes`, which dispatches to the views, so that the views and the dispatch
import this one and not each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from relaystore.errors import InvalidInput
from relaystore.server.tokens import Principal
from relaystore.server.ui.render import link, render
from relaystore.stores import Store

Access = Literal["any", "admin", "outputs", "memory"]


@dataclass
class Ctx:
    """What a view gets: the request, who asks, the store, and helpers for parameters."""

    request: Request
    principal: Principal
    store: Store
    base: str  # "" or "/t/NAME": prefix of every link

    def q(self, name: str, default: str | None = None) -> str | None:
        value = self.request.query_params.get(name)
        return default if value in (None, "") else value

    def need(self, name: str) -> str:
        value = self.q(name)
        if value is None:
            raise InvalidInput(f"query parameter {name!r} is required")
        return value

    def integer(self, name: str, default: int | None = None, *, low: int = 0) -> int | None:
        raw = self.q(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"query parameter {name!r} must be an integer, got {raw[:40]!r}") from None
        if value < low:
            raise InvalidInput(f"query parameter {name!r} must be at least {low}")
        return value

    def link(self, page: str, **params: Any) -> str:
        return link(self.base, page, **params)

    def page(self, template: str, **values: Any) -> HTMLResponse:
        return HTMLResponse(render(template, ctx=self, base=self.base, **values))


View = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True)
class Fragment:
    access: Access
    view: View
