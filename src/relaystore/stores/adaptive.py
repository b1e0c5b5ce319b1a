"""The adaptive contract: NeMo Relay's StorageBackendDyn, plus atomic updates and retention.

Documents are kept per (kind, key) as the exact JSON NeMo Relay writes. The kinds are named after
NeMo Relay's Redis key prefixes: ``plan``, ``trie``, ``accumulators`` (keyed by agent id),
``acg_observations`` and ``acg_stability`` (keyed by agent id or ACG learning key).

Semantics, as NeMo Relay's InMemoryBackend and RedisBackend:

- ``store_run`` appends; ``list_runs`` returns runs in store order. A run id is unique per agent
  (:class:`Conflict` if stored again).
- Every other ``store_*`` overwrites; a missing document loads as None.
- Unlike NeMo Relay, one corrupt run does not fail ``list_runs``: it is skipped with a warning.
  Loading a corrupt document raises :class:`CorruptRecord` naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from typing import Any, Literal, NamedTuple, TypeVar

from pydantic import TypeAdapter

from relaystore.errors import BackendUnavailable, Conflict, InvalidInput
from relaystore.models.adaptive import (
    AccumulatorState,
    ExecutionPlan,
    PromptIR,
    RunRecord,
    StabilityAnalysisResult,
    TrieEnvelope,
)
from relaystore.models.common import Page
from relaystore.stores._common import (
    ANY,
    check_id,
    check_keep,
    check_limit,
    decode_key_cursor,
    decode_seq_cursor,
    fetch_size,
    make_page,
    parse_json,
    parse_rows,
    storable_json,
    validate,
)

DocKind = Literal["plan", "trie", "accumulators", "acg_observations", "acg_stability"]
DOC_KINDS: tuple[DocKind, ...] = ("plan", "trie", "accumulators", "acg_observations", "acg_stability")
AGENT_DOC_KINDS: tuple[DocKind, ...] = ("plan", "trie", "accumulators")

M = TypeVar("M")
Observations = list[PromptIR]

ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "plan": TypeAdapter(ExecutionPlan),
    "trie": TypeAdapter(TrieEnvelope),
    "accumulators": TypeAdapter(AccumulatorState),
    "acg_observations": TypeAdapter(Observations),
    "acg_stability": TypeAdapter(StabilityAnalysisResult),
}
RUN: TypeAdapter[RunRecord] = TypeAdapter(RunRecord)

# Documents are written compact with None fields dropped only where the model says so.
_DUMP = {"by_alias": True}


def doc_json(kind: str, value: Any) -> str:
    """Serialize a document of ``kind`` as NeMo Relay does (compact JSON)."""
    return storable_json(ADAPTERS[kind], value, kind, **_DUMP)


def run_json(run: RunRecord) -> str:
    return storable_json(RUN, run, "run record", **_DUMP)


def document_etag(text: str) -> str:
    """The version tag of a stored document: SHA-256 hex of its exact JSON text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VersionedDocument(NamedTuple):
    """A document with its exact stored JSON ``text`` and ``etag`` (:func:`document_etag` of it)."""

    value: Any
    text: str
    etag: str


class _StaleDocument(Exception):
    """Raised inside an ``_update_doc`` apply function to abort a compare-and-set put."""


