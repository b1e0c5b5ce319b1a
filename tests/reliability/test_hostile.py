"""Hostile input, per backend: a clear relaystore error or an exact round trip, nothing else.

Ids with path traversal, separators, NUL, lone surrogates, ``:`` and ``{}``, 10 KB strings;
payloads that are huge (20 MB state), deeply nested, not UTF-8 or not JSON-encodable; and stored
records corrupted behind the store's back. Never another exception, never a file outside the
store's root, never a read of another tenant's prefix or schema, and a corrupt record fails only
the calls that read it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import relaystore
from relaystore.connect import SyncStore
from relaystore.errors import CorruptRecord, InvalidInput, NotFound
from relaystore.models import CheckpointMetadata, inline
from relaystore.stores._common import MAX_ID_BYTES
from relaystore.testing import docs
from tests.conformance.factories import discover
from tests.reliability.conftest import SHARED_POSTGRES, SHARED_REDIS

ALL_BACKENDS = ("memory", "sqlite", "file", "redis", "postgres")
EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FACTORIES = discover()

# --------------------------------------------------------------------------- strategies

any_char = st.characters(codec=None, exclude_categories=())  # surrogates and NUL included
nasty = st.sampled_from(
    [
        "..",
        ".",
        "../..",
        "../../../etc/passwd",
        "/",
        "\\",
        "..\\..\\x",
        "/abs/path",
        "a/../../b",
        "~",
        "$HOME",
        "con",
        "nul",
        ":",
        "a:b:c",
        "{",
        "}",
        "{tag}",
        "}{",
        "*",
        "?",
        "[a]",
        "\x00",
        "a\x00b",
        "\ud800",
        "é",
        "\u202e",
        " ",
        "\n",
        "%2e%2e",
        "^",
        "\x7f",
    ]
)
hostile_ids = st.one_of(
    nasty,
    st.text(any_char, min_size=0, max_size=40),
    st.lists(nasty, min_size=1, max_size=6).map("".join),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["a", "é", "/", ":", "\U0001f600"]),
        st.sampled_from([255, 256, 1024, 1025, 10_000]),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(-1e15, 1e15) | st.text(any_char, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(any_char, max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


def valid_id(value: str) -> bool:
    """The documented rule: non-empty, no NUL, valid Unicode, at most 1024 UTF-8 bytes."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return 0 < size <= MAX_ID_BYTES and "\x00" not in value


# --------------------------------------------------------------------------- stores


