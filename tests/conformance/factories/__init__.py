"""One module per backend; each gives the conformance suite fresh, empty stores.

A factory module defines:

- ``NAME``: the backend's name in test ids (``memory``, ``sqlite``, ...);
- ``def unavailable() -> str | None``: why it cannot run here, or None;
- ``def fresh(tmp_path) -> AsyncContextManager[Store]``: a new empty store, closed and cleaned
  up on exit. Stores from two calls must not see each other's data.

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
