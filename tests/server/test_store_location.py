"""Where a server keeps its secrets and which store id its tokens name: read from the backend's
typed options (``local_path``), never from scheme names in the server."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from relaystore import backends
from relaystore.backends._policy import BackendOptions
from relaystore.server.tokens import STATE_DIR_NAME, local_path, state_dir_for, store_id


class LocalOptions(BackendOptions):
    local_path: Path | None


@pytest.fixture
def local_scheme(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A backend ``localtest://NAME`` whose store lives in tmp_path/NAME (none for ``-``)."""
    module = types.ModuleType("relaystore_test_local_backend")

    def parse_url(url: str, options: dict[str, Any]) -> LocalOptions:
        name = url.split("://", 1)[1]
        return LocalOptions(scheme="localtest", url=url, local_path=None if name == "-" else tmp_path / name)

    module.parse_url = parse_url  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(backends.BUILTIN, "localtest", module.__name__)
    return "localtest"


def test_a_local_store_keeps_its_secrets_beside_it(local_scheme: str, tmp_path: Path) -> None:
    assert local_path("localtest://db") == tmp_path / "db"
    assert state_dir_for("localtest://db") == tmp_path / STATE_DIR_NAME


def test_a_store_without_a_local_path_uses_the_working_directory(
    local_scheme: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path / "..")
    assert local_path("localtest://-") is None
    assert state_dir_for("localtest://-") == Path.cwd() / STATE_DIR_NAME
    assert state_dir_for("memory://") == Path.cwd() / STATE_DIR_NAME


def test_a_file_store_keeps_its_secrets_beside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert local_path(f"file://{root}?fsync=false") == root.resolve()
    assert state_dir_for(f"file://{root}") == root.resolve().parent / STATE_DIR_NAME
    assert store_id(f"file://{root}") == store_id(f"file://{root}/../store?timeout=3")


def test_store_ids_follow_the_location(local_scheme: str) -> None:
    assert store_id("localtest://a") == store_id("localtest://a")
    assert store_id("localtest://a") != store_id("localtest://b")
    assert store_id("redis://h:1/0") != store_id("redis://h:2/0")
    assert store_id("redis://user:pw@h:1/0") == store_id("redis://h:1/0")  # credentials never count
