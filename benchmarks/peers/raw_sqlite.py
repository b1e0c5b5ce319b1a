"""The floor: plain ``sqlite3`` on the calling thread, at relaystore's default durability.

WAL journal, ``synchronous=FULL``, one explicit transaction per write, and the same row shape as
relaystore's tables (a JSON text column plus, for checkpoints, a state BLOB). Nothing validates,
nothing hops to a worker thread: whatever relaystore does on top of this is its overhead.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from relaystore.models.adaptive import RunRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    thread_id TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    metadata TEXT NOT NULL,
    state BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_thread_seq ON checkpoints (thread_id, seq);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY,
    agent_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_agent_seq ON runs (agent_id, seq);
"""


class RawSqlite:
    """One autocommit connection with relaystore's PRAGMAs; each write is its own transaction."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute(sql, params)
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ checkpoints

    def insert_checkpoint(self, thread_id: str, metadata: dict[str, Any], state: bytes) -> None:
        self._write(
            "INSERT INTO checkpoints (thread_id, checkpoint_id, metadata, state) VALUES (?,?,?,?)",
            (thread_id, metadata["id"], json.dumps(metadata), state),
        )

    def latest_checkpoint(self, thread_id: str) -> tuple[dict[str, Any], bytes] | None:
        row = self.conn.execute(
            "SELECT metadata, state FROM checkpoints WHERE thread_id = ? ORDER BY seq DESC LIMIT 1",
            (thread_id,),
        ).fetchone()
        return None if row is None else (json.loads(row[0]), row[1])

    def count_checkpoints(self, thread_id: str) -> int:
        row = self.conn.execute(
            "SELECT COUNT(*) FROM checkpoints WHERE thread_id = ?", (thread_id,)
        ).fetchone()
        return int(row[0])

    def thread_ids(self) -> list[str]:
        """Every thread id, sorted (the index on ``(thread_id, seq)`` serves the DISTINCT)."""
        return [
            r[0] for r in self.conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY thread_id")
        ]

    # ------------------------------------------------------------------ runs

    def insert_run(self, run: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO runs (agent_id, run_id, doc) VALUES (?,?,?)",
            (run["agent_id"], run["id"], json.dumps(run, separators=(",", ":"))),
        )

    def list_runs_naively(self, agent_id: str) -> list[RunRecord]:
        """One SELECT for the run list, then one SELECT per run: the naive loop peer. Each run is
        decoded into the same RunRecord model relaystore returns, so only the reading differs."""
        seqs = [
            r[0]
            for r in self.conn.execute("SELECT seq FROM runs WHERE agent_id = ? ORDER BY seq", (agent_id,))
        ]
        return [
            RunRecord.model_validate_json(
                self.conn.execute("SELECT doc FROM runs WHERE seq = ?", (seq,)).fetchone()[0]
            )
            for seq in seqs
        ]
