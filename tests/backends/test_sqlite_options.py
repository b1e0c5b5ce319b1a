"""``sqlite://`` URLs parse once into typed :class:`SqliteOptions`; which stores can be reopened."""

from __future__ import annotations

from pathlib import Path

import pytest

import relaystore
from relaystore.backends import parse_url
from relaystore.backends.sqlite import SqliteOptions
from relaystore.errors import InvalidInput
from relaystore.models import CheckpointMetadata
from relaystore.server.tokens import local_path


def test_a_relative_path_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = parse_url("sqlite:///data/r.db?synchronous=NORMAL", timeout=2)
    assert isinstance(options, SqliteOptions)
    assert options.path == "data/r.db"
    assert options.local_path == tmp_path / "data" / "r.db"
    assert (options.timeout, options.synchronous) == (2.0, "normal")
    assert not options.in_memory


def test_an_absolute_path_and_the_defaults() -> None:
    options = parse_url("sqlite:////srv/relay/r.db")
    assert isinstance(options, SqliteOptions)
    assert options.local_path == Path("/srv/relay/r.db")
    assert (options.scheme, options.timeout, options.synchronous) == ("sqlite", 30.0, "full")


def test_memory_has_no_local_path_and_the_server_keeps_no_secrets_beside_it() -> None:
    options = parse_url("sqlite:///:memory:")
    assert isinstance(options, SqliteOptions)
    assert options.path == ":memory:"
    assert options.local_path is None and options.in_memory
    assert local_path("sqlite:///:memory:") is None


def test_the_server_reads_the_typed_local_path(tmp_path: Path) -> None:
    assert local_path(f"sqlite:///{tmp_path}/x/../r.db") == tmp_path / "r.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://r.db", "three or four /"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///r.db?synchronous=sometimes", "synchronous must be one of"),
        ("sqlite:///r.db?timeout=0", "timeout must be above 0"),
        ("sqlite:///r.db?colour=red", "unknown sqlite option"),
    ],
)
def test_bad_urls_and_options_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_url(url)


@pytest.mark.parametrize(
    ("url", "reopenable"),
    [("memory://", False), ("memory://shared-name", False), ("sqlite:///:memory:", False)],
)
async def test_stores_living_in_this_process_are_not_reopenable(url: str, reopenable: bool) -> None:
    async with relaystore.connect(url) as store:
        assert store.reopenable is reopenable


async def test_a_sqlite_file_is_reopenable_and_holds_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    async with relaystore.connect(url) as store:
        assert store.reopenable is True
        saved = await store.checkpoints.save("t", CheckpointMetadata.new("t"), b"state")
        async with relaystore.connect(url) as again:
            assert await again.checkpoints.head("t") == saved
