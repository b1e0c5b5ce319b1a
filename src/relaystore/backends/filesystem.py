"""File backend: one directory of plain files per store, no server. ``file:///absolute/dir``.

Layout (every name under the root is lowercase ASCII, see :func:`encode_name`)::

    <root>/
      relaystore.json                         manifest {"format": "relaystore-file", "version": 1}
      seq                                     the last store-order number handed out (decimal)
      .lock                                   cross-process write lock (filelock)
      checkpoints/<thread>/<seq>-<id>.json    checkpoint metadata (real ids inside)
      checkpoints/<thread>/<seq>-<id>.state   checkpoint state, the raw bytes
      checkpoints/<thread>/writes/<id>/<n>.json   pending writes of that checkpoint id, one batch per call
      checkpoints/<thread>/attachments/<key>  one attachment of the thread, the raw bytes
      outputs/records/<ref>.json              one output record, ``seq`` included
      outputs/records/<ref>.event.json        its event, when the event is over 64 KiB of JSON
      outputs/index/all/<seq>-<ref>           empty marker files: the store-order indexes
      outputs/index/task/<task>/<seq>-<ref>
      outputs/index/attempt/<task>/<attempt>/<seq>-<ref>
      outputs/index/producer/<agent>/<seq>-<ref>
      outputs/index/run/<task>/<attempt>/<agent>/<seq>-<ref>
      outputs/index/children/<parent ref>/<seq>-<ref>
      adaptive/runs/<agent>/<seq>-<run id>.json   one run, NeMo Relay's JSON
      adaptive/<kind>/<key>.json                  plan, trie, accumulators, acg_observations, acg_stability
      blobs/<2 hex>/<sha256>                  one blob's bytes, named by their SHA-256 (see FileBlobStore)
      blobs/<2 hex>/<sha256>.mime             its mime type, when it has one
      blobs/.upload-<id>                      an upload in progress (fsynced and renamed on commit)
      .../<hashed name>.key                   the real id behind a hashed name (see below)

``<seq>`` is zero-padded to 20 digits, so sorted file names are store order and the latest
record of a thread, agent or index is the last name of one directory listing.

Design:

- **Atomic writes.** Every file is written as ``.tmp-<random>`` in its own directory, flushed,
  fsynced, renamed over its final name with ``os.replace`` and the directory is fsynced. Readers
  never see a partial file; names starting with ``.`` are never listed, and leftover temp files
  are removed when a store is opened. A multi-file write commits with its last rename: the state
  before the checkpoint metadata, the index markers before the output record. Readers skip
  markers whose record is missing or carries another ``seq``.
- **Locking.** All writes of all processes are serialized by one store-wide ``filelock`` on
  ``.lock`` (plus a thread lock inside the process); waiting longer than ``timeout`` raises
  :class:`BackendUnavailable`. Readers take no lock: renames are atomic.
- **Ordering.** ``seq`` comes from the ``seq`` counter file, advanced and fsynced under the lock
  before the record is written: strictly increasing, shared by every kind, never reused.
- **Names.** Ids are arbitrary strings, so they are encoded (:func:`encode_name`): ``[a-z0-9_.-]``
  stay, an upper-case letter becomes ``^`` plus the letter, anything else becomes ``%xx`` per UTF-8
  byte, and a leading or trailing ``.`` is escaped. Names stay readable, never contain ``/``,
  ``\\`` or start with ``.``, and never differ only by case. An encoding longer than 120 bytes
  becomes a readable prefix, ``~`` and the SHA-256 of the id; the id itself is then kept in the
  record and, for directories and documents, in a ``<name>.key`` file next to it.
- **Blobs.** Checkpoint state is its own file, never base64 in JSON; a large output event is its
  own JSON file next to the record. Attachments are raw files too; pending writes are small
  batches of PendingWrite JSON (base64 values), so one ``put_writes`` is one atomic rename.
- **Errors.** ``OSError`` never escapes: I/O failures become :class:`BackendUnavailable`, an
  undecodable file :class:`CorruptRecord` naming its path.
- Blocking file work runs in worker threads (``asyncio.to_thread``); the event loop never blocks.

URL: ``file:///absolute/dir`` (``file://localhost/absolute/dir`` and ``file:////absolute/dir``
are accepted too). Relative paths are refused: a store shared by several processes must not
depend on each one's working directory. The directory is created if its parent exists; an
existing non-empty directory without a manifest is refused. Options (query or keywords):
``timeout`` (lock wait, seconds, default 30) and ``fsync`` (``true`` default; ``false`` skips
fsync for throwaway stores: a crash of the OS may then lose acknowledged writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import filelock
from pydantic import TypeAdapter, ValidationError

from relaystore.backends._options import flag, merge_options, number
from relaystore.backends._policy import STALE_UPLOAD_SECONDS
from relaystore.errors import BackendUnavailable, Conflict, CorruptRecord, InvalidInput
from relaystore.models.checkpoints import Checkpoint, CheckpointMetadata, PendingWrite
from relaystore.models.outputs import BlobContent, OutputRecord, OutputRef
from relaystore.stores import AdaptiveStore, CheckpointStore, DocKind, OutputFilter, OutputStore, Store
from relaystore.stores._common import ANY, parse_json
from relaystore.stores.adaptive import AGENT_DOC_KINDS
from relaystore.stores.blobs import CHUNK_SIZE, BlobStore
from relaystore.stores.checkpoints import SeqRow, duplicate_conflict, head_conflict

T = TypeVar("T")
A = TypeVar("A")
log = logging.getLogger("relaystore")

FORMAT = "relaystore-file"
FORMAT_VERSION = 2  # 2: pending writes keyed by checkpoint id alone (they may precede it)
MANIFEST = "relaystore.json"
COUNTER = "seq"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
KEY_SUFFIX = ".key"
SEQ_WIDTH = 20
EVENT_FILE_BYTES = 64 * 1024  # events larger than this (as JSON) get their own file
PLAIN_NAME_BYTES = 120  # longer encodings are hashed; 20 + 1 + 113 + 6 stays far below NAME_MAX
HASHED_PREFIX_BYTES = 48
LOCK_POLL_SECONDS = 0.002
CHECKPOINTS_DIR = "checkpoints"
WRITES_DIR = "writes"  # inside a thread directory; never a seq name, so never a checkpoint
ATTACHMENTS_DIR = "attachments"
COMPACT_BATCHES = 32  # a checkpoint's pending writes are merged into one batch file past this

_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)
_WRITES: TypeAdapter[list[PendingWrite]] = TypeAdapter(list[PendingWrite])
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_SEQ_JSON = re.compile(r"^(\d{20})-(.+)\.json$")
_MARKER = re.compile(r"^(\d{20})-(out-[0-9a-f]{10,64})$")
_SEQ_PREFIX = re.compile(r"^(\d{20})-")
_BATCH = re.compile(r"^(\d{20})\.json$")


# --------------------------------------------------------------------------- names


def encode_name(key: str) -> str:
    """A file name for ``key``: injective, lowercase ASCII, at most 113 bytes, never ``.``-led."""
    plain = "".join(_encode_char(char) for char in key)
    if plain.startswith("."):
        plain = "%2e" + plain[1:]
    if plain.endswith("."):  # Windows drops trailing dots
        plain = plain[:-1] + "%2e"
    if len(plain) <= PLAIN_NAME_BYTES:
        return plain
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{_cut(plain, HASHED_PREFIX_BYTES)}~{digest}"


def _encode_char(char: str) -> str:
    if char in _SAFE:
        return char
    if "A" <= char <= "Z":
        return "^" + char.lower()
    return "".join(f"%{byte:02x}" for byte in char.encode("utf-8"))


def _cut(encoded: str, size: int) -> str:
    """The longest prefix of ``encoded`` within ``size`` bytes that does not split an escape."""
    end = 0
    while end < len(encoded):
        step = {"%": 3, "^": 2}.get(encoded[end], 1)
        if end + step > size:
            break
        end += step
    return encoded[:end]


def decode_name(name: str) -> str | None:
    """The key that :func:`encode_name` turned into ``name``; None for hashed or foreign names."""
    if "~" in name:
        return None
    raw = bytearray()
    index = 0
    try:
        while index < len(name):
            char = name[index]
            if char == "%":
                raw.append(int(name[index + 1 : index + 3], 16))
                index += 3
            elif char == "^":
                raw += name[index + 1].upper().encode()
                index += 2
            else:
                raw += char.encode()
                index += 1
        key = raw.decode("utf-8")
    except (ValueError, IndexError):
        return None
    return key if key and encode_name(key) == name else None


def seq_name(seq: int, stem: str) -> str:
    return f"{seq:0{SEQ_WIDTH}d}-{stem}"


def _is_sidecar(name: str) -> bool:
    return "~" in name and name.endswith(KEY_SUFFIX)


# --------------------------------------------------------------------------- the directory


class FileRoot:
    """One store directory: atomic file writes, the write lock, the seq counter and listings.

    Methods without ``async`` block; run them through :meth:`read` or :meth:`write`.
    """

    def __init__(self, path: Path, *, timeout: float = 30.0, fsync: bool = True) -> None:
        self.path = path
        self.timeout = timeout
        self.fsync = fsync
        self.closed = False
        self._file_lock = filelock.FileLock(str(path / LOCK_FILE))
        self._thread_lock = threading.Lock()

    # ---------------------------------------------------------------- running work

    async def read(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread, without the lock."""
        self._check_open()
        return await asyncio.to_thread(self.guard, fn)

    async def write(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread while holding the store-wide write lock."""
        self._check_open()
        return await asyncio.to_thread(self.guard, lambda: self.locked(fn))

    def locked(self, fn: Callable[[], T]) -> T:
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise BackendUnavailable(f"{self.path} stayed locked for {self.timeout}s (in this process)")
        try:
            try:
                self._file_lock.acquire(timeout=self.timeout, poll_interval=LOCK_POLL_SECONDS)
            except filelock.Timeout as exc:
                raise BackendUnavailable(f"{self.path} stayed locked for {self.timeout}s") from exc
            try:
                return fn()
            finally:
                self._file_lock.release()
        finally:
            self._thread_lock.release()

    def guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except OSError as exc:  # the contract lets only relaystore errors escape
            raise BackendUnavailable(f"file store {self.path}: {exc}") from exc

    def _check_open(self) -> None:
        if self.closed:
            raise BackendUnavailable(f"file store {self.path} is closed")

    # ---------------------------------------------------------------- writing

    def write_file(self, path: Path, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically and durably (temp file, fsync, rename)."""
        temp = path.with_name(f"{TMP_PREFIX}{secrets.token_hex(8)}")
        try:
            with open(temp, "xb") as file:
                file.write(data)
                file.flush()
                if self.fsync:
                    os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        self.sync_dir(path.parent)

    def create_marker(self, path: Path) -> None:
        """Create an empty file; the caller syncs its directory. Empty files cannot be torn."""
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))

    def sync_dir(self, directory: Path) -> None:
        """Make renames and creations inside ``directory`` durable."""
        if not self.fsync:
            return
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and missing parents (all under the root), durably."""
        missing = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            self.sync_dir(path.parent)

    def remove(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def remove_dir(self, directory: Path) -> None:
        """Remove ``directory`` and everything left in it (subdirectories too), if it exists."""
        if not directory.is_dir():
            return
        for name in self.names(directory, hidden=True):
            path = directory / name
            if path.is_dir() and not path.is_symlink():
                self.remove_dir(path)
            else:
                self.remove(path)
        with contextlib.suppress(FileNotFoundError):
            directory.rmdir()
        self.sync_dir(directory.parent)

    # ---------------------------------------------------------------- reading

    def read_bytes(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def names(self, directory: Path, *, hidden: bool = False) -> list[str]:
        """Entry names in ``directory`` (none if it is missing); temp and lock files left out."""
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return names if hidden else [n for n in names if not n.startswith(".")]

    def seq_files(self, directory: Path) -> list[tuple[int, str]]:
        """``(seq, name)`` of the ``<seq>-<stem>.json`` files in ``directory``, in seq order."""
        found = [(int(m.group(1)), n) for n in self.names(directory) if (m := _SEQ_JSON.match(n))]
        return sorted(found)

    # ---------------------------------------------------------------- keyed entries

    def remember_key(self, parent: Path, name: str, key: str) -> None:
        """Keep the real key of a hashed ``name`` in ``<name>.key`` before ``name`` is created."""
        sidecar = parent / f"{name}{KEY_SUFFIX}"
        if "~" in name and not sidecar.exists():
            self.make_dirs(parent)
            self.write_file(sidecar, key.encode("utf-8"))

    def key_of(self, parent: Path, name: str) -> str | None:
        """The key an entry name stands for; None for a name this backend did not write."""
        if "~" not in name:
            return decode_name(name)
        raw = self.read_bytes(parent / f"{name}{KEY_SUFFIX}")
        try:
            key = None if raw is None else raw.decode("utf-8")
        except UnicodeDecodeError:
            key = None
        if key is None or encode_name(key) != name:
            log.warning("skipping %s: its key file is missing or does not match", parent / name)
            return None
        return key

    def forget_key(self, parent: Path, name: str) -> None:
        if "~" in name:
            self.remove(parent / f"{name}{KEY_SUFFIX}")

    # ---------------------------------------------------------------- seq counter

    def next_seq(self) -> int:
        """Advance the store-order counter (caller holds the lock) and return the new value."""
        path = self.path / COUNTER
        raw = self.read_bytes(path)
        try:
            last = int(raw) if raw is not None else None
        except ValueError:
            last = None
        if last is None:
            last = self._highest_seq_on_disk()
            log.warning("%s is missing or unreadable; continuing after seq %d found on disk", path, last)
        self.write_file(path, f"{last + 1}\n".encode())
        return last + 1

    def _highest_seq_on_disk(self) -> int:
        highest = 0
        for directory, subdirs, files in os.walk(self.path):
            if Path(directory).parent == self.path / CHECKPOINTS_DIR:
                # Names there come from task ids and keys, which may look like seq names.
                subdirs[:] = [d for d in subdirs if d not in (WRITES_DIR, ATTACHMENTS_DIR)]
            for name in files:
                if match := _SEQ_PREFIX.match(name):
                    highest = max(highest, int(match.group(1)))
        return highest

    def last_seq(self) -> int:
        raw = self.read_bytes(self.path / COUNTER)
        try:
            return int(raw) if raw is not None else 0
        except ValueError:
            return 0

    # ---------------------------------------------------------------- opening

    def open_sync(self) -> None:
        """Create or check the store directory, then remove temp files of interrupted writes."""
        if not self.path.parent.is_dir():
            raise BackendUnavailable(f"cannot open file store {self.path}: {self.path.parent} does not exist")
        with contextlib.suppress(FileExistsError):
            self.path.mkdir()
        if not self.path.is_dir():
            raise BackendUnavailable(f"cannot open file store {self.path}: not a directory")
        self.locked(self._prepare)

    def _prepare(self) -> None:
        manifest = self.path / MANIFEST
        raw = self.read_bytes(manifest)
        if raw is None:
            if self.names(self.path):
                raise InvalidInput(f"{self.path} is not empty and has no {MANIFEST}: not a relaystore store")
            self.write_file(manifest, json.dumps({"format": FORMAT, "version": FORMAT_VERSION}).encode())
            self.write_file(self.path / COUNTER, b"0\n")
        else:
            if self._check_manifest(manifest, raw) < 2:
                self._key_writes_by_id()
                self.write_file(manifest, json.dumps({"format": FORMAT, "version": FORMAT_VERSION}).encode())
        self._remove_temp_files()

    def _key_writes_by_id(self) -> None:
        """Format 1 named a checkpoint's writes directory ``<seq>-<id>``; 2 names it ``<id>``,
        so writes can arrive before their checkpoint. Renames are atomic; a rerun after a crash
        finds only the ones left. Where both exist the seq-named one is older: it goes."""
        for writes_dir in (self.path / CHECKPOINTS_DIR).glob(f"*/{WRITES_DIR}"):
            for name in self.names(writes_dir):
                if (match := _SEQ_PREFIX.match(name)) is None:
                    continue
                target = writes_dir / name[match.end() :]
                if target.exists():
                    self.remove_dir(writes_dir / name)
                else:
                    os.replace(writes_dir / name, target)
            self.sync_dir(writes_dir)

    def _check_manifest(self, path: Path, raw: bytes) -> int:
        try:
            manifest = json.loads(raw)
            version = manifest["version"]
            assert manifest["format"] == FORMAT and isinstance(version, int)
        except Exception as exc:  # any malformed manifest: refuse rather than guess
            raise CorruptRecord(str(path), f"not a {FORMAT} manifest") from exc
        if version > FORMAT_VERSION:
            raise BackendUnavailable(
                f"{self.path} has format version {version}; this relaystore knows up to "
                f"{FORMAT_VERSION}. Upgrade relaystore."
            )
        return version

    def _remove_temp_files(self) -> None:
        # Safe only under the lock: every writer holds it while its temp files exist.
        for directory, _, files in os.walk(self.path):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    self.remove(Path(directory) / name)


def _take(items: list[T], limit: int | None) -> list[T]:
    return items if limit is None else items[:limit]


def _sorted_after(keys: list[str], after: str | None) -> list[str]:
    return sorted(k for k in set(keys) if after is None or k > after)


def _read_text(root: FileRoot, path: Path) -> str | None:
    raw = root.read_bytes(path)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptRecord(str(path), f"not UTF-8: {exc}") from exc


# --------------------------------------------------------------------------- checkpoints


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
        return next((n for _, n in self._root.seq_files(thread_dir) if _stem(n) == stem), None)

    def _head_id(self, thread_dir: Path, name: str) -> str:
        """The checkpoint id behind a file name, even when its metadata is unreadable."""
        decoded = decode_name(_stem(name))
        if decoded is not None:
            return decoded
        try:
            return self._read_metadata(thread_dir / name).id
        except CorruptRecord:
            return _stem(name)

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
        if any(_stem(name) == stem for _, name in files):
            raise duplicate_conflict(thread_id, checkpoint_id)
        return stem

    def _check_head(self, thread_id: str, thread_dir: Path, expected: Any, head_file: str | None) -> None:
        # Compare encoded names: exact (the encoding is injective) and needs no decodable metadata.
        if expected is ANY:
            return
        actual = None if head_file is None else _stem(head_file)
        wanted = None if expected is None else encode_name(expected)
        if actual != wanted:
            head = None if head_file is None else self._head_id(thread_dir, head_file)
            raise head_conflict(thread_id, expected, head)

    def _read_metadata(self, path: Path) -> CheckpointMetadata:
        text = _read_text(self._root, path)
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
                    metadata = _skip_corrupt(self._read_metadata, thread_dir / name)
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
        self._root.remove_dir(thread_dir / WRITES_DIR / _stem(name))

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
                key = None if _is_sidecar(name) else self._root.key_of(self._dir, name)
                if key is not None and (prefix is None or key.startswith(prefix)):
                    keys[key] = name
            found: list[str] = []
            for key in _sorted_after(list(keys), after):
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
        saved = {_stem(name) for _, name in self._root.seq_files(thread_dir)}
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
        return [n for n in self._root.names(directory) if not _is_sidecar(n)]

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
            return _take(_sorted_after(keys, after), limit)

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


def _stem(name: str) -> str:
    """``<stem>`` of ``<seq>-<stem>.json``."""
    return name[SEQ_WIDTH + 1 : -len(".json")]


def _skip_corrupt(read: Callable[[A], T], arg: A) -> T | None:
    """``read(arg)``, or None with a warning if the record is corrupt (listings skip those)."""
    try:
        return read(arg)
    except CorruptRecord as exc:
        log.warning("skipping %s", exc)
        return None


# --------------------------------------------------------------------------- outputs


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
            record = _skip_corrupt(self._read_record, ref) if skip_corrupt else self._read_record(ref)
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


# --------------------------------------------------------------------------- adaptive


class FileAdaptiveStore(AdaptiveStore):
    """``adaptive/runs/<agent>/<seq>-<run>.json`` and ``adaptive/<kind>/<key>.json``."""

    def __init__(self, root: FileRoot) -> None:
        self._root = root
        self._runs = root.path / "adaptive" / "runs"
        self._docs = root.path / "adaptive"

    def _doc_path(self, kind: DocKind, key: str) -> Path:
        return self._docs / kind / f"{encode_name(key)}.json"

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        agent_dir = self._runs / encode_name(agent_id)

        def store_run() -> None:
            stem = encode_name(run_id)
            if any(_stem(name) == stem for _, name in self._root.seq_files(agent_dir)):
                raise Conflict(f"agent {agent_id!r} already has run {run_id}")
            self._root.remember_key(self._runs, agent_dir.name, agent_id)
            self._root.make_dirs(agent_dir)
            name = f"{seq_name(self._root.next_seq(), stem)}.json"
            self._root.write_file(agent_dir / name, text.encode())

        await self._root.write(store_run)

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        agent_dir = self._runs / encode_name(agent_id)

        def list_runs() -> list[tuple[int, str, str]]:
            rows: list[tuple[int, str, str]] = []
            for seq, name in self._root.seq_files(agent_dir):
                if after is not None and seq <= after:
                    continue
                if limit is not None and len(rows) >= limit:
                    break
                raw = self._root.read_bytes(agent_dir / name)
                if raw is not None:  # else deleted since the listing
                    rows.append((seq, str(agent_dir / name), raw.decode("utf-8", errors="replace")))
            return rows

        return await self._root.read(list_runs)

    async def _count_runs(self, agent_id: str) -> int:
        agent_dir = self._runs / encode_name(agent_id)
        return await self._root.read(lambda: len(self._root.seq_files(agent_dir)))

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        agent_dir = self._runs / encode_name(agent_id)

        def prune() -> int:
            files = self._root.seq_files(agent_dir)
            doomed = files[: max(0, len(files) - keep)]
            for _, name in doomed:
                self._root.remove(agent_dir / name)
            if doomed and len(doomed) == len(files):
                self._root.remove_dir(agent_dir)
                self._root.forget_key(self._runs, agent_dir.name)
            elif doomed:
                self._root.sync_dir(agent_dir)
            return len(doomed)

        return await self._root.write(prune)

    def _run_agents(self) -> list[str]:
        agents = []
        for name in self._root.names(self._runs):
            if _is_sidecar(name) or not self._root.seq_files(self._runs / name):
                continue
            key = self._root.key_of(self._runs, name)
            if key is not None:
                agents.append(key)
        return agents

    def _doc_keys(self, kind: DocKind) -> list[str]:
        directory = self._docs / kind
        stems = (n[: -len(".json")] for n in self._root.names(directory) if n.endswith(".json"))
        return [key for stem in stems if (key := self._root.key_of(directory, stem)) is not None]

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        def list_agents() -> list[str]:
            agents = self._run_agents()
            for kind in AGENT_DOC_KINDS:
                agents += self._doc_keys(kind)
            return _take(_sorted_after(agents, after), limit)

        return await self._root.read(list_agents)

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        path = self._doc_path(kind, key)
        return await self._root.read(lambda: _read_doc(self._root, path))

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        path = self._doc_path(kind, key)
        await self._root.write(lambda: self._write_doc(path, key, text))

    def _write_doc(self, path: Path, key: str, text: str) -> None:
        self._root.remember_key(path.parent, path.name[: -len(".json")], key)
        self._root.make_dirs(path.parent)
        self._root.write_file(path, text.encode())

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        path = self._doc_path(kind, key)

        def delete() -> bool:
            existed = self._root.remove(path)
            self._root.forget_key(path.parent, path.name[: -len(".json")])
            if existed:
                self._root.sync_dir(path.parent)
            return existed

        return await self._root.write(delete)

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        return await self._root.read(lambda: _take(_sorted_after(self._doc_keys(kind), after), limit))

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        path = self._doc_path(kind, key)

        def update() -> str | None:
            current = _read_doc(self._root, path)
            new = apply(current)
            if new is None:
                return current
            self._write_doc(path, key, new)
            return new

        return await self._root.write(update)


def _read_doc(root: FileRoot, path: Path) -> str | None:
    raw = root.read_bytes(path)
    # Undecodable bytes become U+FFFD, so the JSON check upstream reports the record as corrupt.
    return None if raw is None else raw.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- opening


def parse_url(url: str, options: dict[str, Any]) -> tuple[Path, float, bool]:
    """``(root directory, lock timeout seconds, fsync)`` from a ``file://`` URL and options."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput(
            f"{url!r}: write file:///absolute/dir (three slashes); relative paths are not supported"
        )
    path = "/" + unquote(parts.path).lstrip("/")
    if path == "/" or not parts.path.startswith("/"):
        raise InvalidInput(f"{url!r} names no directory; write file:///absolute/dir")
    query = merge_options(parts.query, options, {"timeout", "fsync"}, "file store")
    timeout = number(query, "timeout", float, 30.0, low=0, exclusive=True)
    return Path(os.path.normpath(path)), timeout, flag(query, "fsync", True)


