"""``load_full`` / ``list_full`` as one SQL statement, for the sqlite and postgres backends.

A page of checkpoints, the attachments their ``refs`` name and their pending writes come back
as one result of three ``UNION ALL`` branches, told apart by the first column::

    (0, seq, checkpoint_id, metadata, state, NULL,    NULL, NULL)       a checkpoint
    (1, NULL, NULL,         key,      value, NULL,    NULL, NULL)       an attachment
    (2, idx,  checkpoint_id, task_id, value, channel, type, task_path)  a pending write

so LangGraph's ``get_tuple`` and each ``list`` page cost one round trip instead of 3N+1. An
attachment shared by several checkpoints of the page (an unchanged channel) comes back once.

Filters on ``attributes`` are pushed into SQL for scalar values under plain keys; every row is
then tested again in Python (:meth:`FullQuery.matches`), which also covers the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import TypeAdapter

from relaystore.models.checkpoints import CheckpointBundle, CheckpointMetadata, PendingWrite
from relaystore.stores._common import Skipped, log, parse_json
from relaystore.stores.checkpoints import FullQuery, sort_writes

_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_]{1,128}$")
CHECKPOINT, ATTACHMENT, WRITE = 0, 1, 2


def pushed_filter(query: FullQuery) -> list[tuple[str, Any]]:
    """The ``(key, value)`` filter pairs SQL can test exactly: str, int, float or bool values
    under keys that need no quoting in a JSON path."""
    return [
        (key, value)
        for key, value in query.filter.items()
        if _PLAIN_KEY.match(key) and isinstance(value, str | int | float) and value == value
    ]


def bundles(
    rows: Iterable[Sequence[Any]], query: FullQuery, where: str, *, strict: bool = False
) -> list[tuple[int, Any]]:
    """``(seq, CheckpointBundle or Skipped)`` in page order from the rows of one full read.

    A checkpoint whose metadata cannot be decoded is :class:`Skipped` (logged), or raises
    :class:`~relaystore.errors.CorruptRecord` when ``strict`` (a single ``load_full``). One that
    fails the Python filter test is skipped silently, keeping its position for the cursor.
    """
    checkpoints: list[tuple[int, str, Any, bytes]] = []
    attachments: dict[str, bytes] = {}
    writes: dict[str, list[PendingWrite]] = {}
    for kind, seq, checkpoint_id, text, value, channel, type_, task_path in rows:
        if kind == CHECKPOINT:
            checkpoints.append((seq, checkpoint_id, text, bytes(value)))
        elif kind == ATTACHMENT:
            attachments[text] = bytes(value)
        else:
            write = PendingWrite.model_construct(  # columns of our own rows: already the right types
                task_id=text, idx=seq, channel=channel, type=type_, task_path=task_path, value=bytes(value)
            )
            writes.setdefault(checkpoint_id, []).append(write)
    checkpoints.sort(key=lambda row: row[0], reverse=query.newest_first)
    return [_bundle(row, attachments, writes, query, where, strict) for row in checkpoints]


def _bundle(
    row: tuple[int, str, Any, bytes],
    attachments: dict[str, bytes],
    writes: dict[str, list[PendingWrite]],
    query: FullQuery,
    where: str,
    strict: bool,
) -> tuple[int, Any]:
    seq, checkpoint_id, text, state = row
    key = f"{where} row seq={seq}"
    try:
        metadata = parse_json(_METADATA, text if isinstance(text, str | bytes) else str(text), key)
    except Exception as exc:
        if strict:
            raise
        log.warning("skipping %s", exc)
        return seq, Skipped(seq, key)
    if not query.matches(metadata):
        return seq, Skipped(seq, key)
    found = {ref: attachments[ref] for ref in metadata.refs if ref in attachments} if query.values else {}
    return seq, CheckpointBundle(metadata, state, found, sort_writes(writes.get(checkpoint_id, ())))


SINGLE = FullQuery(1, None, True, None, {}, True)
"""The query of one ``load_full``: the named checkpoint, or the newest."""
