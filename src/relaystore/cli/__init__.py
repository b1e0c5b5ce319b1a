"""The ``relaystore`` command line: one Typer app, commands grouped in modules.

- :mod:`relaystore.cli.views`: ``info``, ``threads``, ``checkpoints``, ``outputs``, ``lineage``,
  ``runs``, ``plan``, ``trie``;
- :mod:`relaystore.cli.transfer`: ``export`` and ``import``;
- :mod:`relaystore.cli.learn`: ``learn`` and ``predict``;
- :mod:`relaystore.cli.memory`: ``memory ls|get|search|put|rm`` (LangGraph long-term memory).

Every command takes ``--url`` (default ``$RELAYSTORE_URL``, else ``sqlite:///./relaystore.db``)
and ``--json`` for machine-readable output. All work goes through the library API.
"""

from __future__ import annotations

import importlib

from relaystore.cli.app import app

for _module in ("views", "transfer", "learn", "serve", "token", "memory"):
    try:
        importlib.import_module(f"relaystore.cli.{_module}")
    except ModuleNotFoundError as exc:  # a command group not written yet
        if exc.name != f"relaystore.cli.{_module}":
            raise


def main() -> None:
    app()


__all__ = ["app", "main"]
