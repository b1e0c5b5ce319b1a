"""examples/swarm/run.py against a real server: three agents (two Python, one curl) and lineage."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import relaystore
from tests.support.relay_server import start_server

RUN = Path(__file__).resolve().parents[2] / "examples" / "swarm" / "run.py"


async def test_swarm_example_hands_refs_along_and_prints_the_lineage(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path}/swarm.db", tmp_path)
    try:
        done = subprocess.run(
            [sys.executable, str(RUN), "--url", server.url, "--admin-token", server.admin_token],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        refs = dict(re.findall(r"^(planner|researcher|writer)\s+(out-[0-9a-f]{32})", done.stdout, re.M))
        assert set(refs) == {"planner", "researcher", "writer"}
        assert "descendants (2)" in done.stdout  # the lineage tree of the planner's output
        async with relaystore.connect(server.url, token=server.admin_token) as store:
            researcher = await store.outputs.get(refs["researcher"])
            writer = await store.outputs.get(refs["writer"])
            assert researcher.parent_refs == [refs["planner"]]
            assert writer.parent_refs == [refs["planner"], refs["researcher"]]
            assert researcher.event.type == "artifact" and researcher.event.content.kind == "blob"
            notes = await store.blobs.get(researcher.event.content.sha256)
            assert notes.startswith(b"notes of researcher") and refs["planner"].encode() in notes
            assert writer.event.content.value["read"] == {
                refs["planner"]: "planner",
                refs["researcher"]: "researcher",
            }
    finally:
        server.stop()
