"""Secrets and data files of ``relaystore serve`` (issue 15): planted or unsafe secrets are refused,
a concurrent first start is race-free, data files are private, and a 500 is logged, not shown."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from relaystore.errors import InvalidInput
from relaystore.server.tokens import load_secrets
from tests.support.relay_server import RELAYSTORE, RelayServer, start_server

NOBODY = 65534


def plant(directory: Path, name: str, text: str, mode: int) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def no_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAYSTORE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("RELAYSTORE_SIGNING_KEY", raising=False)


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("x" * 43, 0o666, "readable or writable by others"),
        ("x" * 43, 0o640, "readable or writable by others"),
        ("x" * 20, 0o600, "under 32 characters"),
    ],
)
def test_an_unsafe_admin_token_file_is_refused(tmp_path: Path, text: str, mode: int, message: str) -> None:
    plant(tmp_path / "state", "admin-token", text, mode)
    with pytest.raises(InvalidInput, match=message):
        load_secrets(tmp_path / "state")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_secrets_or_a_state_dir_of_another_user_are_refused(tmp_path: Path) -> None:
    planted = plant(tmp_path / "a", "signing-key", "k" * 43, 0o600)
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(InvalidInput, match="belongs to another user"):
        load_secrets(tmp_path / "a")
    (tmp_path / "b").mkdir()
    os.chown(tmp_path / "b", NOBODY, NOBODY)
    with pytest.raises(InvalidInput, match="belongs to another user"):
        load_secrets(tmp_path / "b")


def test_a_state_dir_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(InvalidInput, match="writable by other users"):
        load_secrets(shared)


def test_serve_refuses_a_planted_secret_with_one_line(tmp_path: Path) -> None:
    plant(tmp_path / "state", "admin-token", "x" * 20, 0o666)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYSTORE_")}
    done = subprocess.run(
        [RELAYSTORE, "serve", "--url", f"sqlite:///{tmp_path}/s.db", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "chmod 600" in lines[0], done.stderr


def test_a_concurrent_first_start_creates_one_set_of_secrets(tmp_path: Path) -> None:
    results: list[object] = []
    barrier = threading.Barrier(16)

    def start() -> None:
        barrier.wait()
        try:
            results.append(load_secrets(tmp_path / "state"))
        except Exception as exc:  # the assertion below names it
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({(r.admin_token, r.signing_key) for r in results}) == 1  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["admin-token", "signing-key"]


def emit(server: RelayServer) -> str:
    """One small output appended as the admin; its ref."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    body = {"task_id": "t", "attempt": 0, "producer_agent": "p", "event": {"type": "progress", "stage": "s"}}
    response = httpx.post(f"{server.url}/v1/outputs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["out_id"])


@pytest.mark.parametrize("scheme", ["sqlite", "file"])
def test_data_files_are_private_by_default(tmp_path: Path, scheme: str) -> None:
    (tmp_path / "data").mkdir()
    url = f"sqlite:///{tmp_path}/data/p.db" if scheme == "sqlite" else f"file://{tmp_path}/data/root"
    server = start_server(url, tmp_path)
    try:
        emit(server)
        modes = {path: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "data").rglob("*")}
    finally:
        server.stop()
    assert len(modes) >= 2
    assert all(mode & 0o077 == 0 for mode in modes.values()), {str(p): oct(m) for p, m in modes.items()}


def corrupt_output(server: RelayServer, root: Path) -> str:
    """Emit an output into the file store at ``root``, then spoil its record on disk; its ref."""
    ref = emit(server)
    for record in (root / "outputs" / "records").rglob("*"):
        if record.is_file():
            record.write_bytes(b"\xff not json")
    return ref


def test_a_corrupt_record_is_logged_with_its_trace_and_answered_without_paths(tmp_path: Path) -> None:
    server = start_server(f"file://{tmp_path}/root", tmp_path)
    try:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        ref = corrupt_output(server, tmp_path / "root")
        response = httpx.get(f"{server.url}/v1/outputs/{ref}", headers=headers)
        log = server.log()
    finally:
        server.stop()
    assert response.status_code == 500
    assert response.json()["error"] == "CorruptRecord"
    assert str(tmp_path) not in response.text
    assert "Traceback" in log and "CorruptRecord" in log and str(tmp_path) in log


def test_an_agent_outside_a_corrupt_records_scope_learns_nothing_of_it(tmp_path: Path) -> None:
    """The scope is checked before the record is told about: 403, as for any other task's output."""
    server = start_server(f"file://{tmp_path}/root", tmp_path)
    try:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        ref = corrupt_output(server, tmp_path / "root")
        scope = {"task": "other-task", "attempt": 0, "producer": "p"}
        agent = httpx.post(f"{server.url}/v1/tokens", json=scope, headers=headers).json()["token"]
        response = httpx.get(f"{server.url}/v1/outputs/{ref}", headers={"Authorization": f"Bearer {agent}"})
    finally:
        server.stop()
    assert response.status_code == 403, response.text
    assert "Corrupt" not in response.text and str(tmp_path) not in response.text


def test_the_umask_option_widens_the_data_files(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    server = start_server(f"sqlite:///{tmp_path}/data/w.db", tmp_path, "--umask", "022")
    try:
        emit(server)
        mode = stat.S_IMODE((tmp_path / "data" / "w.db").stat().st_mode)
    finally:
        server.stop()
    assert mode == 0o644, oct(mode)
