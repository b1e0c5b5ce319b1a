from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import relaystore
from relaystore.backends.filesystem import encode_name, parse_url
from relaystore.stores import Store
from relaystore.testing.damage import WRONG_TYPE, damage

NAME = "file"


def unavailable() -> str | None:
    return None


@asynccontextmanager
async def fresh(tmp_path: Path) -> AsyncIterator[Store]:
    async with relaystore.connect(f"file:///{tmp_path}/store-{uuid.uuid4().hex}") as store:
        yield store


def _record_file(root: Path, what: str, key: tuple[str, ...]) -> Path:
    """The file holding one record, found through the documented layout."""
    if what == "output":
        return root / "outputs" / "records" / f"{key[0]}.json"
    if what == "document":
        kind, doc_key = key
        return root / "adaptive" / kind / f"{encode_name(doc_key)}.json"
    if what == "item":
        *namespace, item_key = key
        space = "".join(f"{label}\x1f" for label in namespace)
        return root / "items" / encode_name(space) / f"{encode_name('k' + item_key)}.json"
    if what == "blob":
        return root / "blobs" / key[0][:2] / f"{key[0]}.mime"
    folder = {"checkpoint": root / "checkpoints", "run": root / "adaptive" / "runs"}[what]
    owner, record_id = key
    matches = list((folder / encode_name(owner)).glob(f"*-{encode_name(record_id)}.json"))
    assert len(matches) == 1, f"no {what} {key} to corrupt"
    return matches[0]


def _damaged(what: str, raw: bytes, how: str) -> bytes:
    if what == "blob" and how != "utf8":
        raise NotImplementedError("a blob's mime file is plain text: only utf8 damage applies")
    if what == "item" and how == "type":  # the file is the record: give its value the wrong type
        record = json.loads(raw)
        record["value"] = json.loads(WRONG_TYPE)
        return json.dumps(record).encode()
    return damage(raw, how)


async def corrupt(store: Store, what: str, key: tuple[str, ...], how: str = "json") -> None:
    """Damage the record's file (see :mod:`relaystore.testing.damage`), as a failing disk would."""
    path = _record_file(parse_url(store.url, {}).local_path, what, key)
    assert path.exists(), f"no {what} {key} to corrupt"
    path.write_bytes(_damaged(what, path.read_bytes(), how))
