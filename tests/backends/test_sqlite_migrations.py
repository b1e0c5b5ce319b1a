"""A SQLite file written by an older relaystore opens, migrates once, and keeps every record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import relaystore
from relaystore.backends.sqlite import migrations as sqlite_migrations
from relaystore.models import CheckpointMetadata, PendingWrite
from relaystore.testing import docs

LARGE_TABLES = ("documents", "checkpoint_writes", "thread_attachments", "blob_chunks")


def _tables_sql(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())


def _versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM relaystore_schema ORDER BY version")]


async def test_version_3_file_migrates_to_rowid_tables_keeping_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with pytest.MonkeyPatch.context() as patch:  # write the file as relaystore with 3 migrations did
        patch.setattr(sqlite_migrations, "MIGRATIONS", sqlite_migrations.MIGRATIONS[:3])
        patch.setattr(sqlite_migrations, "SCHEMA_VERSION", 3)
        async with relaystore.connect(f"sqlite:///{path}") as old:
            checkpoint = CheckpointMetadata.new("t")
            await old.checkpoints.save("t", checkpoint, b"state", attachments={"big": b"v" * 300_000})
            await old.adaptive.store_accumulators("agent", docs.accumulator_state(count=3))
            digest = (await old.blobs.put(b"b" * 2_000_000)).sha256
    write = PendingWrite(task_id="task", idx=0, channel="c", value=b"\x00w\xff", type="msgpack")
    with sqlite3.connect(path) as conn:  # a pending write as versions 3 and 4 kept it: JSON, base64 value
        conn.execute(
            "INSERT INTO checkpoint_writes VALUES (?, ?, ?, ?, ?)",
            ("t", checkpoint.id, "task", 0, write.model_dump_json()),
        )
    assert _versions(path) == [1, 2, 3]
    assert "WITHOUT ROWID" in _tables_sql(path)["thread_attachments"]

    async with relaystore.connect(f"sqlite:///{path}") as store:
        assert (await store.checkpoints.get_attachments("t", ["big"])) == {"big": b"v" * 300_000}
        assert await store.checkpoints.list_writes("t", checkpoint.id) == [write]
        accumulators = await store.adaptive.load_accumulators("agent")
        assert accumulators is not None and docs.counter_of(accumulators) == 3
        assert await store.blobs.get(digest) == b"b" * 2_000_000
        assert (await store.checkpoints.load_latest("t")).state == b"state"

    assert _versions(path) == list(range(1, sqlite_migrations.SCHEMA_VERSION + 1))
    tables = _tables_sql(path)
    for table in LARGE_TABLES:
        assert "WITHOUT ROWID" not in tables[table], table
    assert not any(name.endswith("_new") for name in tables)
