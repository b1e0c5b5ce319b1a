"""Parametrizes the conformance suite over every backend in ``factories/``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relaystore.stores import Store
from tests.conformance.factories import discover

FACTORIES = discover()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", list(FACTORIES), scope="session")


@pytest.fixture
def factory(backend_name: str):  # type: ignore[no-untyped-def]
    module = FACTORIES[backend_name]
    reason = module.unavailable()
    if reason:
        pytest.skip(f"{backend_name}: {reason}")
    return module


@pytest.fixture
async def store(factory, tmp_path: Path) -> AsyncIterator[Store]:  # type: ignore[no-untyped-def]
    async with factory.fresh(tmp_path) as opened:
        yield opened
