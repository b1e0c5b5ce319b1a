"""``memory://`` URLs parse into typed :class:`MemoryOptions`; the backend refuses every option."""

from __future__ import annotations

import pytest

import relaystore
from relaystore.backends import parse_url
from relaystore.backends.memory import MemoryOptions
from relaystore.errors import InvalidInput
from relaystore.models import CheckpointMetadata


@pytest.mark.parametrize(
    ("url", "name"), [("memory://", None), ("memory://team", "team"), ("memory://a/b", "a/b")]
)
def test_the_url_names_the_shared_store(url: str, name: str | None) -> None:
    options = parse_url(url)
    assert isinstance(options, MemoryOptions)
    assert (options.scheme, options.name) == ("memory", name)


async def test_an_option_is_refused_not_ignored() -> None:
    with pytest.raises(InvalidInput, match="unknown memory option"):
        parse_url("memory://x?timeout=5")
    with pytest.raises(InvalidInput, match="unknown memory option"):
        async with relaystore.connect("memory://x", timeout=5):
            pass


async def test_a_named_store_is_shared_and_a_private_one_is_not() -> None:
    async with (
        relaystore.connect("memory://options-shared") as one,
        relaystore.connect("memory://options-shared") as two,
    ):
        saved = await one.checkpoints.save("t", CheckpointMetadata.new("t"), b"state")
        assert await two.checkpoints.head("t") == saved
        assert (await one.info())["shared_name"] == "options-shared"
    async with relaystore.connect("memory://") as private:
        assert (await private.info())["shared_name"] is None
