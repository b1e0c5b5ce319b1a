"""``relaystore doctor`` and ``export`` on a store with corrupt records and a damaged counter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

import relaystore
from relaystore.cli import app
from relaystore.testing import docs
from relaystore.testing.damage import damage

runner = CliRunner(env={"RELAYSTORE_URL": None})


async def _fill(url: str) -> None:
    async with relaystore.connect(url) as store:
        for key in ("a", "b", "c"):
            await store.adaptive.store_accumulators(key, docs.accumulator_state())
        for _ in range(5):
            await store.outputs.append("t", 0, "w", docs.artifact_event())


def _corrupt_document(root: Path, key: str, how: str) -> Path:
    path = root / "adaptive" / "accumulators" / f"{key}.json"
    path.write_bytes(damage(path.read_bytes(), how))
    return path


def test_export_goes_on_past_corrupt_documents_and_names_them(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s"
    asyncio.run(_fill(url))
    _corrupt_document(tmp_path / "s", "a", "utf8")  # the first document: the good ones follow it
    dump = tmp_path / "dump.jsonl"
    done = runner.invoke(app, ["export", "--url", url, "--output", str(dump), "--json"])
    assert done.exit_code == 0, done.stderr
    summary = json.loads(done.stdout)
    assert len(summary["corrupt"]) == 1 and summary["corrupt"][0].endswith(("a.json", "accumulators:a"))
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert sorted(line["key"] for line in lines if line["type"] == "document") == ["b", "c"]
    assert summary["counts"]["output"] == 5 and summary["counts"]["document"] == 2
    text = runner.invoke(app, ["export", "--url", url, "--output", str(dump)])
    assert text.exit_code == 0 and "left out 1 corrupt record(s)" in text.stderr


def _one_output_export() -> str:
    async def export() -> str:
        async with relaystore.connect("memory://") as store:
            await store.outputs.append("t", 0, "w", docs.artifact_event())
            from relaystore.stores.transfer import Exporter, dump_line

            return "".join([dump_line(line) + "\n" async for _, line in Exporter(store).lines()])

    return asyncio.run(export())


def test_doctor_reports_corrupt_records_and_repairs_the_counter(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s"
    asyncio.run(_fill(url))
    _corrupt_document(tmp_path / "s", "b", "json")
    counter = tmp_path / "s" / "seq"
    counter.write_text(counter.read_text().replace("5 ", "2 ", 1))

    found = runner.invoke(app, ["doctor", "--url", url, "--json"])
    assert found.exit_code == 2, found.stderr
    report = json.loads(found.stdout)
    assert (
        not report["healthy"]
        and len(report["corrupt"]) == 1
        and report["corrupt"][0].endswith(("b.json", "accumulators:b"))
    )
    assert [(c["trusted"], c["expected"]) for c in report["counters"]] == [(False, 5)]
    assert report["read"] == {"output": 5, "document": 2}

    reads = runner.invoke(app, ["outputs", "t", "0", "--url", url, "--json"])  # reads still work
    assert reads.exit_code == 0, reads.stderr
    written = runner.invoke(app, ["import", "--url", url], input=_one_output_export())  # writes do not
    assert written.exit_code == 1 and "relaystore doctor --url" in written.stderr

    repaired = runner.invoke(app, ["doctor", "--url", url, "--repair"])
    assert repaired.exit_code == 2  # the corrupt document remains, and is said to
    assert "repaired" in repaired.stdout and "1 corrupt record(s)" in repaired.stdout
    assert int(counter.read_text().split()[0]) == 5

    (tmp_path / "s" / "adaptive" / "accumulators" / "b.json").unlink()
    healthy = runner.invoke(app, ["doctor", "--url", url])
    assert healthy.exit_code == 0 and "healthy" in healthy.stdout


def test_doctor_on_a_missing_store_is_one_line(tmp_path: Path) -> None:
    done = runner.invoke(app, ["doctor", "--url", f"sqlite:///{tmp_path}/none.db"])
    assert done.exit_code == 1 and "no store at sqlite:" in done.stderr
    assert not (tmp_path / "none.db").exists()