class _UpdateQueue:
    """This event loop's updates of one document, one at a time.

    When the update holding the lock fails with :class:`BackendUnavailable`, the updates that
    were waiting behind it fail at once with the same error instead of each trying again and
    waiting a whole ``timeout`` of its own: N queued updates of a frozen backend all fail within
    about one ``timeout`` of when they were made, not N of them.
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.failures = 0
        self.last_failure: BackendUnavailable | None = None

    @contextlib.asynccontextmanager
    async def turn(self, what: str) -> AsyncIterator[None]:
        seen = self.failures
        async with self.lock:
            if self.failures != seen:
                raise BackendUnavailable(
                    f"{what}: the backend failed while this update waited: {self.last_failure}"
                )
            try:
                yield
            except BackendUnavailable as exc:
                self.failures += 1
                self.last_failure = exc
                raise


class UpdateQueues:
    """Per event loop, one :class:`_UpdateQueue` per document: who is updating what, right now.

    A :class:`~relaystore.stores.Store` owns one and hands it to its adaptive face, so updates
    through that store take turns. Queues are dropped when no update holds them.
    """

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, weakref.WeakValueDictionary[Hashable, _UpdateQueue]
        ] = weakref.WeakKeyDictionary()

    def queue(self, document: Hashable) -> _UpdateQueue:
        """The running loop's queue for ``document`` (created on first use)."""
        per_loop = self._by_loop.setdefault(asyncio.get_running_loop(), weakref.WeakValueDictionary())
        found = per_loop.get(document)
        if found is None:
            found = per_loop[document] = _UpdateQueue()
        return found


