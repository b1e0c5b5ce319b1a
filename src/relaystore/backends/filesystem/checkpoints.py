"""Checkpoints, pending writes and attachments of the file backend, under ``checkpoints/``."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from relaystore.backends.filesystem.layout import (
    ATTACHMENTS_DIR,
    CHECKPOINTS_DIR,
    WRITES_DIR,
    FileRoot,
    read_or_skip,
    read_text,
    sorted_after,
    take,
)
from relaystore.backends.filesystem.names import (
    SEQ_WIDTH,
    decode_name,
    encode_name,
    is_sidecar,
    seq_name,
    stem_of,
)
from relaystore.errors import BackendUnavailable, CorruptRecord
from relaystore.models.checkpoints import Checkpoint, CheckpointMetadata, PendingWrite
from relaystore.stores import CheckpointStore
from relaystore.stores._common import ANY, parse_json
from relaystore.stores.checkpoints import SeqRow, duplicate_conflict, head_conflict

COMPACT_BATCHES = 32  # a checkpoint's pending writes are merged into one batch file past this

_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_WRITES: TypeAdapter[list[PendingWrite]] = TypeAdapter(list[PendingWrite])
_BATCH = re.compile(r"^(\d{20})\.json$")


class FileCheckpointStore(CheckpointStore):
    """``checkpoints/<thread>/<seq>-<id>.json`` plus ``.state``; the thread head is the last name.

    Pending writes live in ``writes/<id>/``, keyed by the checkpoint id alone because they may
    arrive before the checkpoint; deleting a checkpoint deletes its writes, and ``prune`` removes
    writes whose checkpoint does not exist.
    Attachments live in ``attachments/`` and outlive the thread's checkpoints until
    ``delete_thread``; a thread directory holding only attachments is not a thread.
    """

    def __init__(self, root: FileRoot) -> None:
        self._root = root
        self._dir = root.path / CHECKPOINTS_DIR

    def _thread_dir(self, thread_id: str) -> Path:
        return self._dir / encode_name(thread_id)

    def _find(self, thread_dir: Path, checkpoint_id: str) -> str | None:
        """The metadata file name of ``checkpoint_id`` in the thread, found by one listing."""
        stem = encode_name(checkpoint_id)
        return next((n for _, n in self._root.seq_files(thread_dir) if stem_of(n) == stem), None)

    def _head_id(self, thread_dir: Path, name: str) -> str:
        """The checkpoint id behind a file name, even when its metadata is unreadable."""
        decoded = decode_name(stem_of(name))
        if decoded is not None:
            return decoded
        try:
            return self._read_metadata(thread_dir / name).id
        except CorruptRecord:
            return stem_of(name)

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> None:
        """Under the store lock: check, write the attachments, then the checkpoint.

        The checks come before any write, so a :class:`Conflict` writes nothing. The metadata
        rename is the commit point: a crash before it may leave attachments no checkpoint names
        (overwritten by a retry, removed by their owner's cleanup), never a checkpoint without them.
        """
        doc = metadata.json_text().encode()
        thread_dir = self._thread_dir(thread_id)

        def save() -> None:
            stem = self._check_save(thread_id, thread_dir, metadata.id, expected_head)
            self._root.remember_key(self._dir, thread_dir.name, thread_id)
            self._root.make_dirs(thread_dir)
            if attachments:
                self._write_attachments(thread_dir, attachments)
            base = seq_name(self._root.next_seq(), stem)
            self._root.write_file(thread_dir / f"{base}.state", state)
            self._root.write_file(thread_dir / f"{base}.json", doc)  # the commit point

        await self._root.write(save)

    def _check_save(self, thread_id: str, thread_dir: Path, checkpoint_id: str, expected: Any) -> str:
        """Raise :class:`Conflict` for a stale head or a duplicate id (caller holds the lock);
        return the checkpoint's encoded name stem."""
        files = self._root.seq_files(thread_dir)
        self._check_head(thread_id, thread_dir, expected, files[-1][1] if files else None)
        stem = encode_name(checkpoint_id)
        if any(stem_of(name) == stem for _, name in files):
            raise duplicate_conflict(thread_id, checkpoint_id)
        return stem

    def _check_head(self, thread_id: str, thread_dir: Path, expected: Any, head_file: str | None) -> None:
        # Compare encoded names: exact (the encoding is injective) and needs no decodable metadata.
        if expected is ANY:
            return
        actual = None if head_file is None else stem_of(head_file)
        wanted = None if expected is None else encode_name(expected)
        if actual != wanted:
            head = None if head_file is None else self._head_id(thread_dir, head_file)
            raise head_conflict(thread_id, expected, head)

    def _read_metadata(self, path: Path) -> CheckpointMetadata:
        text = read_text(self._root, path)
        if text is None:
            raise FileNotFoundError(path)
        return parse_json(_METADATA, text, str(path))

    def _read_checkpoint(self, path: Path) -> Checkpoint:
        metadata = self._read_metadata(path)
        state_path = path.with_suffix(".state")
        state = self._root.read_bytes(state_path)
        if state is None:
            raise CorruptRecord(str(state_path), "the state file is missing")
        if len(state) != metadata.state_size:
            raise CorruptRecord(str(state_path), f"{len(state)} bytes, expected {metadata.state_size}")
        return Checkpoint(metadata, state)

    async def _head(self, thread_id: str) -> str | None:
        thread_dir = self._thread_dir(thread_id)

        def head() -> str | None:
            files = self._root.seq_files(thread_dir)
            return self._head_id(thread_dir, files[-1][1]) if files else None

        return await self._root.read(head)

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        thread_dir = self._thread_dir(thread_id)

        def load() -> Checkpoint | None:
            name = self._find(thread_dir, checkpoint_id)
            if name is None:
                return None
            with contextlib.suppress(FileNotFoundError):  # deleted since the listing
                return self._read_checkpoint(thread_dir / name)
            return None

        return await self._root.read(load)

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        thread_dir = self._thread_dir(thread_id)

        def load_latest() -> Checkpoint | None:
            for _, name in reversed(self._root.seq_files(thread_dir)):
                with contextlib.suppress(FileNotFoundError):  # deleted since the listing
                    return self._read_checkpoint(thread_dir / name)
            return None

        return await self._root.read(load_latest)

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        thread_dir = self._thread_dir(thread_id)

        def list_rows() -> list[SeqRow]:
            files = self._root.seq_files(thread_dir)
            if newest_first:
                files.reverse()
            rows: list[SeqRow] = []
            for seq, name in files:
                if after is not None and (seq >= after if newest_first else seq <= after):
                    continue
                if limit is not None and len(rows) >= limit:
                    break
                with contextlib.suppress(FileNotFoundError):
                    metadata = read_or_skip(self._read_metadata, thread_dir / name)
                    if metadata is not None:
                        rows.append((seq, metadata))
            return rows

        return await self._root.read(list_rows)

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        thread_dir = self._thread_dir(thread_id)

        def delete() -> bool:
            name = self._find(thread_dir, checkpoint_id)
            if name is None:
                return False
            self._remove_checkpoint(thread_dir, name)
            self._drop_if_empty(thread_dir)
            return True

        return await self._root.write(delete)

    def _remove_checkpoint(self, thread_dir: Path, name: str) -> None:
        """Remove one checkpoint and its pending writes (caller holds the lock)."""
        self._root.remove(thread_dir / name)  # metadata first: the checkpoint is gone at once
        self._root.remove(thread_dir / f"{name[: -len('.json')]}.state")
        # A crash before this line leaves orphan writes: prune and delete_orphan_writes take them.
        self._root.remove_dir(thread_dir / WRITES_DIR / stem_of(name))

    def _drop_if_empty(self, thread_dir: Path) -> None:
        """Remove the thread directory once it holds no checkpoint and no attachment."""
        if self._root.seq_files(thread_dir):
            self._root.sync_dir(thread_dir)
            return
        self._root.remove_dir(thread_dir / WRITES_DIR)  # only orphans of interrupted deletes are left
        if self._attachment_names(thread_dir / ATTACHMENTS_DIR):
            self._root.sync_dir(thread_dir)  # attachments stay until delete_thread
            return
        self._root.remove_dir(thread_dir)
        self._root.forget_key(self._dir, thread_dir.name)

    async def _delete_thread(self, thread_id: str) -> int:
        thread_dir = self._thread_dir(thread_id)

        def delete_thread() -> int:
            files = self._root.seq_files(thread_dir)
            for _, name in files:
                self._remove_checkpoint(thread_dir, name)
            # Checkpoints go first: an interrupted call leaves unreferenced attachments, never
            # checkpoints whose attachments are missing; calling it again finishes the job.
            self._root.remove_dir(thread_dir)
            self._root.forget_key(self._dir, thread_dir.name)
            return len(files)

        return await self._root.write(delete_thread)

    async def _count(self, thread_id: str) -> int:
        thread_dir = self._thread_dir(thread_id)
        return await self._root.read(lambda: len(self._root.seq_files(thread_dir)))

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        def list_threads() -> list[str]:
            keys: dict[str, str] = {}
            for name in self._root.names(self._dir):
                key = None if is_sidecar(name) else self._root.key_of(self._dir, name)
                if key is not None and (prefix is None or key.startswith(prefix)):
                    keys[key] = name
            found: list[str] = []
            for key in sorted_after(list(keys), after):
                if limit is not None and len(found) >= limit:
                    break
                if self._root.seq_files(self._dir / keys[key]):  # skip threads being emptied
                    found.append(key)
            return found

        return await self._root.read(list_threads)

    async def _prune(self, thread_id: str, keep: int) -> int:
        thread_dir = self._thread_dir(thread_id)

        def prune() -> int:
            files = self._root.seq_files(thread_dir)
            doomed = files[: max(0, len(files) - keep)]
            for _, name in doomed:
                self._remove_checkpoint(thread_dir, name)
            self._drop_orphans(thread_dir)
            if doomed:
                self._drop_if_empty(thread_dir)
            return len(doomed)

        return await self._root.write(prune)

    def _drop_orphans(self, thread_dir: Path) -> int:
        """Remove writes directories whose checkpoint is not in the thread (caller holds the lock)."""
        saved = {stem_of(name) for _, name in self._root.seq_files(thread_dir)}
        orphans = [n for n in self._root.names(thread_dir / WRITES_DIR) if n not in saved]
        for name in orphans:
            self._root.remove_dir(thread_dir / WRITES_DIR / name)
        return len(orphans)

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        thread_dir = self._thread_dir(thread_id)
        return await self._root.write(lambda: self._drop_orphans(thread_dir))

    # ---------------------------------------------------------------- pending writes

    def _writes_dir(self, thread_id: str, checkpoint_id: str) -> Path:
        """The pending writes directory of a checkpoint id (saved or not)."""
        return self._thread_dir(thread_id) / WRITES_DIR / encode_name(checkpoint_id)

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        directory = self._writes_dir(thread_id, checkpoint_id)

        def put_writes() -> None:
            batches = _batch_files(self._root, directory)
            merged = self._merge_batches(directory, batches)
            if merged is None:  # batches vanish only under the lock, so something else did it
                raise BackendUnavailable(f"{directory} changed while the store was locked")
            added = _add_writes(merged, writes, replace)
            if added:
                self._append_batch(directory, batches, added, merged)

        await self._root.write(put_writes)

    def _merge_batches(
        self, directory: Path, batches: list[tuple[int, str]]
    ) -> dict[tuple[str, int], PendingWrite] | None:
        """The writes of ``batches``, later batches winning; None if one vanished meanwhile."""
        merged: dict[tuple[str, int], PendingWrite] = {}
        for _, name in batches:
            raw = self._root.read_bytes(directory / name)
            if raw is None:
                return None
            for write in parse_json(_WRITES, raw, str(directory / name)):
                merged[(write.task_id, write.idx)] = write
        return merged

    def _append_batch(
        self,
        directory: Path,
        batches: list[tuple[int, str]],
        added: list[PendingWrite],
        merged: dict[tuple[str, int], PendingWrite],
    ) -> None:
        """Write ``added`` as the next batch: one rename, so the call is atomic for readers and
        crashes. Past COMPACT_BATCHES the next batch holds everything and the older ones go
        (a crash in between is harmless: merging old batches under the full one changes nothing)."""
        number = batches[-1][0] + 1 if batches else 1
        compact = len(batches) + 1 >= COMPACT_BATCHES
        self._root.make_dirs(directory)
        batch = list(merged.values()) if compact else added
        self._root.write_file(directory / f"{number:0{SEQ_WIDTH}d}.json", _WRITES.dump_json(batch))
        if compact:
            for _, name in batches:
                self._root.remove(directory / name)
            self._root.sync_dir(directory)

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        directory = self._writes_dir(thread_id, checkpoint_id)

        def list_writes() -> list[PendingWrite]:
            while True:  # a batch vanishes only when a newer one holds it: list again
                merged = self._merge_batches(directory, _batch_files(self._root, directory))
                if merged is not None:
                    return list(merged.values())

        return await self._root.read(list_writes)

    # ---------------------------------------------------------------- attachments

    def _attachments_dir(self, thread_id: str) -> Path:
        return self._thread_dir(thread_id) / ATTACHMENTS_DIR

    def _attachment_names(self, directory: Path) -> list[str]:
        return [n for n in self._root.names(directory) if not is_sidecar(n)]

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        thread_dir = self._thread_dir(thread_id)

        def put_attachments() -> None:
            # The thread's key too: list_threads reads it for every directory, even attachment-only.
            self._root.remember_key(self._dir, thread_dir.name, thread_id)
            self._write_attachments(thread_dir, items)

        await self._root.write(put_attachments)

    def _write_attachments(self, thread_dir: Path, items: dict[str, bytes]) -> None:
        """One atomic file per key (caller holds the lock and has remembered the thread's key).

        A crash mid-call may keep some keys of the call: they are written before the checkpoint
        that needs them, so a retry simply overwrites them.
        """
        directory = thread_dir / ATTACHMENTS_DIR
        self._root.make_dirs(directory)
        for key, value in items.items():
            name = encode_name(key)
            self._root.remember_key(directory, name, key)
            self._root.write_file(directory / name, value)

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        directory = self._attachments_dir(thread_id)

        def get_attachments() -> dict[str, bytes]:
            found = {key: self._root.read_bytes(directory / encode_name(key)) for key in keys}
            return {key: value for key, value in found.items() if value is not None}

        return await self._root.read(get_attachments)

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        thread_dir = self._thread_dir(thread_id)
        directory = thread_dir / ATTACHMENTS_DIR

        def delete_attachments() -> int:
            removed = 0
            for key in keys:
                name = encode_name(key)
                removed += self._root.remove(directory / name)
                self._root.forget_key(directory, name)
            if removed:
                self._root.sync_dir(directory)
                if not self._attachment_names(directory):
                    self._drop_if_empty(thread_dir)
            return removed

        return await self._root.write(delete_attachments)

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        directory = self._attachments_dir(thread_id)

        def list_attachments() -> list[str]:
            names = self._attachment_names(directory)
            keys = [k for n in names if (k := self._root.key_of(directory, n)) is not None]
            return take(sorted_after(keys, after), limit)

        return await self._root.read(list_attachments)


def _batch_files(root: FileRoot, directory: Path) -> list[tuple[int, str]]:
    """``(number, name)`` of the pending write batches in ``directory``, oldest first."""
    return sorted((int(m.group(1)), n) for n in root.names(directory) if (m := _BATCH.match(n)))


def _add_writes(
    merged: dict[tuple[str, int], PendingWrite], writes: list[PendingWrite], replace: bool
) -> list[PendingWrite]:
    """The writes to store, as the contract's ignore-or-replace rule picks them; updates ``merged``."""
    added: dict[tuple[str, int], PendingWrite] = {}
    for write in writes:
        key = (write.task_id, write.idx)
        if replace or key not in merged:
            merged[key] = added[key] = write
    return list(added.values())
