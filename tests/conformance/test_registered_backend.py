"""A backend from outside the package: registered by entry point, opened by URL, typed options."""

from __future__ import annotations

import pytest

import relaystore
from relaystore.backends import backend_for, parse_url, schemes
from relaystore.errors import InvalidInput
from relaystore.testing.docs import checkpoint
from tests.conformance.factories import registered  # noqa: F401  (registers mytest://)
from tests.support import dict_backend


def test_the_entry_point_scheme_is_listed_and_resolves_to_its_module() -> None:
    assert "mytest" in schemes()
    assert backend_for("mytest://") is dict_backend


async def test_connect_opens_it() -> None:
    async with relaystore.connect("mytest://?label=x") as store:
        assert store.backend == "mytest"
        await store.checkpoints.save("t1", checkpoint("t1"), b"state")
        assert (await store.checkpoints.load_latest("t1")).state == b"state"


def test_parse_url_gives_its_typed_options() -> None:
    options = parse_url("mytest://", label="blue")
    assert isinstance(options, dict_backend.DictOptions)
    assert (options.scheme, options.label) == ("mytest", "blue")


def test_an_unknown_option_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown mytest option"):
        parse_url("mytest://?colour=red")


def test_an_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="mytest"):
        backend_for("nosuch://x")
