"""The ``relaystore`` command line: one Typer app, commands grouped in modules.

- :mod:`relaystore.cli.views`: ``info``, ``threads``, ``checkpoints``, ``outputs``, ``lineage``,
  ``runs``, ``plan``, ``trie``;
- :mod:`relaystore.cli.transfer`: ``export`` and ``import``;
- :mod:`relaystore.cli.doctor`: ``doctor`` (corrupt records, untrusted counters, ``--repair``);
- :mod:`relaystore.cli.learn`: ``learn`` and ``predict``;
- :mod:`relaystore.cli.memory`: ``memory ls|get|search|put|rm`` (LangGraph long-term memory).

Every command takes ``--url`` (default ``$RELAYSTORE_URL``, else ``sqlite:///./relaystore.db``)
and ``--json`` for machine-readable output. All work goes through the library API.

The command line is the ``cli`` extra (Typer and Rich); ``serve`` and ``token`` also need the
``server`` extra. Without them :func:`main` prints one line naming the extra and exits 1.
"""

from __future__ import annotations

import importlib
import sys

from relaystore._extras import installed

SERVER_COMMANDS = ("serve", "token")


CLI_MODULES = ("typer", "rich", "rfc8785")

if installed(*CLI_MODULES):  # without the extra, main() says which to install
    from relaystore.cli.app import app, name_values

    for _module in ("views", "transfer", "doctor", "learn", "serve", "token", "memory"):
        importlib.import_module(f"relaystore.cli.{_module}")
    name_values(app)


def main() -> None:
    """The ``relaystore`` script and ``python -m relaystore``."""
    if not installed(*CLI_MODULES):
        wanted = "server" if any(arg in SERVER_COMMANDS for arg in sys.argv[1:]) else "cli"
        sys.stderr.write(
            f"relaystore: the command line needs the {wanted} extra: pip install 'relaystore[{wanted}]'\n"
        )
        raise SystemExit(1)
    app()


__all__ = ["app", "main"]
