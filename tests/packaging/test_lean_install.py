"""``pip install relaystore`` into a fresh venv: the core needs only pydantic, and each missing extra
is named in one line (issue 14's lean install, issue 16's first hour)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ABSENT = ("typer", "rich", "rfc8785", "starlette", "uvicorn", "httpx", "redis", "psycopg", "langgraph")


def pip_install(env: Path, *args: str) -> None:
    """Install into ``env`` with this interpreter's pip (indexes and cache as configured here)."""
    command = [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "-q", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=300)


def run(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=60, cwd=env
    )


def assert_one_line(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("lean") / "venv"
    venv.create(env, with_pip=False)  # pip comes from outside: seconds, not tens
    pip_install(env, str(ROOT))
    return env


def test_core_install_brings_only_pydantic(lean: Path) -> None:
    probe = (
        "import asyncio, importlib.util, relaystore\n"
        f"print([m for m in {ABSENT!r} if importlib.util.find_spec(m)])\n"
        "async def main():\n"
        "    async with relaystore.connect('sqlite:///lean.db') as store:\n"
        "        await store.checkpoints.save('t', relaystore.models.CheckpointMetadata.new('t'), b'x')\n"
        "        print(await store.checkpoints.count('t'))\n"
        "import relaystore.models\n"
        "asyncio.run(main())\n"
    )
    result = run(lean, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "1"]
    assert list(lean.glob("lib/python3*/site-packages/relaystore/py.typed"))


def test_missing_extras_are_named_in_one_line(lean: Path) -> None:
    assert_one_line(run(lean, "relaystore", "serve"), "pip install 'relaystore[server]'")
    assert_one_line(run(lean, "relaystore", "threads"), "pip install 'relaystore[cli]'")
    assert_one_line(run(lean, "python", "-m", "relaystore", "--version"), "pip install 'relaystore[cli]'")
    imported = run(lean, "python", "-c", "from relaystore.integrations.langgraph import RelaySaver")
    assert imported.returncode != 0
    assert imported.stderr.strip().splitlines()[-1] == (
        "ImportError: relaystore.integrations.langgraph needs the langgraph extra: "
        "pip install 'relaystore[langgraph]'"
    )


def test_cli_without_the_server_extra(lean: Path) -> None:
    pip_install(lean, "typer", "rich", "rfc8785")
    version = run(lean, "relaystore", "--version")
    assert version.returncode == 0 and version.stdout.startswith("relaystore "), version.stderr
    for command in (["serve"], ["token", "issue", "--task", "t", "--attempt", "0", "--producer", "p"]):
        assert_one_line(run(lean, "relaystore", *command), "pip install 'relaystore[server]'")
    assert not (lean / "relaystore.db").exists()  # the refused commands opened nothing
