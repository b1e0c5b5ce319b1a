"""The per-thread checkpoint index of the file backend: ``checkpoints/<thread>/.index``.

Why: without it every read of a thread (its head, its latest checkpoint, a page of ``list``)
listed and sorted the thread's directory, so reads grew with the thread (14× at 2,000
checkpoints). The index is one fixed-width line per checkpoint, in seq order::

    <seq: 20 digits> <CRC-32 of "<seq> <stem>": 8 hex> <stem, space-padded to 120 bytes>\\n

151 bytes a line, so a read seeks straight to the lines it needs (the last few, or a cursor found
by binary search) and costs the same at 10,000 checkpoints as at 100.

Crash rules. The checkpoint's files stay the data and its metadata rename the commit point; the
index is derived from them and is never trusted blindly:

- **Write-ahead.** A save appends its line, under the store lock, *before* it writes the
  checkpoint's files, so a committed checkpoint always has its line. A line whose metadata file
  does not exist (a save killed before its commit, or a delete not yet folded in) is skipped by
  every reader, like a file deleted since a listing, and never matches a duplicate check.
- **Torn tail.** A partial last line (a writer killed mid-append, or one still appending) is
  ignored by readers and cut off by the next writer before it appends.
- **Failed check.** A line with a bad format or CRC, or seqs out of order, raises
  :class:`BadIndex` when a read reaches it: that read answers from the directory listing instead,
  and the index is rebuilt from the directory under the lock (by the reader too, if it can take
  the lock; else by the next writer that reaches the line). A missing index is read as the
  directory, and rebuilt by the next writer of the thread.
- **Open.** ``open_store`` compares every thread's index with its directory, byte for byte, under
  the lock, and rewrites any that differs (missing, stale, torn, dangling lines). Appends are not
  fsynced: only an OS crash can lose one, and every process opens the store again after that.
- **Rewrites** (delete, prune, repairs) build the whole file from the directory and replace it
  atomically (temp file, rename).
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from relaystore.backends.filesystem.names import PLAIN_NAME_BYTES, seq_name

INDEX_FILE = ".index"  # a dot name: never listed, never an encoded id
STEM_WIDTH = PLAIN_NAME_BYTES  # the longest stem encode_name makes (hashed ones are shorter)
LINE = 20 + 1 + 8 + 1 + STEM_WIDTH + 1
_STEM_AT = 30
_CHUNK = 32  # lines read by one pread while walking


class BadIndex(Exception):
    """A line of a thread's index failed its check; the directory must answer instead."""


def line(seq: int, stem: str) -> bytes:
    """The index line of checkpoint ``<seq>-<stem>``."""
    head = f"{seq:020d} {stem}".encode()
    return f"{seq:020d} {zlib.crc32(head):08x} {stem:<{STEM_WIDTH}}\n".encode()


def lines(files: list[tuple[int, str]]) -> bytes:
    """The whole index of a thread whose metadata files are ``(seq, name)``, in seq order.

    A name :func:`encode_name` cannot have made (too long, a space, not ASCII: a foreign file)
    gets no line, so it cannot break the fixed width.
    """
    stems = ((seq, stem_of_json(name)) for seq, name in files)
    return b"".join(line(seq, stem) for seq, stem in stems if _fits(stem))


def _fits(stem: str) -> bool:
    return 0 < len(stem) <= STEM_WIDTH and stem.isascii() and stem.isprintable() and " " not in stem


def stem_of_json(name: str) -> str:
    """``<stem>`` of ``<seq>-<stem>.json``."""
    return name[21 : -len(".json")]


def json_name(seq: int, stem: str) -> str:
    return f"{seq_name(seq, stem)}.json"


def _parse(raw: bytes, where: Path, number: int) -> tuple[int, str]:
    """``(seq, stem)`` of one line; :class:`BadIndex` unless it is well formed and its CRC holds."""
    stem = raw[_STEM_AT:-1].rstrip(b" ")
    seq = raw[:20]
    ok = len(raw) == LINE and raw[-1:] == b"\n" and raw[20:21] == raw[29:30] == b" "
    if not (ok and seq.isdigit() and stem and f"{zlib.crc32(seq + b' ' + stem):08x}".encode() == raw[21:29]):
        raise BadIndex(f"{where}: line {number + 1} fails its check")
    try:
        return int(seq), stem.decode("ascii")
    except UnicodeDecodeError:
        raise BadIndex(f"{where}: line {number + 1} is not ASCII") from None