async def open_store(url: str, **options: Any) -> Store:
    """Open (creating if needed) the file store at ``url`` (``file:///absolute/dir``).

    Options: ``timeout`` (seconds to wait for the write lock, default 30) and ``fsync``
    (default true). Raises :class:`InvalidInput` for a bad URL or a directory that is not a
    store, :class:`BackendUnavailable` if the directory cannot be created, written or locked.
    """
    from relaystore.backends.filesystem_items import FileItemStore  # it builds on this module

    path, timeout, fsync = parse_url(url, options)
    root = FileRoot(path, timeout=timeout, fsync=fsync)
    await asyncio.to_thread(root.guard, root.open_sync)
    blobs = FileBlobStore(root)
    await root.read(blobs.drop_stale_uploads)

    async def close() -> None:
        root.closed = True

    async def info() -> dict[str, Any]:
        last_seq = await root.read(root.last_seq)
        return {"path": str(path), "format_version": FORMAT_VERSION, "fsync": fsync, "last_seq": last_seq}

    return Store(
        url,
        "file",
        FileCheckpointStore(root),
        FileOutputStore(root),
        FileAdaptiveStore(root),
        blobs=blobs,
        items=FileItemStore(root),
        close=close,
        info=info,
        compress_below=sys.maxsize,  # files hold every byte as given
    )