def _drop_schema(schema: str) -> None:
    with psycopg.connect(SHARED_POSTGRES, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _purge(prefix: str) -> None:
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        pattern = "".join("\\" + c if c in "\\*?[]" else c for c in prefix) + "*"
        for key in client.scan_iter(match=pattern, count=1000):
            client.unlink(key)
    finally:
        client.close()


class Tenants:
    """Fresh stores of one backend under a sandbox directory; removed (our data only) at the end."""

    def __init__(self, backend: str, sandbox: Path) -> None:
        self.backend = backend
        self.sandbox = sandbox
        self.stores: list[SyncStore] = []
        self.cleanups: list[Any] = []

    def open(self, name: str) -> SyncStore:
        tag = uuid.uuid4().hex[:10]
        if self.backend == "memory":
            url = f"memory://hostile-{tag}"
        elif self.backend == "sqlite":
            url = f"sqlite:///{self.sandbox / 'deep' / f'{name}.db'}"
        elif self.backend == "file":
            url = f"file://{self.sandbox / 'deep' / 'er' / name}"
        elif self.backend == "redis":
            prefix = f"rstest:hostile:{tag}:{name}:"
            url = f"{SHARED_REDIS}?prefix={prefix}"
            self.cleanups.append(lambda: _purge(prefix))
        else:
            schema = f"rs_hostile_{tag}_{name}"
            url = f"{SHARED_POSTGRES}?schema={schema}"
            self.cleanups.append(lambda: _drop_schema(schema))
        (self.sandbox / "deep" / "er").mkdir(parents=True, exist_ok=True)
        store = relaystore.connect_sync(url)
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.close()
        for cleanup in self.cleanups:
            cleanup()


@pytest.fixture(params=ALL_BACKENDS)
def tenants(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tenants]:
    if request.param in ("redis", "postgres"):
        request.getfixturevalue(f"shared_{request.param}")
    opened = Tenants(request.param, tmp_path / "sandbox")
    try:
        yield opened
    finally:
        opened.close()


def files_outside(sandbox: Path, store: SyncStore) -> list[str]:
    """Paths under the sandbox that are neither the store's root (or inside it) nor its parents."""
    if not store.url.startswith("file://"):
        return []
    root = Path(store.url.removeprefix("file://"))
    stray = []
    for directory, dirs, files in os.walk(sandbox):
        for name in dirs + files:
            path = Path(directory) / name
            if path != root and root not in path.parents and path not in root.parents:
                stray.append(str(path))
    return stray


def expect_invalid_or(valid: bool, call: Any) -> Any:
    """``call()`` when the input is valid; otherwise it must raise InvalidInput."""
    if valid:
        return call()
    with pytest.raises(InvalidInput):
        call()
    return None


# --------------------------------------------------------------------------- ids


@EXAMPLES
@given(ident=hostile_ids, state=st.binary(max_size=300))
def test_hostile_ids_round_trip_or_are_invalid_input(tenants: Tenants, ident: str, state: bytes) -> None:
    store = tenants.stores[0] if tenants.stores else tenants.open("a")
    valid = valid_id(ident)

    def save() -> None:
        store.checkpoints.delete_thread(ident)  # hypothesis repeats ids; the id is the checkpoint's too
        store.checkpoints.save(ident, CheckpointMetadata(id=ident, thread_id=ident), state)
        loaded = store.checkpoints.load(ident, ident)
        assert loaded.state == state and loaded.metadata.thread_id == ident
        assert store.checkpoints.head(ident) == ident and ident in store.checkpoints.list_threads()

    def append() -> None:
        ref = store.outputs.append(ident, 0, ident, docs.artifact_event(name=ident if valid else "x"))
        record = store.outputs.get(ref)
        assert (record.task_id, record.producer_agent, record.event.name) == (ident, ident, ident)
        assert store.outputs.get_latest_by_name(ident).id == ref

    def run_and_document() -> None:
        run = docs.run_record(ident)
        store.adaptive.store_run(run)
        assert run.id in [r.id for r in store.adaptive.list_runs(ident)]
        store.adaptive.store_accumulators(ident, docs.accumulator_state(7))
        assert docs.counter_of(store.adaptive.load_accumulators(ident)) == 7

    for call in (save, append, run_and_document):
        expect_invalid_or(valid, call)
    assert files_outside(tenants.sandbox, store) == []


@EXAMPLES
@given(ident=hostile_ids.filter(valid_id))
def test_a_tenant_never_reads_another_tenants_data(tenants: Tenants, ident: str) -> None:
    """Two stores on one server (Redis: prefixes whose glob characters would match the other's
    keys if unescaped; PostgreSQL: two schemas) share nothing, whatever the ids."""
    if not tenants.stores:
        tenants.open("a")
        tenants.open("[a]*?" if tenants.backend == "redis" else "b")
    a, b = tenants.stores
    a.checkpoints.save(ident, CheckpointMetadata(id=uuid.uuid4().hex, thread_id=ident), b"secret")
    a.outputs.append(ident, 1, ident, docs.artifact_event())
    a.adaptive.store_run(docs.run_record(ident))
    a.adaptive.store_plan(docs.execution_plan(ident))
    with pytest.raises(NotFound):
        b.checkpoints.load_latest(ident)
    with pytest.raises(NotFound):
        b.outputs.get_latest_by_name(ident)
    assert b.adaptive.load_plan(ident) is None and b.adaptive.count_runs(ident) == 0
    assert list(b.checkpoints.list_threads()) == [] and list(b.outputs.list()) == []
    assert list(b.adaptive.list_agents()) == [] and list(b.adaptive.list_keys("plan")) == []


# --------------------------------------------------------------------------- payloads


@EXAMPLES
@given(value=json_values)
def test_output_content_round_trips_or_is_invalid_input(tenants: Tenants, value: Any) -> None:
    store = tenants.stores[0] if tenants.stores else tenants.open("a")
    try:
        ref = store.outputs.append(
            "task", 1, "agent", {"type": "final", "ok": True, "content": inline(value)}
        )
    except InvalidInput:
        return  # e.g. a lone surrogate: refused, nothing written
    assert store.outputs.get(ref).event.content.value == value


@pytest.mark.parametrize("number", [1e20, 5.771043964779723e16, -2.5e300])
def test_large_floats_in_output_content_keep_their_value(tenants: Tenants, number: float) -> None:
    store = tenants.open("a")
    ref = store.outputs.append("task", 1, "agent", {"type": "final", "ok": True, "content": inline(number)})
    value = store.outputs.get(ref).event.content.value
    assert type(value) is float and value == number


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": [value]} if depth % 2 else [value]
    return value


def test_huge_deep_and_unencodable_payloads(tenants: Tenants) -> None:
    store = tenants.open("a")
    huge = os.urandom(20 * 1024 * 1024)  # 20 MB of bytes that are not UTF-8
    store.checkpoints.save("t", CheckpointMetadata(id="huge", thread_id="t"), huge)
    assert store.checkpoints.load("t", "huge").state == huge

    event = {"type": "final", "ok": True, "content": inline(nested(60))}
    ref = store.outputs.append("task", 1, "agent", event)
    assert store.outputs.get(ref).event.content.value == nested(60)
    for unstorable in (nested(250), nested(5000), "\ud800", b"\xff", object()):
        with pytest.raises(InvalidInput):  # never stored, so never an unreadable record later
            store.outputs.append(
                "task", 1, "agent", {"type": "final", "ok": True, "content": inline(unstorable)}
            )
    with pytest.raises(InvalidInput):
        store.checkpoints.save("t", CheckpointMetadata(id="s", thread_id="t", label="\udcff"), b"")
    assert [r.id for r in store.outputs.list()] == [ref]  # nothing refused was written
    assert store.checkpoints.count("t") == 1


# --------------------------------------------------------------------------- corrupt records


def test_a_corrupt_record_fails_only_the_calls_that_read_it(tenants: Tenants) -> None:
    store = tenants.open("a")
    corrupt = FACTORIES[tenants.backend].corrupt

    def spoil(what: str, key: tuple[str, ...]) -> bool:
        try:
            store._runner.run(corrupt(store.store, what, key))
            return True
        except NotImplementedError:  # the memory backend keeps checkpoints and outputs decoded
            return False

    ids = [f"c{i}" for i in range(3)]
    for checkpoint_id in ids:
        store.checkpoints.save("t", CheckpointMetadata(id=checkpoint_id, thread_id="t"), b"s")
    refs = [store.outputs.append("task", 1, "agent", docs.artifact_event()) for _ in range(3)]
    runs = [docs.run_record("agent") for _ in range(3)]
    for run in runs:
        store.adaptive.store_run(run)
    for key in ("k0", "k1"):
        store.adaptive.store_accumulators(key, docs.accumulator_state(3))

    if spoil("checkpoint", ("t", "c1")):
        with pytest.raises(CorruptRecord):
            store.checkpoints.load("t", "c1")
        assert [m.id for m in store.checkpoints.list("t")] == ["c0", "c2"]
        assert store.checkpoints.load("t", "c2").state == b"s" and store.checkpoints.count("t") == 3
    if spoil("output", (refs[1],)):
        with pytest.raises(CorruptRecord):
            store.outputs.get(refs[1])
        assert [r.id for r in store.outputs.list()] == [refs[0], refs[2]]
        assert store.outputs.get_latest_by_name("agent").id == refs[2]
    assert spoil("run", ("agent", runs[1].id))
    assert [r.id for r in store.adaptive.list_runs("agent")] == [runs[0].id, runs[2].id]
    assert spoil("document", ("accumulators", "k0"))
    with pytest.raises(CorruptRecord):
        store.adaptive.load_accumulators("k0")
    with pytest.raises(CorruptRecord):  # an update cannot build on it, and writes nothing
        store.adaptive.update_accumulators("k0", docs.incremented)
    assert docs.counter_of(store.adaptive.load_accumulators("k1")) == 3

    # the store keeps working around the bad records
    store.checkpoints.save("t", CheckpointMetadata(id="c3", thread_id="t"), b"t")
    assert store.checkpoints.load_latest("t").metadata.id == "c3"
    store.adaptive.store_accumulators("k0", docs.accumulator_state(5))  # overwriting repairs it
    assert docs.counter_of(store.adaptive.load_accumulators("k0")) == 5
