"""Templates, filters and the plain-data helpers every view shares (JSON text, diffs, charts).

Templates autoescape everything; a value reaches a page only through a filter here or a
template's ``{{ }}``, so stored text (thread ids, prompts, blob text) is always inert.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel

HERE = Path(__file__).parent
MAX_JSON_TEXT = 20_000  # characters of a value shown before it is cut (a page stays light)
MAX_DEPTH = 40  # nesting levels turned into plain data; deeper is shown as "…"
MAX_DIFF = 500  # changes listed between two states


def _when(seconds: Any) -> str:
    """Unix seconds (or an ISO timestamp) as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(seconds).replace("T", " ")[:19]


def _size(count: int) -> str:
    """Bytes as ``512 B``, ``2.0 KiB``, ``3.1 MiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _short(text: Any, keep: int = 12) -> str:
    text = str(text)
    return text if len(text) <= keep else text[:keep] + "…"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def link(base: str, page: str, **params: Any) -> str:
    """The shell URL of ``page`` with query ``params`` (None values left out). Never a token."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{base}/ui/{page}" + (f"?{query}" if query else "")


ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(when=_when, size=_size, short=_short, number=_number, pretty=lambda v: json_text(v))


def render(template: str, **values: Any) -> str:
    return ENV.get_template(template).render(**values)


# --------------------------------------------------------------------------- plain data


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data: models dumped, bytes summarised, unknown objects as repr.

    What a LangGraph serde decodes (messages, dataclasses, sets) becomes something a page can
    print and a diff can compare; nothing is executed or imported to do it.
    """
    if depth > MAX_DEPTH:
        return "…"
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [plain(v, depth + 1) for v in items]
    if isinstance(value, BaseModel):
        return plain(value.model_dump(mode="json"), depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, depth + 1)
    return repr(value)[:500]


def json_text(value: Any, limit: int = MAX_JSON_TEXT) -> str:
    """Indented JSON of ``plain(value)``, cut to ``limit`` characters."""
    text = json.dumps(plain(value), indent=2, ensure_ascii=False, sort_keys=False)
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def decode_json_bytes(data: bytes) -> Any:
    """A state's bytes as JSON when they are JSON, else a short description of the bytes."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        head = data[:64].hex(" ")
        return {"bytes": len(data), "first bytes (hex)": head}


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference between two JSON values: ``op`` is added, removed or changed."""

    op: str
    path: str
    old: Any = None
    new: Any = None


def json_diff(old: Any, new: Any, path: str = "$", limit: int = MAX_DIFF) -> list[Change]:
    """The changes that turn ``old`` into ``new`` (plain JSON data), by JSONPath-like paths,
    at most ``limit``. Objects are compared by key, arrays by index (RFC 6902's shape, read-only).
    """
    changes: list[Change] = []
    stack = [(path, old, new)]
    while stack and len(changes) < limit:
        where, a, b = stack.pop()
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str, reverse=True):
                child = f"{where}.{key}"
                if key not in a:
                    changes.append(Change("added", child, new=b[key]))
                elif key not in b:
                    changes.append(Change("removed", child, old=a[key]))
                else:
                    stack.append((child, a[key], b[key]))
        elif isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b)) - 1, -1, -1):
                child = f"{where}[{i}]"
                if i >= len(a):
                    changes.append(Change("added", child, new=b[i]))
                elif i >= len(b):
                    changes.append(Change("removed", child, old=a[i]))
                else:
                    stack.append((child, a[i], b[i]))
        elif a != b or type(a) is not type(b):
            changes.append(Change("changed", where, a, b))
    return sorted(changes[:limit], key=lambda c: c.path)


# --------------------------------------------------------------------------- small charts


@dataclasses.dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    kind: str = ""


def bars(values: Sequence[float], labels: Iterable[str], *, width: int = 240, height: int = 48) -> list[Bar]:
    """Geometry of a small bar chart (SVG coordinates, tallest bar = ``height``)."""
    if not values:
        return []
    top = max(max(values), 1e-9)
    step = width / len(values)
    return [
        Bar(i * step, height - v / top * height, max(step - 1, 1), v / top * height, label)
        for i, (v, label) in enumerate(zip(values, labels, strict=False))
    ]
