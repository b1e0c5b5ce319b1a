"""``export`` and ``import``: a filled SQLite store copied to SQLite and to memory, item by item."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import relaystore
from relaystore.cli import app
from relaystore.stores import DOC_KINDS
from tests.cli.conftest import Filled

runner = CliRunner(env={"RELAYSTORE_URL": None})
RELAYSTORE = Path(sys.executable).with_name("relaystore")
EXPECTED_COUNTS = {
    "checkpoint": 5,
    "write": 0,
    "attachment": 0,
    "output": 8,
    "run": 2,
    "document": 5,
    "item": 0,
    "blob": 0,
}
HEADER = '{"type":"header","format":"relaystore-export","version":1}'  # v1 files have no footer


async def _snapshot(url: str) -> dict[str, Any]:
    """Everything the store holds, in store order, read through the public API.

    Output ``seq`` values are left out: an import assigns new ones (in the same order).
    """
    async with relaystore.connect(url) as store:
        threads: dict[str, list[Any]] = {}
        for thread_id in await store.checkpoints.list_threads():
            threads[thread_id] = [
                (meta.model_dump(), (await store.checkpoints.load(thread_id, meta.id)).state)
                for meta in await store.checkpoints.list(thread_id)
            ]
        outputs = [r.model_dump(mode="json", exclude={"seq"}) for r in await store.outputs.list()]
        runs = {
            a: [r.to_dict() for r in await store.adaptive.list_runs(a)]
            for a in await store.adaptive.list_agents()
        }
        docs = {kind: list(await store.adaptive.list_keys(kind)) for kind in DOC_KINDS}
        loaded = {
            "plan": [await store.adaptive.load_plan(k) for k in docs["plan"]],
            "trie": [await store.adaptive.load_trie(k) for k in docs["trie"]],
            "accumulators": [await store.adaptive.load_accumulators(k) for k in docs["accumulators"]],
            "acg_observations": [await store.adaptive.load_observations(k) for k in docs["acg_observations"]],
            "acg_stability": [await store.adaptive.load_stability(k) for k in docs["acg_stability"]],
        }
        return {"threads": threads, "outputs": outputs, "runs": runs, "keys": docs, "documents": loaded}


def snapshot(url: str) -> dict[str, Any]:
    return asyncio.run(_snapshot(url))


def export_text(url: str) -> str:
    result = runner.invoke(app, ["export", "--url", url])
    assert result.exit_code == 0, result.output
    return result.stdout


def import_text(url: str, text: str, *args: str) -> Any:
    return runner.invoke(app, ["import", "--url", url, *args], input=text)


def without_seq(export: str) -> list[dict[str, Any]]:
    """The export's lines with each output's store-assigned ``seq`` removed."""
    lines = [json.loads(line) for line in export.splitlines()]
    for line in lines:
        line.get("record", {}).pop("seq", None)
    return lines


def memory_url() -> str:
    return f"memory://transfer-{uuid.uuid4().hex}"


def test_export_is_header_then_typed_lines(filled: Filled) -> None:
    lines = [json.loads(line) for line in export_text(filled.url).splitlines()]
    assert (
        lines[0]["type"] == "header"
        and lines[0]["format"] == "relaystore-export"
        and lines[0]["version"] == 2
    )
    kinds = [line["type"] for line in lines[1:]]
    assert kinds == ["checkpoint"] * 5 + ["output"] * 8 + ["run"] * 2 + ["document"] * 5 + ["footer"]
    assert lines[-1]["counts"] == EXPECTED_COUNTS
    binary = next(
        line for line in lines if line["type"] == "checkpoint" and line["metadata"]["state_size"] == 256
    )
    assert base64.b64decode(binary["state"]) == bytes(range(256))
    assert [line["kind"] for line in lines[-6:-1]] == list(DOC_KINDS)


def test_round_trip_to_sqlite_and_memory(filled: Filled, tmp_path: Path) -> None:
    exported = export_text(filled.url)
    original = snapshot(filled.url)
    for target in (f"sqlite:///{tmp_path / 'b.db'}", memory_url()):
        result = import_text(target, exported, "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["counts"] == EXPECTED_COUNTS
        assert summary["documents"] == dict.fromkeys(DOC_KINDS, 1)
        copy = snapshot(target)
        for part in original:
            assert copy[part] == original[part], (target, part)
        # Lineage survives: the writer's ancestors are found in the copy too.
        lineage = runner.invoke(app, ["lineage", filled.refs["writer"], "--url", target, "--json"])
        assert len(json.loads(lineage.stdout)["ancestors"]) == 3
        # Exporting the copy gives the same lines, but for the header's timestamp and output seqs
        # (which the footer's checksum covers).
        assert without_seq(export_text(target))[1:-1] == without_seq(exported)[1:-1]


def test_shell_redirection_with_a_live_progress_bar(filled: Filled, tmp_path: Path) -> None:
    """The issue's own commands; FORCE_COLOR makes Rich draw the bar, which must stay on stderr."""
    env = {**os.environ, "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
    env.pop("RELAYSTORE_URL", None)
    script = (
        f"'{RELAYSTORE}' export --url '{filled.url}' > x.jsonl && "
        f"'{RELAYSTORE}' import --url 'sqlite:///b.db' < x.jsonl"
    )
    done = subprocess.run(
        ["sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b[" in done.stderr  # the progress bar and summary were drawn
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert all(json.loads(line)["type"] for line in lines)
    assert snapshot(f"sqlite:///{tmp_path / 'b.db'}") == snapshot(filled.url)


def test_file_options_and_json_summary(filled: Filled, tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl"
    result = runner.invoke(app, ["export", "--url", filled.url, "--output", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"] == EXPECTED_COUNTS
    assert not path.with_name("dump.jsonl.partial").exists()
    target = memory_url()
    result = runner.invoke(app, ["import", "--url", target, "--input", str(path)])
    assert result.exit_code == 0, result.output
    assert "checkpoint" in result.stderr and result.stdout == ""
    assert snapshot(target)["outputs"] == snapshot(filled.url)["outputs"]


def test_reimport_conflicts_unless_skipping(filled: Filled) -> None:
    exported = export_text(filled.url)
    target = memory_url()
    assert import_text(target, exported).exit_code == 0
    again = import_text(target, exported)
    assert again.exit_code == 1
    assert "Conflict: line 2:" in again.stderr and "already has checkpoint" in again.stderr
    resumed = import_text(target, exported, "--skip-existing", "--json")
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == {**dict.fromkeys(EXPECTED_COUNTS, 0), "checkpoint": 5, "output": 8, "run": 2}
    assert summary["counts"]["document"] == 5  # documents overwrite, they never conflict


CHECKPOINT = json.dumps(
    {"type": "checkpoint", "thread_id": "t", "metadata": {"id": "c1", "thread_id": "t"}, "state": "aGk="}
)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 3: not JSON"),
        ("[1, 2]", "line 3: expected a JSON object"),
        ('{"type": "thing"}', "line 3: unknown line type 'thing'"),
        (CHECKPOINT.replace("aGk=", "a!k="), "line 3: invalid checkpoint line: state"),
        (CHECKPOINT.replace('"thread_id": "t"}', '"thread_id": "u"}'), "line 3: metadata.thread_id 'u'"),
        ('{"type": "output", "record": {"id": "x"}}', "line 3: invalid output line: record.id"),
        ('{"type": "document", "kind": "trie", "key": "a", "document": {}}', "line 3: invalid document line"),
        (
            '{"type": "document", "kind": "nope", "key": "a", "document": {}}',
            "line 3: invalid document line: kind",
        ),
        (HEADER.replace(":1}", ":3}"), "line 3: export format version 3"),
    ],
)
def test_bad_line_is_reported_and_not_written(bad_line: str, message: str) -> None:
    target = memory_url()
    good = CHECKPOINT.replace('"c1"', '"c0"')
    result = import_text(target, f"{HEADER}\n{good}\n{bad_line}\n{CHECKPOINT}\n")
    assert result.exit_code == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    threads = snapshot(target)["threads"]
    assert [meta["id"] for meta, _ in threads.get("t", [])] == ["c0"]  # line 2 kept, nothing after


def test_input_must_start_with_a_header() -> None:
    result = import_text(memory_url(), CHECKPOINT + "\n")
    assert result.exit_code == 1 and "line 1: not a relaystore-export file" in result.stderr
    empty = import_text(memory_url(), "\n")
    assert empty.exit_code == 1 and "empty input" in empty.stderr
    binary = runner.invoke(app, ["import", "--url", memory_url()], input=HEADER.encode() + b"\n\xff\n")
    assert binary.exit_code == 1 and "line 2: not UTF-8" in binary.stderr


def test_a_cut_or_altered_export_is_refused(filled: Filled) -> None:
    lines = export_text(filled.url).splitlines()
    cut = import_text(memory_url(), "\n".join(lines[:-3]) + "\n")
    assert cut.exit_code == 1 and "ends before its footer" in cut.stderr
    dropped = import_text(memory_url(), "\n".join([lines[0], *lines[2:]]) + "\n")
    assert dropped.exit_code == 1 and "the export was altered" in dropped.stderr


def test_summary_carries_the_checksum_the_footer_holds(filled: Filled, tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl"
    exported = runner.invoke(app, ["export", "--url", filled.url, "--output", str(path), "--json"])
    footer = json.loads(path.read_text().splitlines()[-1])
    assert json.loads(exported.stdout)["sha256"] == [footer["sha256"]]
    assert json.loads(exported.stdout)["corrupt"] == []
    imported = runner.invoke(app, ["import", "--url", memory_url(), "--input", str(path), "--json"])
    assert json.loads(imported.stdout)["sha256"] == [footer["sha256"]]
