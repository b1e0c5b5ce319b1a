"""One module per backend; each gives the conformance suite fresh, empty stores.

A factory module defines:

- ``NAME``: the backend's name in test ids (``memory``, ``sqlite``, ...);
- ``def unavailable() -> str | None``: why it cannot run here, or None;
- ``def fresh(tmp_path) -> AsyncContextManager[Store]``: a new empty store, closed and cleaned
  up on exit. Stores from two calls must not see each other's data.

Optionally (tests that need it skip a backend whose factory lacks it):

- ``async def corrupt(store, what: str, key: tuple) -> None``: make one stored record
  undecodable, as a torn write or a foreign writer would, so the suite can check that only the
  reads touching it fail. ``what`` and ``key`` are ``"run"`` ``(agent_id, run_id)``,
  ``"output"`` ``(ref,)``, ``"checkpoint"`` ``(thread_id, checkpoint_id)`` or ``"document"``
  ``(kind, key)``. Raise ``NotImplementedError`` for a kind the backend cannot hold corrupt
  (the memory backend keeps checkpoints and outputs as decoded objects).

Adding a backend to the suite means adding one module here: :func:`discover` finds it.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover() -> dict[str, ModuleType]:
    modules = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        modules[module.NAME] = module
    return modules


FACTORIES = discover()
"""Every built-in backend's factory by name: the ``RELAYSTORE_FACTORIES`` of our kit runs."""
