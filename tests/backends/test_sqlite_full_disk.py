"""A SQLite store on a full disk still opens: read-only, from the database file alone, saying why.

A WAL database needs its ``-shm`` file even to be read, and on a 100% full disk SQLite cannot
create it ("disk I/O error"), so a restarted ``serve`` would serve nothing. The fixture mounts a
1 MiB tmpfs (we run as root in CI) and fills it; without root it makes the directory read-only,
which refuses the ``-shm`` file the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import relaystore
from relaystore.cli import app
from relaystore.errors import BackendUnavailable
from relaystore.models import CheckpointMetadata
from relaystore.testing import docs


class Disk:
    """A directory that can be made full (or unwritable) and freed again."""

    def __init__(self, path: Path, mounted: bool) -> None:
        self.path = path
        self.mounted = mounted

    def fill(self) -> None:
        if self.mounted:
            filler = self.path / "filler"
            # ENOSPC ends it; unbuffered, so closing has nothing left to flush (and fail on)
            with contextlib.suppress(OSError), filler.open("wb", buffering=0) as handle:
                while True:
                    handle.write(b"\0" * 65536)
            assert os.statvfs(self.path).f_bavail == 0
        else:
            self.path.chmod(0o555)

    def free(self) -> None:
        if self.mounted:
            (self.path / "filler").unlink()
        else:
            self.path.chmod(0o755)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    path = tmp_path / "disk"
    path.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=False)
        if mounted.returncode != 0:
            pytest.skip("running as root, but cannot mount a tmpfs here")
        try:
            yield Disk(path, mounted=True)
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        yield Disk(path, mounted=False)
        path.chmod(0o755)


async def _fill_store(url: str) -> None:
    async with relaystore.connect(url) as store:
        for step in range(3):
            await store.checkpoints.save("t", CheckpointMetadata(id=f"c{step}", thread_id="t"), b"s%d" % step)
        await store.outputs.append("task", 0, "w", docs.artifact_event())


async def test_a_full_disk_opens_read_only_and_says_why(disk: Disk, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{disk.path}/store-{uuid.uuid4().hex}.db"
    await _fill_store(url)
    disk.fill()
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        store = await relaystore.connect(url)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.name == "relaystore"]
        assert any("serving it read-only" in w for w in warnings), warnings
        assert (await store.checkpoints.load_latest("t")).state == b"s2"
        assert [m.id for m in await store.checkpoints.list("t")] == ["c0", "c1", "c2"]
        assert len(await store.outputs.list()) == 1
        assert await store.items.search(()) == []  # the file never held items: empty, not an error
        assert (await store.info())["read_only"]
        for write in (
            store.checkpoints.save("t", CheckpointMetadata(id="c3", thread_id="t"), b"", expected_head="c2"),
            store.outputs.append("task", 0, "w", docs.artifact_event()),
            store.adaptive.store_accumulators("a", docs.accumulator_state()),
            store.items.put(("ns",), "k", {"v": 1}),
        ):
            with pytest.raises(BackendUnavailable, match=r"open read-only .*nothing was written"):
                await write
        assert await store.checkpoints.head("t") == "c2"
    finally:
        await store.close()

    disk.free()  # space again: a reopened store writes
    async with relaystore.connect(url) as store:
        await store.checkpoints.save("t", CheckpointMetadata(id="c3", thread_id="t"), b"", expected_head="c2")
        assert (await store.info())["read_only"] is None


def test_the_cli_reads_a_store_on_a_full_disk(disk: Disk) -> None:
    import asyncio

    url = f"sqlite:///{disk.path}/cli.db"
    asyncio.run(_fill_store(url))
    disk.fill()
    done = CliRunner(env={"RELAYSTORE_URL": None}).invoke(app, ["checkpoints", "t", "--url", url, "--json"])
    assert done.exit_code == 0, done.stderr
    assert "c2" in done.stdout
