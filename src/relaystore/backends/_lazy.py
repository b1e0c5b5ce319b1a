"""Faces whose tables a SQL backend creates on their first use, not when the store opens.

A store used for checkpoints only (a LangGraph saver) then holds no empty tables of outputs,
adaptive documents or blobs: on SQLite each empty table and index is a 4 KiB page, on PostgreSQL
8-16 KiB per relation, which is most of what kept relaystore's files larger than the native
savers'. A face class derives from :class:`CreatedOnFirstUse` and implements
:meth:`~CreatedOnFirstUse._create_tables` (its own versioned migrations, applied under the
backend's write lock or advisory lock, so concurrent processes create the tables once); every
primitive (``_``-prefixed coroutine) it defines then runs it first, once per face object.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

_SETUP = "_create_tables"


class CreatedOnFirstUse:
    """Mixin: each primitive of the subclass awaits :meth:`_create_tables` once, before it runs."""

    _tables_ready = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            primitive = name.startswith("_") and not name.startswith("__") and name != _SETUP
            if primitive and inspect.iscoroutinefunction(member):
                setattr(cls, name, _after_setup(member))

    async def _create_tables(self) -> None:
        """Apply the face's migrations (idempotent; safe against concurrent processes)."""
        raise NotImplementedError

    async def _ensure_tables(self) -> None:
        if not self._tables_ready:
            await self._create_tables()
            self._tables_ready = True


def _after_setup(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def run(self: CreatedOnFirstUse, *args: Any, **kwargs: Any) -> Any:
        if not self._tables_ready:
            await self._ensure_tables()
        return await method(self, *args, **kwargs)

    return run
