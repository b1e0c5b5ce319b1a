"""The conformance kit: the cases every relaystore backend must pass, importable by outside backends.

It is pytest-based (install ``relaystore[testing]``: pytest, pytest-asyncio, hypothesis). A backend
proves itself by handing the kit a *factory*: any module or object with

- ``NAME``: the backend's name in test ids;
- ``unavailable() -> str | None``: why it cannot run here (its server is down, ...), or None;
- ``fresh(tmp_path) -> AsyncContextManager[Store]``: a new, empty store, closed on exit; stores
  from two calls must not see each other's data;
- optionally ``CAPABILITIES``: the :class:`Capability` set it has (all of them when absent); a
  case that needs a missing one is skipped, naming it;
- optionally ``async corrupt(store, what, key, how="json")``: make one record undecodable, for
  the corruption cases; ``what``/``key`` are ``"run"`` ``(agent_id, run_id)``, ``"output"``
  ``(ref,)``, ``"checkpoint"`` ``(thread_id, checkpoint_id)``, ``"document"`` ``(kind, key)``,
  ``"item"`` ``(namespace label, key)`` or ``"blob"`` ``(sha256,)``; ``how`` is ``"utf8"``,
  ``"json"`` or ``"type"`` (:func:`relaystore.testing.damage.damage` applies it to the stored
  bytes). Raise ``NotImplementedError`` for a kind or a damage the backend cannot hold.

Then, in the backend's own test suite::

    # conftest.py (the rootdir's)
    pytest_plugins = ["relaystore.testing.plugin"]

    # test_conformance.py
    from relaystore.testing.cases.checkpoints import *  # noqa: F403  (and .outputs, .adaptive, ...)
    from mybackend.testing import factory

    RELAYSTORE_FACTORIES = [factory]

:func:`all_cases` lists the case modules. relaystore's own backends run through this same kit
(``tests/conformance``).
"""

from __future__ import annotations

import enum
from typing import Any


class Capability(enum.Enum):
    """What a backend may or may not provide; cases that need one are skipped without it."""

    CHECKPOINTS = "checkpoints"
    PENDING_WRITES = "pending writes"
    ATTACHMENTS = "attachments"
    OUTPUTS = "outputs"
    ADAPTIVE = "adaptive"
    BLOBS = "blobs"
    ITEMS = "items"
    CORRUPTION = "corrupt records (the factory's corrupt hook)"


CASE_MODULES = (
    "checkpoints",
    "checkpoint_extras",
    "checkpoint_full_reads",
    "outputs",
    "adaptive",
    "blobs",
    "stateful",
    "corruption",
)


def all_cases() -> list[str]:
    """The importable case modules, ``relaystore.testing.cases.<name>``."""
    return [f"relaystore.testing.cases.{name}" for name in CASE_MODULES]


def capabilities_of(factory: Any) -> frozenset[Capability]:
    """The factory's declared capabilities, or every capability when it declares none."""
    declared = getattr(factory, "CAPABILITIES", None)
    return frozenset(Capability) if declared is None else frozenset(declared)


def name_of(factory: Any) -> str:
    return str(factory.NAME)
