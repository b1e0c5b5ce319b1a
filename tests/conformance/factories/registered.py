"""The ``mytest://`` backend of :mod:`tests.support.dict_backend`, found through its entry point.

It declares no corruption hook, so the kit's corruption cases skip on it, naming the capability.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.stores import Store
from relaystore.testing import Capability
from tests.support import dict_backend

NAME = "mytest"
CAPABILITIES = frozenset(Capability) - {Capability.CORRUPTION}

dict_backend.register()


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect("mytest://") as store:
        yield store
