"""What a new user meets in the first hour (issue 16): each mistake ends in one line naming the fix,
a non-zero exit, no traceback, and soon. Run as real processes, as a user runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, cwd: Path, within: float = 10.0) -> subprocess.CompletedProcess[str]:
    """``python -m relaystore ARGS``; fails the test if it takes longer than ``within`` seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("RELAYSTORE_URL", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=within + 20
    )
    assert time.monotonic() - started < within, f"took {time.monotonic() - started:.1f}s"
    return done


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_sqlite_under_a_missing_directory(tmp_path: Path) -> None:
    done = cli("-m", "relaystore", "threads", "--url", "sqlite:////proc/nope/x.db", cwd=tmp_path)
    assert_one_line_error(done, "/proc/nope/x.db does not exist", "--url")


def test_sqlite_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    url = f"sqlite:///{tmp_path}/file/x.db"
    assert_one_line_error(cli("-m", "relaystore", "info", "--url", url, cwd=tmp_path), "no store at")
    writing = cli("-m", "relaystore", "import", "--url", url, "--input", os.devnull, cwd=tmp_path)
    assert_one_line_error(writing, "FileExistsError", str(tmp_path / "file"), "--url")


def test_reading_commands_create_nothing(tmp_path: Path) -> None:
    for command in ("info", "threads", "export"):
        done = cli("-m", "relaystore", command, "--url", "sqlite:///typo/store.db", cwd=tmp_path)
        assert_one_line_error(done, "typo/store.db does not exist")
    assert list(tmp_path.iterdir()) == []
    written = cli(
        "-m", "relaystore", "memory", "put", "a", "k", "{}", "--url", "sqlite:///new/s.db", cwd=tmp_path
    )
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "new" / "s.db").is_file()  # writing commands still create


def test_json_errors_are_a_json_object(tmp_path: Path) -> None:
    done = cli("-m", "relaystore", "info", "--json", "--url", "sqlite:///no.db", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    error = json.loads(done.stderr)
    assert error["error"] == "NotFound" and "no.db" in error["message"]


def test_serve_an_unknown_scheme(tmp_path: Path) -> None:
    done = cli("-m", "relaystore", "serve", "--url", "foo://x", cwd=tmp_path)
    assert_one_line_error(done, "unknown store scheme 'foo'")
    assert "serving" not in done.stderr


def test_serve_a_redis_nobody_listens_on(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = cli("-m", "relaystore", "serve", "--url", url, "--port", "0", cwd=tmp_path)
    assert_one_line_error(done, "Redis unavailable")
    assert "serving" not in done.stderr


def test_postgres_database_that_does_not_exist(tmp_path: Path) -> None:
    url = "postgresql://127.0.0.1:5432/no_such_db_16a"
    done = cli("-m", "relaystore", "info", "--url", url, cwd=tmp_path, within=5.0)
    assert_one_line_error(done, 'database "no_such_db_16a" does not exist')


@pytest.mark.parametrize("token", [None, "some-admin-token"])
def test_swarm_without_a_server(tmp_path: Path, token: str | None) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    extra = ["--admin-token", token] if token else []
    done = cli(str(ROOT / "examples" / "swarm" / "run.py"), "--url", url, *extra, cwd=tmp_path)
    assert_one_line_error(done, "make run")


def test_version_and_python_dash_m(tmp_path: Path) -> None:
    import relaystore

    done = cli("-m", "relaystore", "--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"relaystore {relaystore.__version__}"


def test_help_names_the_token_variable_and_shows_no_type_labels(tmp_path: Path) -> None:
    top = cli("-m", "relaystore", "--help", cwd=tmp_path).stdout
    assert "--token" in top and "RELAYSTORE_TOKEN" in top
    for command in ("serve", "checkpoints", "token issue", "memory put"):
        shown = cli("-m", "relaystore", *command.split(), "--help", cwd=tmp_path).stdout
        assert "<str>" not in shown and "<bool>" not in shown and "<int" not in shown, shown
    serve = cli("-m", "relaystore", "serve", "--help", cwd=tmp_path).stdout
    assert "token-signing key (mode 0600) to the state directory" in " ".join(serve.split())


def test_piped_output_is_not_cut_to_80_columns(tmp_path: Path) -> None:
    thread = "a-thread-id-long-enough-that-an-80-column-table-would-have-to-cut-or-wrap-it-somewhere"
    put = "import relaystore\nfrom relaystore.models import CheckpointMetadata as M\n"
    put += "with relaystore.connect_sync('sqlite:///p.db') as s:\n"
    put += f"    s.checkpoints.save({thread!r}, M.new({thread!r}), b'x')\n"
    assert cli("-c", put, cwd=tmp_path).returncode == 0
    done = cli("-m", "relaystore", "threads", "--url", "sqlite:///p.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert any(thread in line for line in done.stdout.splitlines()), done.stdout


def test_http_store_without_a_token_names_the_option(tmp_path: Path) -> None:
    from tests.support.relay_server import start_server

    served = start_server(f"sqlite:///{tmp_path / 's.db'}", tmp_path)
    try:
        done = cli("-m", "relaystore", "info", "--url", served.url, cwd=tmp_path)
        assert_one_line_error(done, "Unauthorized", "--token", "RELAYSTORE_TOKEN")
        shown = cli(
            "-m", "relaystore", "--token", served.admin_token, "info", "--url", served.url, cwd=tmp_path
        )
        assert shown.returncode == 0 and "http" in shown.stdout, shown.stderr
    finally:
        served.stop()
