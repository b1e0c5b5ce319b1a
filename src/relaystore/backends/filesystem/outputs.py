"""Output records of the file backend: ``outputs/records/`` and the marker indexes."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from relaystore.backends.filesystem.layout import FileRoot, read_or_skip
from relaystore.backends.filesystem.names import encode_name, seq_name
from relaystore.errors import Conflict, CorruptRecord
from relaystore.models.outputs import OutputRecord, OutputRef
from relaystore.stores import OutputFilter, OutputStore

EVENT_FILE_BYTES = 64 * 1024  # events larger than this (as JSON) get their own file

_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)
_MARKER = re.compile(r"^(\d{20})-(out-[0-9a-f]{10,64})$")


class FileOutputStore(OutputStore):
    """``outputs/records/<ref>.json`` plus empty ``<seq>-<ref>`` markers in one directory per index."""

    def __init__(self, root: FileRoot) -> None:
        self._root = root
        self._records = root.path / "outputs" / "records"
        self._index = root.path / "outputs" / "index"

    def _index_dirs(self, record: OutputRecord) -> list[Path]:
        task, attempt = encode_name(record.task_id), str(record.attempt)
        producer = encode_name(record.producer_agent)
        index = self._index
        dirs = [
            index / "all",
            index / "task" / task,
            index / "attempt" / task / attempt,
            index / "producer" / producer,
            index / "run" / task / attempt / producer,
        ]
        return dirs + [index / "children" / parent for parent in dict.fromkeys(record.parent_refs)]

    def _filter_dir(self, flt: OutputFilter) -> Path:
        """The narrowest index directory that holds every record ``flt`` can match."""
        index = self._index
        task = None if flt.task_id is None else encode_name(flt.task_id)
        producer = None if flt.producer_agent is None else encode_name(flt.producer_agent)
        if task is not None and flt.attempt is not None:
            attempt_dir = index / "attempt" / task / str(flt.attempt)
            return attempt_dir if producer is None else index / "run" / task / str(flt.attempt) / producer
        if task is not None:
            return index / "task" / task
        if producer is not None:
            return index / "producer" / producer
        return index / "all"

    async def _insert(self, record: OutputRecord) -> int:
        def insert() -> int:
            if (self._records / f"{record.id}.json").exists():
                raise Conflict(f"output {record.id} already exists")
            seq = self._root.next_seq()
            dirs = self._index_dirs(record)
            for directory in dirs:
                self._root.make_dirs(directory)
                self._root.create_marker(directory / seq_name(seq, record.id))
            for directory in dirs:
                self._root.sync_dir(directory)
            self._root.make_dirs(self._records)
            for name, data in _record_files(record.model_copy(update={"seq": seq})):
                self._root.write_file(self._records / name, data)  # the record itself is last
            return seq

        return await self._root.write(insert)

    def _read_record(self, ref: str) -> OutputRecord | None:
        path = self._records / f"{ref}.json"
        raw = self._root.read_bytes(path)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            if isinstance(doc, dict) and "event_file" in doc:
                doc.pop("event_file")
                event = self._root.read_bytes(self._records / f"{ref}.event.json")
                if event is None:
                    raise ValueError(f"{ref}.event.json is missing")
                doc["event"] = json.loads(event)
            return _RECORD.validate_python(doc)
        except (ValueError, ValidationError) as exc:
            raise CorruptRecord(str(path), str(exc).splitlines()[0]) from exc

    def _scan(
        self, directory: Path, after: int | None, newest_first: bool, skip_corrupt: bool
    ) -> Iterator[OutputRecord]:
        """Records of an index directory in store order; stale and missing markers skipped.
        A corrupt record is skipped with a warning, or raises :class:`CorruptRecord`."""
        markers = sorted(
            (int(m.group(1)), m.group(2)) for n in self._root.names(directory) if (m := _MARKER.match(n))
        )
        if newest_first:
            markers.reverse()
        for seq, ref in markers:
            if after is not None and seq <= after:
                continue
            record = read_or_skip(self._read_record, ref) if skip_corrupt else self._read_record(ref)
            if record is not None and record.seq == seq:  # else an interrupted or retried insert
                yield record

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        def get_many() -> list[OutputRecord]:
            found = (self._read_record(ref) for ref in dict.fromkeys(refs))
            return [record for record in found if record is not None]

        return await self._root.read(get_many)

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        directory = self._filter_dir(flt)

        def latest() -> OutputRecord | None:
            records = self._scan(directory, None, True, skip_corrupt=False)
            return next((r for r in records if flt.matches(r)), None)

        return await self._root.read(latest)

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        directory = self._filter_dir(flt)

        def list_records() -> list[OutputRecord]:
            records = self._scan(directory, after, False, skip_corrupt=True)
            return list(itertools.islice((r for r in records if flt.matches(r)), limit))

        return await self._root.read(list_records)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        def children() -> list[OutputRecord]:
            found: dict[str, OutputRecord] = {}
            for ref in refs:
                for record in self._scan(self._index / "children" / ref, None, False, skip_corrupt=True):
                    found[record.id] = record
            return list(found.values())

        return await self._root.read(children)


def _record_files(record: OutputRecord) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` to write for a record: a large event first, then the record."""
    doc = record.model_dump(mode="json")
    event = json.dumps(doc["event"], ensure_ascii=False).encode()
    if len(event) <= EVENT_FILE_BYTES:
        return [(f"{record.id}.json", json.dumps(doc, ensure_ascii=False).encode())]
    event_name = f"{record.id}.event.json"
    doc = {**{k: v for k, v in doc.items() if k != "event"}, "event_file": event_name}
    return [(event_name, event), (f"{record.id}.json", json.dumps(doc, ensure_ascii=False).encode())]
