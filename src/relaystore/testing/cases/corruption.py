"""Corrupt records stay contained: every record kind × every kind of damage.

For each record kind (checkpoint metadata, output, run, adaptive document, long-term item, blob
metadata) and each damage of :mod:`relaystore.testing.damage` (``utf8``, ``json``, ``type``), the
record is damaged behind the store's back through the factory's ``corrupt`` hook, then:

- its own read raises :class:`CorruptRecord` (never ``BackendUnavailable`` or a raw error) and the
  reads of its neighbours still work;
- listings skip it with a warning on the ``relaystore`` logger, and paging past it goes on;
- counts count stored records, the corrupt one included (so a count may exceed what a listing
  returns by the corrupt records it skipped and logged);
- an ``update_*`` refuses to build on it (``CorruptRecord``) and writes nothing;
- an export leaves it out, exports everything else and names it in :attr:`Exporter.corrupt`.

A factory that cannot hold a kind corrupt in some way (the memory backend keeps decoded objects;
PostgreSQL's json columns refuse bytes that are not UTF-8 JSON) raises ``NotImplementedError``
and the case is skipped, naming why.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from relaystore.errors import CorruptRecord, NotSupported
from relaystore.stores import Store
from relaystore.stores.items import Condition
from relaystore.stores.transfer import Exporter
from relaystore.testing import Capability
from relaystore.testing import docs as kit
from relaystore.testing.damage import HOWS

pytestmark = [pytest.mark.parametrize("how", HOWS)]


def _warned(caplog: pytest.LogCaptureFixture) -> bool:
    return any(r.name == "relaystore" and r.levelno == logging.WARNING for r in caplog.records)


async def _export(store: Store) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Every exported line by type, and the corrupt records the export named."""
    exporter = Exporter(store)
    lines: dict[str, list[dict[str, Any]]] = {}
    async for kind, line in exporter.lines():
        lines.setdefault(kind, []).append(line)
    return lines, exporter.corrupt


