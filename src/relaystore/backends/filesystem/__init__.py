"""File backend: one directory of plain files per store, no server. ``file:///absolute/dir``.

Layout (every name under the root is lowercase ASCII, see :func:`encode_name`)::

    <root>/
      relaystore.json                         manifest {"format": "relaystore-file", "version": 3}
      seq                                     the last store-order number handed out (20 digits, CRC)
      .lock                                   cross-process write lock (filelock)
      checkpoints/<thread>/<seq>-<id>.json    checkpoint metadata (real ids inside)
      checkpoints/<thread>/<seq>-<id>.state   checkpoint state, the raw bytes
      checkpoints/<thread>/.index             one fixed-width line per checkpoint (see :mod:`.index`)
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
record of an agent or output index is the last name of one directory listing. A thread's reads
go through its ``.index`` instead, so they do not grow with the thread.

Design:

- **Atomic writes.** Every file is written as ``.tmp-<random>`` in its own directory, flushed,
  fsynced, renamed over its final name with ``os.replace`` and the directory is fsynced. Readers
  never see a partial file; names starting with ``.`` are never listed, and leftover temp files
  are removed when a store is opened. A multi-file write commits with its last rename: the index
  line and the state before the checkpoint metadata, the index markers before the output record.
  Readers skip index lines and markers whose record is missing or carries another ``seq``.
- **Locking.** All writes of all processes are serialized by one store-wide ``filelock`` on
  ``.lock`` (plus a thread lock inside the process); waiting longer than ``timeout`` raises
  :class:`BackendUnavailable`. Readers take no lock: renames are atomic.
- **Ordering.** ``seq`` comes from the ``seq`` counter file, advanced (in place, CRC-checked)
  and fsynced under the lock before the record is written: strictly increasing, shared by every
  kind, never reused.
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

Modules: :mod:`.url` (options), :mod:`.names` (file names), :mod:`.layout` (the directory: atomic
writes, the lock, the seq counter), :mod:`.index` (the per-thread checkpoint index and its crash
rules), one per face: :mod:`.checkpoints`, :mod:`.outputs`, :mod:`.adaptive`, :mod:`.blobs`,
:mod:`.items`.
"""

from __future__ import annotations

import asyncio
import sys
from functools import partial
from typing import Any

from relaystore.backends.filesystem import counter
from relaystore.backends.filesystem.adaptive import FileAdaptiveStore
from relaystore.backends.filesystem.blobs import FileBlobStore
from relaystore.backends.filesystem.checkpoints import FileCheckpointStore
from relaystore.backends.filesystem.items import FileItemStore
from relaystore.backends.filesystem.layout import FORMAT_VERSION, FileRoot
from relaystore.backends.filesystem.names import PLAIN_NAME_BYTES, decode_name, encode_name, seq_name
from relaystore.backends.filesystem.outputs import EVENT_FILE_BYTES, FileOutputStore
from relaystore.backends.filesystem.url import FileOptions, parse_url
from relaystore.stores import CounterCheck, Store

__all__ = [
    "EVENT_FILE_BYTES",
    "FORMAT_VERSION",
    "PLAIN_NAME_BYTES",
    "FileAdaptiveStore",
    "FileBlobStore",
    "FileCheckpointStore",
    "FileItemStore",
    "FileOptions",
    "FileOutputStore",
    "FileRoot",
    "decode_name",
    "encode_name",
    "open_store",
    "parse_url",
    "seq_name",
]


async def open_store(url: str, **options: Any) -> Store:
    """Open (creating if needed) the file store at ``url`` (``file:///absolute/dir``).

    Options: ``timeout`` (seconds to wait for the write lock, default 30) and ``fsync``
    (default true). Raises :class:`InvalidInput` for a bad URL or a directory that is not a
    store, :class:`BackendUnavailable` if the directory cannot be created, written or locked.
    """
    parsed = parse_url(url, options)
    root = FileRoot(parsed.local_path, timeout=parsed.timeout, fsync=parsed.fsync)
    checkpoints = FileCheckpointStore(root)
    await asyncio.to_thread(root.guard, lambda: root.open_sync([checkpoints.check_indexes]))
    blobs = FileBlobStore(root)
    await root.read(blobs.drop_stale_uploads)

    async def close() -> None:
        root.closed = True

    async def info() -> dict[str, Any]:
        last_seq = await root.read(root.last_seq)
        return {
            "path": str(parsed.local_path),
            "format_version": FORMAT_VERSION,
            "fsync": parsed.fsync,
            "last_seq": last_seq,
        }

    async def counters(repair: bool) -> list[CounterCheck]:
        check = partial(counter.check, root, repair)
        return await (root.write(check) if repair else root.read(check))

    return Store(
        url,
        "file",
        checkpoints,
        FileOutputStore(root),
        FileAdaptiveStore(root),
        blobs=blobs,
        items=FileItemStore(root),
        close=close,
        info=info,
        counters=counters,
        compress_below=sys.maxsize,  # files hold every byte as given
    )
