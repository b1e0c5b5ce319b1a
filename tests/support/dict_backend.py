"""A third-party backend as an outside package would ship one: scheme ``mytest://``.

It registers through the ``relaystore.backends`` entry-point group (see :func:`register`), not
through relaystore's built-in table, and keeps everything in plain dicts. For brevity its faces are
the memory backend's dict-based ones, opened on a private state; the point under test is the seam:
registration, ``connect("mytest://")``, typed options and the conformance kit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from relaystore.backends import _registered, memory
from relaystore.backends._options import merge_options
from relaystore.backends._policy import BackendOptions
from relaystore.stores import Store

SCHEME = "mytest"


class DictOptions(BackendOptions):
    label: str = ""


def parse_url(url: str, options: dict[str, Any]) -> DictOptions:
    query = url.partition("?")[2]
    merged = merge_options(query, options, {"label"}, SCHEME)
    return DictOptions(scheme=SCHEME, url=url, label=merged.get("label", ""))


async def open_store(url: str, **options: Any) -> Store:
    parse_url(url, options)
    inner = await memory.open_store("memory://")
    return Store(
        url,
        SCHEME,
        inner.checkpoints,
        inner.outputs,
        inner.adaptive,
        blobs=inner.blobs,
        items=inner.items,
        close=inner.close,
    )


def register() -> None:
    """Install this module as an entry point of a throwaway distribution on ``sys.path``.

    Exactly what ``pip install`` of a package declaring
    ``[project.entry-points."relaystore.backends"] mytest = "tests.support.dict_backend"`` leaves
    behind: a ``*.dist-info`` with ``entry_points.txt``.
    """
    if any(SCHEME in str(p) for p in sys.path):
        return
    site = Path(tempfile.mkdtemp(prefix=f"relaystore-{SCHEME}-"))
    info = site / "relaystore_mytest-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: relaystore-mytest\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[relaystore.backends]\n{SCHEME} = {__name__}\n")
    sys.path.append(str(site))
    _registered.cache_clear()