async def _every_page(list_page: Any, **kwargs: Any) -> list[Any]:
    return [item for page in await kit.all_pages(list_page, 1, **kwargs) for item in page]


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.relaystore_requires(Capability.CHECKPOINTS)
async def test_corrupt_checkpoint_is_contained(
    store: Store, factory: object, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    for step in range(3):
        await store.checkpoints.save("t1", kit.checkpoint("t1", f"c{step}", step), b"s%d" % step)
    await store.checkpoints.save("t2", kit.checkpoint("t2", "d0"), b"other")
    await kit.corrupt_or_skip(factory, store, "checkpoint", ("t1", "c1"), how=how)

    with pytest.raises(CorruptRecord) as info:
        await store.checkpoints.load("t1", "c1")
    assert info.value.key
    assert (await store.checkpoints.load("t1", "c0")).state == b"s0"
    assert (await store.checkpoints.load_latest("t1")).metadata.id == "c2"
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        assert [m.id for m in await store.checkpoints.list("t1")] == ["c0", "c2"]
        assert [m.id for m in await _every_page(store.checkpoints.list, thread_id="t1")] == ["c0", "c2"]
        assert [b.metadata.id for b in await store.checkpoints.list_full("t1")] == ["c2", "c0"]
    assert _warned(caplog)
    assert await store.checkpoints.count("t1") == 3  # stored records, the skipped one included
    assert list(await store.checkpoints.list_threads()) == ["t1", "t2"]
    # a save after it still lands at the head
    await store.checkpoints.save("t1", kit.checkpoint("t1", "c3", 3), b"s3", expected_head="c2")

    lines, corrupt = await _export(store)
    assert sorted(line["metadata"]["id"] for line in lines["checkpoint"]) == ["c0", "c2", "c3", "d0"]
    assert len(corrupt) == 1


# --------------------------------------------------------------------------- outputs


@pytest.mark.relaystore_requires(Capability.OUTPUTS)
async def test_corrupt_output_is_contained(
    store: Store, factory: object, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    refs = [await store.outputs.append("t1", 1, "writer", kit.artifact_event()) for _ in range(4)]
    await kit.corrupt_or_skip(factory, store, "output", (refs[1],), how=how)

    with pytest.raises(CorruptRecord):
        await store.outputs.get(refs[1])
    assert (await store.outputs.get(refs[2])).id == refs[2]
    good = [refs[0], *refs[2:]]
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        assert [r.id for r in await store.outputs.list()] == good
        assert [r.id for r in await _every_page(store.outputs.list)] == good
        assert [r.id for r in await store.outputs.list_for_attempt("t1", 1)] == good
    assert _warned(caplog)
    assert (await store.outputs.get_latest_by_name("writer")).id == refs[3]
    later = await store.outputs.append("t1", 1, "writer", kit.artifact_event())

    lines, corrupt = await _export(store)
    assert [line["record"]["id"] for line in lines["output"]] == [*good, later]
    assert len(corrupt) == 1


# --------------------------------------------------------------------------- runs


@pytest.mark.relaystore_requires(Capability.ADAPTIVE)
async def test_corrupt_run_is_contained(
    store: Store, factory: object, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    runs = [kit.run_record("a") for _ in range(4)]
    for run in runs:
        await store.adaptive.store_run(run)
    await kit.corrupt_or_skip(factory, store, "run", ("a", runs[1].id), how=how)

    good = [r.id for i, r in enumerate(runs) if i != 1]
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        assert [r.id for r in await store.adaptive.list_runs("a")] == good
        assert [r.id for r in await _every_page(store.adaptive.list_runs, agent_id="a")] == good
    assert _warned(caplog)
    assert await store.adaptive.count_runs("a") == 4  # stored runs, the skipped one included
    later = kit.run_record("a")
    await store.adaptive.store_run(later)
    assert [r.id for r in await store.adaptive.list_runs("a")] == [*good, later.id]

    lines, corrupt = await _export(store)
    assert [line["run"]["id"] for line in lines["run"]] == [*good, later.id]
    assert len(corrupt) == 1


# --------------------------------------------------------------------------- documents


@pytest.mark.relaystore_requires(Capability.ADAPTIVE)
async def test_corrupt_document_is_contained_and_never_built_on(
    store: Store, factory: object, how: str
) -> None:
    adaptive = store.adaptive
    for key in ("a", "bad", "z"):
        await adaptive.store_accumulators(key, kit.accumulator_state())
    await adaptive.store_plan(kit.execution_plan("bad"))
    await kit.corrupt_or_skip(factory, store, "document", ("accumulators", "bad"), how=how)

    with pytest.raises(CorruptRecord) as info:
        await adaptive.load_accumulators("bad")
    assert "bad" in info.value.key
    assert kit.counter_of(await adaptive.load_accumulators("a")) == 3
    assert (await adaptive.load_plan("bad")) is not None  # the same key in another kind
    assert list(await adaptive.list_keys("accumulators")) == ["a", "bad", "z"]
    calls: list[Any] = []

    def bump(state: Any) -> Any:
        calls.append(state)
        return kit.incremented(state)

    with pytest.raises(CorruptRecord):
        await adaptive.update_accumulators("bad", bump)
    assert calls == []  # the function never saw a damaged or "repaired" value
    with pytest.raises(CorruptRecord):  # nothing was written over it
        await adaptive.load_accumulators("bad")
    with pytest.raises(CorruptRecord):
        await adaptive.load_versioned("accumulators", "bad")

    lines, corrupt = await _export(store)
    exported = sorted((line["kind"], line["key"]) for line in lines["document"])
    assert exported == [("accumulators", "a"), ("accumulators", "z"), ("plan", "bad")]
    assert len(corrupt) == 1 and "bad" in corrupt[0]


# --------------------------------------------------------------------------- items


@pytest.mark.relaystore_requires(Capability.ITEMS)
async def test_corrupt_item_is_contained(
    store: Store, factory: object, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        items = store.items
    except NotSupported as exc:
        pytest.skip(str(exc))
    for key in ("a", "bad", "z"):
        await items.put(("mem",), key, {"text": f"value {key}"})
    await kit.corrupt_or_skip(factory, store, "item", ("mem", "bad"), how=how)

    with pytest.raises(CorruptRecord):
        await items.get(("mem",), "bad")
    assert (await items.get(("mem",), "a")).value == {"text": "value a"}  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        found = await items.search(("mem",), limit=None, newest_first=False)
    assert [i.key for i in found] == ["a", "z"]
    assert _warned(caplog)
    filtered = await items.search(("mem",), conditions=[Condition(("text",), "ne", "x")], limit=None)
    assert sorted(i.key for i in filtered) == ["a", "z"]  # a filter pushed into SQL skips it too
    assert await items.count(("mem",)) == 3  # stored items, the skipped one included

    lines, corrupt = await _export(store)
    assert sorted(line["key"] for line in lines["item"]) == ["a", "z"]
    assert len(corrupt) == 1


# --------------------------------------------------------------------------- blobs


@pytest.mark.relaystore_requires(Capability.BLOBS)
async def test_corrupt_blob_metadata_is_contained(
    store: Store, factory: object, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    blobs = [await store.blobs.put(b"blob %d" % i, mime="text/plain") for i in range(3)]
    bad = blobs[1].sha256
    await kit.corrupt_or_skip(factory, store, "blob", (bad,), how=how)

    with pytest.raises(CorruptRecord):
        await store.blobs.stat(bad)
    assert (await store.blobs.stat(blobs[0].sha256)).size == 6
    good = sorted(b.sha256 for b in blobs if b.sha256 != bad)
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        assert [b.sha256 for b in await store.blobs.list()] == good
    assert _warned(caplog)

    lines, corrupt = await _export(store)
    assert sorted(line["sha256"] for line in lines["blob"]) == good
    assert len(corrupt) == 1
