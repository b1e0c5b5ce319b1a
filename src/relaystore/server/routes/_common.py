"""What every route module shares: OpenAPI schema pieces and body helpers."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from relaystore.errors import InvalidInput
from relaystore.server.web import Call, Param, strict_json
from relaystore.stores._common import summarize


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": schema}


def obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return json_of(obj(items={"type": "array", "items": item}, next_cursor={"type": ["string", "null"]}))


def items_of(item: dict[str, Any]) -> dict[str, Any]:
    return json_of(obj(items={"type": "array", "items": item}))


def q(name: str, schema: dict[str, Any] | None = None, description: str = "") -> Param:
    return Param(name, schema or STR, required=True, description=description)


def opt(name: str, schema: dict[str, Any] | None = None, description: str = "") -> Param:
    return Param(name, schema or STR, description=description)


STR = {"type": "string"}
U32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
OCTETS = {"application/octet-stream": {"type": "string", "format": "binary"}}
REF_PATTERN = "^out-[0-9a-f]{10,64}$"
PAGE = (
    Param("limit", {"type": "integer", "minimum": 1}, description="At most this many items."),
    Param("cursor", STR, description="next_cursor of the previous page."),
)
IF_MATCH = Param("If-Match", STR, where="header", description="Compare-and-set on the current version.")
IF_NONE = Param(
    "If-None-Match", {"type": "string", "enum": ["*"]}, where="header", description="Only if absent."
)
DELETED_BOOL = json_of(obj(deleted={"type": "boolean"}))
DELETED_INT = json_of(obj(deleted={"type": "integer", "minimum": 0}))
STORED_INT = json_of(obj(stored={"type": "integer", "minimum": 0}))
COUNT = json_of(obj(count={"type": "integer", "minimum": 0}))


async def parse_binary_json(call: Call, adapter: TypeAdapter[Any], what: str) -> Any:
    """Validate a JSON body that carries bytes as base64 (decoded only in JSON mode)."""
    try:
        return adapter.validate_json(await call.body())
    except ValidationError as exc:
        raise InvalidInput(f"invalid {what}: {summarize(exc)}") from None


def json_param(call: Call, name: str) -> Any:
    """Query parameter ``name`` parsed as strict JSON (None when absent)."""
    raw = call.query(name)
    return None if raw is None else strict_json(raw, f"query parameter {name!r}")
