"""The pytest plugin of the conformance kit: ``pytest_plugins = ["relaystore.testing.plugin"]``.

A test module that imports kit cases names its factories in ``RELAYSTORE_FACTORIES`` (a list, or a
dict of name → factory); each case then runs once per factory, with the ``factory`` and ``store``
fixtures. Cases marked ``@pytest.mark.relaystore_requires(Capability.X)`` skip on factories
without X.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("relaystore.testing.cases", "relaystore.testing.docs")

from relaystore.stores import Store  # noqa: E402  (after the rewrite hook, as pytest asks)
from relaystore.testing import Capability, capabilities_of, name_of  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "relaystore_requires(*capabilities): the case needs these relaystore.testing.Capability"
    )


def _factories(module: Any) -> dict[str, Any]:
    declared = getattr(module, "RELAYSTORE_FACTORIES", None)
    if declared is None:
        return {}
    if isinstance(declared, dict):
        return dict(declared)
    return {name_of(f): f for f in declared}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" not in metafunc.fixturenames:
        return
    factories = _factories(metafunc.module)
    if not factories:
        raise pytest.UsageError(
            f"{metafunc.module.__name__} uses relaystore.testing cases but sets no RELAYSTORE_FACTORIES"
        )
    metafunc.parametrize("backend_name", list(factories), scope="session")


@pytest.fixture
def factory(request: pytest.FixtureRequest, backend_name: str) -> Any:
    """The factory of this run's backend; skips when it is unavailable or lacks a needed capability."""
    chosen = _factories(request.module)[backend_name]
    reason = chosen.unavailable()
    if reason:
        pytest.skip(f"{backend_name}: {reason}")
    missing = _missing(request, capabilities_of(chosen))
    if missing:
        pytest.skip(f"{backend_name} lacks {', '.join(c.value for c in missing)}")
    return chosen


_CASE_NEEDS = {
    "checkpoints": (Capability.CHECKPOINTS,),
    "checkpoint_extras": (Capability.CHECKPOINTS, Capability.PENDING_WRITES, Capability.ATTACHMENTS),
    "checkpoint_full_reads": (Capability.CHECKPOINTS, Capability.PENDING_WRITES),
    "outputs": (Capability.OUTPUTS,),
    "adaptive": (Capability.ADAPTIVE,),
    "blobs": (Capability.BLOBS,),
    "stateful": (Capability.CHECKPOINTS, Capability.OUTPUTS, Capability.ADAPTIVE),
    "corruption": (Capability.CORRUPTION,),
}


def _missing(request: pytest.FixtureRequest, has: frozenset[Capability]) -> list[Capability]:
    """What the case needs and the factory lacks: by the kit module it comes from, and its marks."""
    origin = getattr(request.function, "__module__", "").rpartition(".")[2]
    needed = list(_CASE_NEEDS.get(origin, ()))
    needed += [cap for mark in request.node.iter_markers("relaystore_requires") for cap in mark.args]
    return [cap for cap in dict.fromkeys(needed) if cap not in has]


@pytest.fixture
async def store(factory: Any, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, empty store of this run's backend, closed afterwards."""
    async with factory.fresh(tmp_path) as opened:
        yield opened
