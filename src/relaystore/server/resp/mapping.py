"""Redis keys onto relaystore: NeMo Relay's adaptive keys onto ``store.adaptive``, the rest onto
``store.items``.

A key ``{prefix}{family}:{owner}`` whose family is one of NeMo Relay's (``runs``, ``runs_index``,
``plan``, ``trie``, ``accumulators``, ``acg_observations``, ``acg_stability``; the layout of
``backends/redis.py``'s :class:`~relaystore.backends.redis.AdaptiveKeys`) is adaptive state:

- ``SET {p}runs:{agent}:{run id}`` is ``store_run`` (the record's ``agent_id`` and ``id`` must
  match the key); ``RPUSH {p}runs_index:{agent} {run id}`` then only confirms the run is stored,
  because the store keeps runs in order itself. ``LRANGE``/``LLEN`` list and count runs.
- ``SET``/``GET`` of a document kind are ``store_*``/``load_*`` of that (kind, owner).

Every other key is a *generic* item in namespace ``("resp", "<db>")`` with Redis' TTL as the item's
ttl, so ``relaystore memory`` shows it. Values are refused with :class:`InvalidInput` unless they are
valid JSON of their kind (adaptive) or UTF-8 (generic); nothing is written then.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from relaystore.backends.redis import AdaptiveKeys
from relaystore.errors import Conflict, InvalidInput
from relaystore.stores import Store
from relaystore.stores._common import check_id
from relaystore.stores.adaptive import ADAPTERS, DOC_KINDS, RUN, run_json
from relaystore.stores.items import ItemWrite, StoredItem

FAMILIES = ("runs_index", "runs", *DOC_KINDS)
GENERIC = "generic"
LEARNING_KEY_SEPARATOR = "::"  # an ACG learning key is "{agent}::model=…"


class WrongType(Exception):
    """The key holds a string where a list was asked for, or the other way round."""


@dataclass(frozen=True, slots=True)
class Key:
    """One Redis key, classified: ``family`` is a NeMo Relay family or ``generic``."""

    name: str
    family: str
    owner: str
    run_id: str = ""

    @property
    def agent(self) -> str | None:
        """The agent whose state this is (what an adaptive token is checked against)."""
        if self.family == GENERIC:
            return None
        if self.family.startswith("acg_"):
            return self.owner.split(LEARNING_KEY_SEPARATOR, 1)[0]
        return self.owner


@dataclass(frozen=True, slots=True)
class Step:
    """A prepared command: validated, not yet run. ``writes`` names the one thing it changes
    (None: it only reads), so a transaction can tell whether it is one store transaction."""

    run: Callable[[], Awaitable[Any]]
    writes: str | None = None


def _validated(kind: str, text: str) -> Any:
    adapter = RUN if kind == "runs" else ADAPTERS[kind]
    try:
        return adapter.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the value"
        raise InvalidInput(f"not a valid {kind} document: {where}: {first['msg']}") from None


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} must be UTF-8") from None


class KeySpace:
    """Database ``db`` of the listener: Redis operations over one store (see the module docs)."""

    def __init__(self, store: Store, prefix: str, db: int = 0) -> None:
        self.store = store
        self.prefix = prefix
        self.namespace = ("resp", str(db))
        self._keys = AdaptiveKeys(prefix, cluster=False)

    # ------------------------------------------------------------------ keys

    def key(self, raw: bytes) -> Key:
        name = _text(raw, "a key")
        if name.startswith(self.prefix):
            for family in FAMILIES:
                owner = self._keys.owner_of(name, family)
                if not owner:
                    continue
                if family != "runs":
                    return Key(name, family, owner)
                agent, _, run_id = owner.rpartition(":")  # a uuid7 has no colon; agent ids may
                if agent and run_id:
                    return Key(name, family, agent, run_id)
        return Key(name, GENERIC, name)

    def name(self, family: str, owner: str) -> str:
        return self._keys.key(family, owner)

    # ------------------------------------------------------------------ reads

    async def get(self, key: Key) -> bytes | None:
        if key.family == "runs":
            run = await self._find_run(key.owner, key.run_id)
            return None if run is None else run_json(run).encode()
        if key.family == "runs_index":
            raise WrongType
        if key.family != GENERIC:
            text = await self.store.adaptive._get_doc(key.family, check_id(key.owner, "key"))  # type: ignore[arg-type]
            return None if text is None else text.encode()
        item = await self._item(key)
        if item is None:
            return None
        if "l" in item.value:
            raise WrongType
        return _item_bytes(item.value)

    async def type_of(self, key: Key) -> str:
        if key.family == "runs_index":
            return "list" if await self.store.adaptive.count_runs(key.owner) else "none"
        if key.family != GENERIC:
            return "string" if await self.get(key) is not None else "none"
        item = await self._item(key)
        if item is None:
            return "none"
        return "list" if "l" in item.value else "string"

    async def exists(self, key: Key) -> bool:
        return await self.type_of(key) != "none"

    async def pttl(self, key: Key) -> int:
        """Milliseconds left, -1 for no expiry (all adaptive state), -2 for no such key."""
        if key.family != GENERIC:
            return -1 if await self.exists(key) else -2
        item = await self._item(key)
        if item is None:
            return -2
        if item.expires_at is None:
            return -1
        return max(0, math.ceil((item.expires_at - self.store.items.clock()) * 1000))

    async def run_ids(self, agent: str) -> list[str]:
        return [str(run.id) for run in await self.store.adaptive.list_runs(agent)]

    async def list_items(self, key: Key) -> list[str]:
        """The elements of a list key (run ids for ``runs_index``); [] when missing."""
        if key.family == "runs_index":
            return await self.run_ids(key.owner)
        if key.family != GENERIC:
            if await self.get(key) is not None:
                raise WrongType
            return []
        item = await self._item(key)
        if item is None:
            return []
        if "l" not in item.value:
            raise WrongType
        return list(item.value["l"])

    async def llen(self, key: Key) -> int:
        if key.family == "runs_index":
            return await self.store.adaptive.count_runs(key.owner)
        return len(await self.list_items(key))

    async def all_keys(self) -> list[str]:
        """Every key of this database, sorted: what KEYS and SCAN walk."""
        adaptive = self.store.adaptive
        names: list[str] = []
        for agent in await adaptive.list_agents():
            ids = await self.run_ids(agent)
            if ids:
                names.append(self.name("runs_index", agent))
                names += [self._keys.run(agent, run_id) for run_id in ids]
        for kind in DOC_KINDS:
            names += [self.name(kind, owner) for owner in await adaptive.list_keys(kind)]
        items = await self.store.items.search(self.namespace, limit=None, newest_first=False, values=False)
        names += [item.key for item in items if item.namespace == self.namespace]
        return sorted(set(names))

    # ------------------------------------------------------------------ writes

    def prepare_set(self, key: Key, value: bytes, ttl: float | None) -> Step:
        """SET, validated now and applied by ``Step.run`` (which returns nothing)."""
        if key.family == GENERIC:
            item = _item_value(value)
            return Step(lambda: self.store.items.put(self.namespace, key.name, item, ttl=ttl), key.name)
        if ttl is not None:
            raise InvalidInput(
                "adaptive state does not expire in relaystore (retention prunes it): drop EX/PX"
            )
        if key.family == "runs_index":
            raise WrongType
        text = _text(value, "an adaptive value")
        parsed = _validated(key.family, text)
        owner = check_id(key.owner, "key")
        # Validated, the text is stored as sent (one parse, no re-encoding): GET returns the bytes
        # SET wrote, as Redis does. These are the contract's backend primitives, which the
        # public store_* methods reach after re-validating and re-encoding the same value.
        adaptive = self.store.adaptive
        if key.family == "runs":
            if parsed.agent_id != owner or str(parsed.id) != key.run_id:
                raise InvalidInput(
                    f"the run is {parsed.agent_id}:{parsed.id}, not the key's {owner}:{key.run_id}"
                )
            return Step(lambda: adaptive._store_run(owner, key.run_id, text), key.name)
        if key.family == "plan" and parsed.agent_id != owner:
            raise InvalidInput(f"the plan is for {parsed.agent_id!r}, not the key's {owner!r}")
        return Step(lambda: adaptive._put_doc(key.family, owner, text), key.name)  # type: ignore[arg-type]

    async def prepare_rpush(self, key: Key, values: list[bytes], staged: set[str]) -> Step:
        """RPUSH. On ``runs_index`` every value must be a run id stored (or SET earlier in the same
        transaction: ``staged`` holds those key names); the step then only counts the runs."""
        texts = [_text(v, "a list element") for v in values]
        if key.family == "runs_index":
            missing = [t for t in texts if self._keys.run(key.owner, t) not in staged]
            if missing:
                known = set(await self.run_ids(key.owner))
                missing = [t for t in missing if t not in known]
            if missing:
                raise InvalidInput(
                    f"runs_index lists stored runs only: SET {self._keys.run(key.owner, missing[0])} first"
                )
            return Step(lambda: self.store.adaptive.count_runs(key.owner))
        await self.list_items(key)  # raises WrongType before anything is queued

        async def push() -> int:
            item = await self._item(key)
            items = list(item.value["l"]) if item is not None and "l" in item.value else []
            items += texts
            ttl = (
                None
                if item is None or item.expires_at is None
                else item.expires_at - self.store.items.clock()
            )
            await self.store.items.put(self.namespace, key.name, {"l": items}, ttl=ttl)
            return len(items)

        return Step(push, key.name)

    def prepare_delete(self, keys: list[Key]) -> Step:
        for key in keys:
            if key.family in ("runs", "runs_index"):
                raise InvalidInput(
                    "runs are removed by retention (prune_runs, POST /v1/adaptive/runs/prune), not DEL"
                )

        async def delete() -> int:
            gone = 0
            generic = [k for k in keys if k.family == GENERIC]
            for key in generic:
                gone += await self._item(key) is not None
            if generic:
                await self.store.items.write([ItemWrite(self.namespace, k.name, None) for k in generic])
            for key in keys:
                if key.family != GENERIC:
                    gone += await self.store.adaptive.delete_document(key.family, key.owner)  # type: ignore[arg-type]
            return gone

        return Step(delete, ",".join(k.name for k in keys) or None)

    def prepare_expire(self, key: Key, seconds: float) -> Step:
        if key.family != GENERIC:
            raise InvalidInput("adaptive state does not expire in relaystore (retention prunes it)")

        async def expire() -> int:
            item = await self._item(key)
            if item is None:
                return 0
            if seconds <= 0:
                await self.store.items.delete(self.namespace, key.name)
            else:
                await self.store.items.put(self.namespace, key.name, item.value, ttl=seconds)
            return 1

        return Step(expire, key.name)

    # ------------------------------------------------------------------ helpers

    async def _item(self, key: Key) -> StoredItem | None:
        return await self.store.items.get(self.namespace, key.name)

    async def _find_run(self, agent: str, run_id: str) -> Any:
        for run in await self.store.adaptive.list_runs(agent):
            if str(run.id) == run_id:
                return run
        return None


def _item_value(value: bytes) -> dict[str, Any]:
    try:
        return {"s": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def _item_bytes(value: dict[str, Any]) -> bytes:
    if "s" in value:
        return str(value["s"]).encode()
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (KeyError, binascii.Error):
        raise Conflict("the item is not a RESP value (written through another API)") from None


__all__ = ["GENERIC", "Key", "KeySpace", "Step", "WrongType"]
