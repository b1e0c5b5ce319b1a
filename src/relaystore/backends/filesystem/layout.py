"""The store directory of the file backend: atomic writes, the write lock, the seq counter.

:class:`FileRoot` is shared by every face. Every file is written as ``.tmp-<random>`` in its own
directory, fsynced, renamed over its final name and the directory fsynced; all writes of all
processes are serialized by one store-wide ``filelock`` (plus a thread lock in the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import filelock

from relaystore.backends.filesystem.names import KEY_SUFFIX, SEQ_JSON, SEQ_PREFIX, decode_name, encode_name
from relaystore.errors import BackendUnavailable, CorruptRecord, InvalidInput

T = TypeVar("T")
A = TypeVar("A")
log = logging.getLogger("relaystore")

FORMAT = "relaystore-file"
FORMAT_VERSION = 2  # 2: pending writes keyed by checkpoint id alone (they may precede it)
MANIFEST = "relaystore.json"
COUNTER = "seq"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
LOCK_POLL_SECONDS = 0.002
CHECKPOINTS_DIR = "checkpoints"
WRITES_DIR = "writes"  # inside a thread directory; never a seq name, so never a checkpoint
ATTACHMENTS_DIR = "attachments"


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
        found = [(int(m.group(1)), n) for n in self.names(directory) if (m := SEQ_JSON.match(n))]
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
                if match := SEQ_PREFIX.match(name):
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
                if (match := SEQ_PREFIX.match(name)) is None:
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


def take(items: list[T], limit: int | None) -> list[T]:
    return items if limit is None else items[:limit]


def sorted_after(keys: list[str], after: str | None) -> list[str]:
    return sorted(k for k in set(keys) if after is None or k > after)


def read_text(root: FileRoot, path: Path) -> str | None:
    raw = root.read_bytes(path)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptRecord(str(path), f"not UTF-8: {exc}") from exc


def read_or_skip(read: Callable[[A], T], arg: A) -> T | None:
    """``read(arg)``, or None with a warning if the record is corrupt (listings skip those)."""
    try:
        return read(arg)
    except CorruptRecord as exc:
        log.warning("skipping %s", exc)
        return None
