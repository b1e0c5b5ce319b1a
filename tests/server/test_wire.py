"""One protocol for both ends: the server's routes and errors come from relaystore.wire, and an
error answer the server builds turns back into the same class on the client side."""

from __future__ import annotations

import json

import pytest

from relaystore import errors, wire
from relaystore.server.routes import OPERATIONS
from relaystore.server.web import HttpError, error_response

TEMPLATES = {value for name, value in vars(wire).items() if name.isupper() and str(value).startswith("/")}


def test_every_route_is_a_wire_template() -> None:
    # /openapi.json and /metrics are added by the app itself, from the same module
    assert {op.path for op in OPERATIONS} | {wire.OPENAPI, wire.METRICS} <= TEMPLATES
    assert len({(op.method, op.path) for op in OPERATIONS}) == len(OPERATIONS)


ERRORS = [
    errors.Unauthorized("no"),
    errors.Forbidden("no"),
    errors.ThreadNotFound("t"),
    errors.Conflict("stale"),
    errors.TooLarge("big"),
    errors.InvalidInput("bad"),
    errors.NotSupported("memory", "blobs"),
    errors.CorruptRecord("row 7", "not JSON"),
    errors.BackendUnavailable("down"),
]


@pytest.mark.parametrize("exc", ERRORS, ids=lambda e: type(e).__name__)
def test_a_server_error_answer_comes_back_as_its_class(exc: errors.RelayStoreError) -> None:
    response = error_response(exc)
    assert response.status_code == wire.status_of(exc)
    back = wire.error_from_answer(response.status_code, bytes(response.body))
    assert type(back) is type(exc)
    assert str(back) == str(exc)


def test_the_status_table_puts_subclasses_first() -> None:
    assert wire.status_of(errors.TooLarge("x")) == 413  # a TooLarge is an InvalidInput too
    assert wire.status_of(errors.ThreadNotFound("t")) == 404
    assert wire.status_of(errors.RelayStoreError("?")) == 500


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, errors.Unauthorized),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (409, errors.Conflict),
        (412, errors.Conflict),
        (413, errors.TooLarge),
        (400, errors.InvalidInput),
        (502, errors.BackendUnavailable),
        (500, errors.BackendUnavailable),
    ],
)
def test_an_answer_naming_no_class_falls_back_to_its_status(status: int, expected: type) -> None:
    found = wire.error_from_answer(status, b"<html>proxy error</html>", "Bad Gateway")
    assert type(found) is expected
    assert "proxy error" in str(found)


def test_a_precondition_failure_is_a_conflict() -> None:
    response = error_response(HttpError(wire.PRECONDITION_FAILED, "Conflict", "changed"))
    found = wire.error_from_answer(response.status_code, bytes(response.body))
    assert isinstance(found, errors.Conflict)


def test_an_unknown_error_name_is_not_trusted_as_a_class() -> None:
    body = json.dumps(wire.error_body("SystemExit", "nope")).encode()
    assert type(wire.error_from_answer(422, body)) is errors.InvalidInput


def test_entity_tags_and_the_metadata_header_round_trip() -> None:
    checkpoint_id = "a/b c\u00e9"
    tag = wire.checkpoint_etag(checkpoint_id)
    assert tag.startswith('"') and tag.endswith('"') and "=" not in tag
    assert wire.unb64(tag[1:-1], "If-Match") == checkpoint_id
    with pytest.raises(errors.InvalidInput, match="If-Match is not base64url"):
        wire.unb64("\u00ff", "If-Match")
