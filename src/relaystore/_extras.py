"""Optional parts of relaystore and the one-line error that names the extra to install.

``pip install relaystore`` brings only pydantic: the command line (``cli``), the HTTP server
(``server``), the drivers (``redis``, ``postgres``, ``file``, ``http``), the learners
(``learning``) and the runtime adapters (``langgraph``, ``openai-agents``, ``adk``) are extras.
"""

from __future__ import annotations

import importlib.util


def missing_extra(what: str, extra: str) -> ImportError:
    """The error raised when ``what`` needs an extra that is not installed (one line)."""
    return ImportError(f"{what} needs the {extra} extra: pip install 'relaystore[{extra}]'")


def installed(*modules: str) -> bool:
    """Whether every top-level module in ``modules`` can be imported (without importing it)."""
    return all(importlib.util.find_spec(name) is not None for name in modules)
