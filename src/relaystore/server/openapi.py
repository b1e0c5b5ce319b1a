"""The OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import models_json_schema

import relaystore
from relaystore.server.routes import REQUEST_MODELS
from relaystore.server.web import Op

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "The relaystore exception class, e.g. ThreadNotFound."},
        "code": {
            "type": "string",
            "description": "error in snake_case, e.g. thread_not_found",
        },
        "detail": {"type": "string"},
    },
    "required": ["error", "detail"],
}
_DESCRIPTIONS = {200: "OK", 201: "Created", 206: "Partial content (a Range was asked for)"}


def build_openapi(operations: list[Op]) -> dict[str, Any]:
    """The document served at ``/openapi.json``: every route, its parameters, bodies and answers.

    Every operation also answers ``default``: an error body ``{"error", "detail"}`` with status
    401, 403, 404, 409, 412, 413, 416, 422 or 503 (see ``docs/server.md``).
    """
    _, defs = models_json_schema(
        [(model, "validation") for model in REQUEST_MODELS], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "relaystore", "version": relaystore.__version__},
        "paths": paths,
        "components": {
            "schemas": {**defs["$defs"], "Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def operation(op: Op) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": f"{op.method.lower()}{re.sub(r'[^a-zA-Z0-9]+', '_', op.path)}".rstrip("_"),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required,
                "schema": p.schema,
                "description": p.description,
            }
            for p in op.params
        ],
        "responses": {
            **{
                str(status): {
                    "description": _DESCRIPTIONS.get(status, "OK"),
                    "content": {media: {"schema": schema} for media, schema in content.items()},
                }
                for status, content in op.responses.items()
            },
            "default": {
                "description": "An error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if op.access == "public":
        described["security"] = []
    if op.request is not None:
        described["requestBody"] = {
            "required": "application/octet-stream" not in op.request,
            "content": {media: {"schema": schema} for media, schema in op.request.items()},
        }
    return described