class Entries:
    """The checkpoints of one thread as ``(seq, metadata file name)``, from the directory."""

    def __init__(self, files: list[tuple[int, str]]) -> None:
        self._files = files

    def walk(self, newest_first: bool, after: int | None) -> Iterator[tuple[int, str]]:
        """Checkpoints in seq order (or newest first), strictly after the cursor ``after``."""
        files = reversed(self._files) if newest_first else iter(self._files)
        for seq, name in files:
            if after is None or (seq < after if newest_first else seq > after):
                yield seq, name

    def named(self, stem: str) -> list[str]:
        """Metadata file names of checkpoint ``stem`` (more than one only in a damaged thread)."""
        return [name for _, name in self._files if stem_of_json(name) == stem]


class IndexReader(Entries):
    """The same questions answered from the thread's index file, reading only the lines needed.

    Names it yields may be of checkpoints not (or no longer) committed: callers check that the
    file exists, as they do after a listing. Raises :class:`BadIndex` for a line that fails its
    check. A context manager (it holds the file open).
    """

    def __init__(self, path: Path) -> None:
        super().__init__([])
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self.count = os.fstat(self._fd).st_size // LINE  # a partial last line is a write in flight

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        os.close(self._fd)

    def _read(self, start: int, stop: int) -> list[tuple[int, str]]:
        raw = os.pread(self._fd, (stop - start) * LINE, start * LINE)
        if len(raw) != (stop - start) * LINE:  # rewritten meanwhile? this fd still has the old file
            raise BadIndex(f"{self.path}: shorter than it was")
        return [_parse(raw[i * LINE : (i + 1) * LINE], self.path, start + i) for i in range(stop - start)]

    def _first_above(self, seq: int) -> int:
        """The position of the first line whose seq is above ``seq`` (binary search)."""
        low, high = 0, self.count
        while low < high:
            mid = (low + high) // 2
            if self._read(mid, mid + 1)[0][0] > seq:
                high = mid
            else:
                low = mid + 1
        return low

    def walk(self, newest_first: bool, after: int | None) -> Iterator[tuple[int, str]]:
        last: int | None = None
        if newest_first:
            stop = self.count if after is None else self._first_above(after - 1)
            chunks = ((max(0, end - _CHUNK), end) for end in range(stop, 0, -_CHUNK))
        else:
            start = 0 if after is None else self._first_above(after)
            chunks = ((begin, min(begin + _CHUNK, self.count)) for begin in range(start, self.count, _CHUNK))
        for begin, end in chunks:
            found = self._read(begin, end)
            for seq, stem in reversed(found) if newest_first else found:
                if last is not None and (seq >= last if newest_first else seq <= last):
                    raise BadIndex(f"{self.path}: seq {seq} is out of order")
                last = seq
                yield seq, json_name(seq, stem)

    def named(self, stem: str) -> list[str]:
        raw = os.pread(self._fd, self.count * LINE, 0)
        needle = b" " + f"{stem:<{STEM_WIDTH}}\n".encode()
        names = []
        at = raw.find(needle)
        while at >= 0:
            if (at + 1 - _STEM_AT) % LINE == 0:  # a stem field, not a chance match elsewhere
                number = (at + 1 - _STEM_AT) // LINE
                seq, found = _parse(raw[number * LINE : (number + 1) * LINE], self.path, number)
                names.append(json_name(seq, found))
            at = raw.find(needle, at + 1)
        return names


def open_reader(thread_dir: Path) -> IndexReader | None:
    """The thread's index, or None when it has none."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return IndexReader(thread_dir / INDEX_FILE)
    return None


def cut_torn_tail(thread_dir: Path) -> bool:
    """Cut a partial last line (a writer killed mid-append); the caller holds the lock."""
    path = thread_dir / INDEX_FILE
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size % LINE == 0:
        return False
    os.truncate(path, size - size % LINE)
    return True


def append(thread_dir: Path, seq: int, stem: str) -> None:
    """Add checkpoint ``<seq>-<stem>``'s line (caller holds the lock and cut any torn tail).

    Not fsynced: open_store rebuilds a line that an OS crash lost (see the module's rules).
    """
    with open(thread_dir / INDEX_FILE, "ab") as file:
        file.write(line(seq, stem))