# --------------------------------------------------------------------------- blobs

BLOBS_DIR = "blobs"
UPLOAD_PREFIX = ".upload-"  # not TMP_PREFIX: open() must not delete an upload another process runs
MIME_SUFFIX = ".mime"
_DIGEST_NAME = re.compile(r"^[0-9a-f]{64}$")


class FileBlobStore(BlobStore):
    """``blobs/<first 2 hex>/<sha256>``: one file per blob, its mime type in ``<sha256>.mime``.

    An upload appends its chunks to ``blobs/.upload-<id>`` without the store lock (uploads may be
    long); the commit takes the lock, fsyncs the staged file and renames it to its digest, or drops
    it when that digest is already stored. Uploads a crashed process left are removed a day later.
    """

    def __init__(self, root: FileRoot) -> None:
        self._root = root
        self._dir = root.path / BLOBS_DIR

    def _path(self, sha256: str) -> Path:
        return self._dir / sha256[:2] / sha256

    def _staged(self, upload_id: str) -> Path:
        return self._dir / f"{UPLOAD_PREFIX}{upload_id}"

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        def append() -> None:
            if index == 0:
                self._root.make_dirs(self._dir)
            with open(self._staged(upload_id), "xb" if index == 0 else "ab") as file:
                file.write(data)

        await self._root.read(append)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        staged = self._staged(upload_id)

        def commit() -> None:
            if chunks == 0:  # an empty blob staged nothing
                self._root.make_dirs(self._dir)
                open(staged, "xb").close()
            target = self._path(blob.sha256)
            if target.exists():
                self._root.remove(staged)
                return
            if staged.stat().st_size != blob.size:
                raise BackendUnavailable(f"{staged} lost data during the upload; nothing stored")
            self._root.make_dirs(target.parent)
            if blob.mime is not None:  # before the blob: a visible blob always has its mime
                self._root.write_file(target.with_name(target.name + MIME_SUFFIX), blob.mime.encode())
            if self._root.fsync:
                with open(staged, "rb+") as file:
                    os.fsync(file.fileno())
            os.replace(staged, target)
            self._root.sync_dir(target.parent)

        await self._root.write(commit)

    async def _abort(self, upload_id: str) -> None:
        await self._root.read(lambda: self._root.remove(self._staged(upload_id)))

    async def _stat(self, sha256: str) -> BlobContent | None:
        def stat() -> BlobContent | None:
            path = self._path(sha256)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return None
            mime = _read_text(self._root, path.with_name(path.name + MIME_SUFFIX))
            return BlobContent(sha256=sha256, size=size, mime=mime)

        return await self._root.read(stat)

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        def chunk() -> bytes | None:
            try:
                with open(self._path(sha256), "rb") as file:
                    file.seek(index * CHUNK_SIZE)
                    return file.read(CHUNK_SIZE)
            except FileNotFoundError:
                return None

        return await self._root.read(chunk)

    async def _delete(self, sha256: str) -> bool:
        def delete() -> bool:
            path = self._path(sha256)
            existed = self._root.remove(path)
            self._root.remove(path.with_name(path.name + MIME_SUFFIX))
            return existed

        return await self._root.write(delete)

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        def digests() -> list[str]:
            found: list[str] = []
            for prefix in sorted(self._root.names(self._dir)):
                if after is not None and prefix < after[:2]:
                    continue
                names = self._root.names(self._dir / prefix)
                found += sorted(n for n in names if _DIGEST_NAME.match(n) and (after is None or n > after))
                if limit is not None and len(found) >= limit:
                    break
            return _take(found, limit)

        blobs = [await self._stat(sha) for sha in await self._root.read(digests)]
        return [b for b in blobs if b is not None]

    def drop_stale_uploads(self) -> int:
        """Remove staged uploads untouched for a day (left by a crashed writer); blocking."""
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        dropped = 0
        for name in self._root.names(self._dir, hidden=True):
            path = self._dir / name
            with contextlib.suppress(FileNotFoundError):
                if name.startswith(UPLOAD_PREFIX) and path.stat().st_mtime < cutoff:
                    dropped += self._root.remove(path)
        return dropped