class AdaptiveStore(ABC):
    """Learned state of NeMo Relay's adaptive runtime. All methods are coroutines."""

    _update_queues: UpdateQueues | None = None

    def use_update_queues(self, queues: UpdateQueues) -> None:
        """Take turns with every update made through ``queues`` (the owning Store's).

        Updates of one document through one Store wait for each other in-process, so they never
        race a compare-and-set they would lose (and then redo the decode-apply-encode); across
        processes, and across Store objects, the backend's own atomic step decides.
        """
        self._update_queues = queues

    # ------------------------------------------------------------------ runs

    async def store_run(self, run: RunRecord | dict[str, Any]) -> None:
        """Append a run for ``run.agent_id``; :class:`Conflict` if that run id is stored."""
        parsed = validate(RUN, run, "run record")
        check_id(parsed.agent_id, "agent_id")
        await self._store_run(parsed.agent_id, parsed.id, run_json(parsed))

    async def list_runs(
        self, agent_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[RunRecord]:
        """The agent's runs in store order (oldest first); empty for an unknown agent.

        Corrupt runs are skipped with a warning, so a page may hold fewer than ``limit`` runs;
        only ``next_cursor`` None means the listing is complete.
        """
        check_id(agent_id, "agent_id")
        limit = check_limit(limit)
        rows = await self._list_runs(agent_id, decode_seq_cursor(cursor), fetch_size(limit))
        return make_page(parse_rows(RUN, rows), limit)

    async def count_runs(self, agent_id: str) -> int:
        """Number of stored runs of the agent."""
        return await self._count_runs(check_id(agent_id, "agent_id"))

    async def prune_runs(self, agent_id: str, keep: int) -> int:
        """Retention: delete all but the newest ``keep`` runs; return how many went."""
        return await self._prune_runs(check_id(agent_id, "agent_id"), check_keep(keep))

    async def list_agents(self, *, limit: int | None = None, cursor: str | None = None) -> Page[str]:
        """Agent ids that have runs, a plan, a trie or accumulators, sorted."""
        limit = check_limit(limit)
        agents = await self._list_agents(decode_key_cursor(cursor), fetch_size(limit))
        return make_page([(a, a) for a in agents], limit)

    async def list_keys(
        self, kind: DocKind, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[str]:
        """Keys that hold a document of ``kind``, sorted (e.g. every ACG learning key)."""
        self._kind(kind)
        limit = check_limit(limit)
        keys = await self._list_keys(kind, decode_key_cursor(cursor), fetch_size(limit))
        return make_page([(k, k) for k in keys], limit)

    async def delete_document(self, kind: DocKind, key: str) -> bool:
        """Delete one document (e.g. a stale learning key); return whether it existed."""
        return await self._delete_doc(self._kind(kind), check_id(key, "key"))

    # ------------------------------------------------------------------ documents

    async def load_plan(self, agent_id: str) -> ExecutionPlan | None:
        return await self._load("plan", agent_id)

    async def store_plan(self, plan: ExecutionPlan | dict[str, Any]) -> None:
        """Overwrite the plan of ``plan.agent_id`` (NeMo Relay keys plans by the plan itself)."""
        parsed = validate(ADAPTERS["plan"], plan, "execution plan")
        await self._store("plan", parsed.agent_id, parsed)

    async def load_trie(self, agent_id: str) -> TrieEnvelope | None:
        return await self._load("trie", agent_id)

    async def store_trie(self, agent_id: str, trie: TrieEnvelope | dict[str, Any]) -> None:
        await self._store("trie", agent_id, trie)

    async def load_accumulators(self, agent_id: str) -> AccumulatorState | None:
        return await self._load("accumulators", agent_id)

    async def store_accumulators(self, agent_id: str, state: AccumulatorState | dict[str, Any]) -> None:
        await self._store("accumulators", agent_id, state)

    async def load_observations(self, key: str) -> list[PromptIR] | None:
        """The ACG observation window of an agent id or learning key, oldest first."""
        return await self._load("acg_observations", key)

    async def store_observations(self, key: str, observations: list[PromptIR] | list[Any]) -> None:
        await self._store("acg_observations", key, observations)

    async def load_stability(self, key: str) -> StabilityAnalysisResult | None:
        return await self._load("acg_stability", key)

    async def store_stability(self, key: str, result: StabilityAnalysisResult | dict[str, Any]) -> None:
        await self._store("acg_stability", key, result)

    # ------------------------------------------------------------------ atomic updates

    async def update_accumulators(
        self, agent_id: str, fn: Callable[[AccumulatorState | None], AccumulatorState | None]
    ) -> AccumulatorState | None:
        """Atomically replace the agent's accumulators with ``fn(current)``.

        ``fn`` gets the stored value (or None) and returns the new one; returning None leaves the
        document as it is. Concurrent updaters, in any process, never lose an update; within one
        Store they take turns (see :meth:`use_update_queues`). ``fn`` must be a pure function: a backend
        that retries (Redis compare-and-set) may call it more than once.
        Returns the value stored afterwards.
        """
        return await self._update("accumulators", agent_id, fn)

    async def update_plan(
        self, agent_id: str, fn: Callable[[ExecutionPlan | None], ExecutionPlan | None]
    ) -> ExecutionPlan | None:
        """As :meth:`update_accumulators`, for the plan. The result's ``agent_id`` must match."""
        return await self._update("plan", agent_id, fn)

    async def update_observations(
        self, key: str, fn: Callable[[list[PromptIR] | None], list[PromptIR] | None]
    ) -> list[PromptIR] | None:
        """As :meth:`update_accumulators`, for an ACG observation window."""
        return await self._update("acg_observations", key, fn)

    # ------------------------------------------------------------------ versioned documents

    async def load_versioned(self, kind: DocKind, key: str) -> VersionedDocument | None:
        """The document of ``kind`` at ``key`` with its stored text and etag, or None.

        Raises :class:`CorruptRecord` if the stored text does not decode.
        """
        kind = self._kind(kind)
        text = await self._get_doc(kind, check_id(key, "key"))
        if text is None:
            return None
        value = parse_json(ADAPTERS[kind], text, f"{kind}:{key}")
        return VersionedDocument(value, text, document_etag(text))

    async def put_versioned(
        self, kind: DocKind, key: str, value: Any, *, if_etag: str | None = ANY
    ) -> VersionedDocument:
        """Store a document if its current etag is ``if_etag`` (None: only if absent; ANY: always).

        The comparison and the write are one atomic step (built on the backend's ``_update_doc``),
        so this is the compare-and-set that HTTP clients use instead of shipping a function.
        A plan's ``agent_id`` must equal ``key``. Raises :class:`Conflict` when the document
        changed (nothing written) and :class:`InvalidInput` for a bad kind, key or value.
        """
        kind = self._kind(kind)
        check_id(key, "key")
        if if_etag is not ANY and if_etag is not None and not isinstance(if_etag, str):
            raise InvalidInput(f"if_etag must be a string, None or ANY, got {if_etag!r}")
        parsed = validate(ADAPTERS[kind], value, kind)
        if kind == "plan" and parsed.agent_id != key:
            raise InvalidInput(f"the plan is for {parsed.agent_id!r}, not {key!r}")
        new_text = doc_json(kind, parsed)

        def apply(current: str | None) -> str:
            current_etag = None if current is None else document_etag(current)
            if if_etag is not ANY and current_etag != if_etag:
                raise _StaleDocument(current_etag)
            return new_text

        try:
            await self._update_doc(kind, key, apply)
        except _StaleDocument as stale:
            raise Conflict(
                f"{kind}:{key} has etag {stale.args[0]!r}, not the expected {if_etag!r}; nothing written"
            ) from None
        return VersionedDocument(parsed, new_text, document_etag(new_text))

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _kind(kind: object) -> DocKind:
        if kind not in DOC_KINDS:
            raise InvalidInput(f"unknown document kind {kind!r}; expected one of {DOC_KINDS}")
        return kind

    async def _load(self, kind: DocKind, key: str) -> Any:
        text = await self._get_doc(kind, check_id(key, "key"))
        return None if text is None else parse_json(ADAPTERS[kind], text, f"{kind}:{key}")

    async def _store(self, kind: DocKind, key: str, value: Any) -> None:
        parsed = validate(ADAPTERS[kind], value, kind)
        await self._put_doc(kind, check_id(key, "key"), doc_json(kind, parsed))

    async def _update(self, kind: DocKind, key: str, fn: Callable[[Any], Any]) -> Any:
        check_id(key, "key")
        adapter = ADAPTERS[kind]
        decoded: dict[str | None, Any] = {None: None}  # text -> value, so nothing is parsed twice

        def apply(text: str | None) -> str | None:
            current = None if text is None else parse_json(adapter, text, f"{kind}:{key}")
            decoded[text] = current
            new = fn(current)
            if new is None:
                return None
            new = validate(adapter, new, kind)
            if kind == "plan" and new.agent_id != key:
                raise InvalidInput(f"updated plan is for {new.agent_id!r}, not {key!r}")
            new_text = doc_json(kind, new)
            decoded[new_text] = new
            return new_text

        if self._update_queues is None:
            self._update_queues = UpdateQueues()
        queue = self._update_queues.queue((kind, key))
        async with queue.turn(f"{kind}:{key}"):
            text = await self._update_doc(kind, key, apply)
        if text in decoded:
            return decoded[text]
        return parse_json(adapter, text, f"{kind}:{key}")  # type: ignore[arg-type]

    # ------------------------------------------------------------------ backend primitives

    @abstractmethod
    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        """Append; raise :class:`Conflict` if (agent_id, run_id) exists."""

    @abstractmethod
    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> Sequence[tuple[int, str, str | bytes]]:
        """``(seq, key, json_text)`` rows with seq > ``after``, ascending. The text may be the
        stored bytes, undecoded: bytes that are not UTF-8 make that row corrupt, not the listing."""

    @abstractmethod
    async def _count_runs(self, agent_id: str) -> int: ...

    @abstractmethod
    async def _prune_runs(self, agent_id: str, keep: int) -> int: ...

    @abstractmethod
    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]: ...

    @abstractmethod
    async def _get_doc(self, kind: DocKind, key: str) -> str | None: ...

    @abstractmethod
    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None: ...

    @abstractmethod
    async def _delete_doc(self, kind: DocKind, key: str) -> bool: ...

    @abstractmethod
    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]: ...

    @abstractmethod
    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        """Atomically: read the document, ``new = apply(text)``, write ``new`` unless None.
        Return the text stored afterwards. ``apply`` may raise; then nothing is written."""
