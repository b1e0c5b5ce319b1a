from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.backends.filesystem import encode_name, parse_url
from relaystore.stores import Store

NAME = "file"
GARBAGE = b'{"not valid json'


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect(f"file:///{tmp_path}/store-{uuid.uuid4().hex}") as store:
        yield store


def _record_file(root: Path, what: str, key: tuple[str, ...]) -> Path:
    """The JSON file holding one record, found through the documented layout."""
    if what == "output":
        return root / "outputs" / "records" / f"{key[0]}.json"
    if what == "document":
        kind, doc_key = key
        return root / "adaptive" / kind / f"{encode_name(doc_key)}.json"
    folder = {"checkpoint": root / "checkpoints", "run": root / "adaptive" / "runs"}[what]
    owner, record_id = key
    matches = list((folder / encode_name(owner)).glob(f"*-{encode_name(record_id)}.json"))
    assert len(matches) == 1, f"no {what} {key} to corrupt"
    return matches[0]


async def corrupt(store: Store, what: str, key: tuple[str, ...]) -> None:
    """Overwrite the record's JSON file with garbage, as a foreign writer would."""
    path = _record_file(parse_url(store.url, {}).local_path, what, key)
    assert path.exists(), f"no {what} {key} to corrupt"
    path.write_bytes(GARBAGE)
