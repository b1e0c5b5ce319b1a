"""PostgreSQL backend specifics: URL options, migrations, concurrency, JSON exactness, plans,
connection loss. The shared contract is covered by tests/conformance (factory ``postgres``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any, cast

import psycopg
import pytest
from psycopg import sql
from pydantic import ValidationError

import relaystore
from relaystore import backends
from relaystore.backends._policy import STALE_UPLOAD_SECONDS, BackendOptions, describe
from relaystore.backends.postgres import PgOptions
from relaystore.backends.postgres import items as pg_items
from relaystore.backends.postgres import migrations as pg_migrations
from relaystore.backends.postgres.checkpoints import LATEST_CHECKPOINT, list_checkpoints_query
from relaystore.backends.postgres.migrations import SCHEMA_VERSION, migrate
from relaystore.backends.postgres.url import parse_url
from relaystore.errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from relaystore.models import AccumulatorState, CheckpointMetadata, Stats, inline
from relaystore.models.adaptive import NodeAccumulator
from relaystore.stores import Store
from relaystore.stores.adaptive import doc_json
from tests.support.services import free_port

OpenStore = Callable[..., Awaitable[Store]]


def new_schema() -> str:
    return f"rs_test_{uuid.uuid4().hex}"


async def admin(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def drop_schemas(url: str, schemas: list[str]) -> None:
    async with await admin(url) as conn:
        for schema in schemas:
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
async def schemas(postgres_url: str) -> AsyncIterator[list[str]]:
    """Schema names a test creates; each is dropped afterwards."""
    created: list[str] = []
    yield created
    await drop_schemas(postgres_url, created)


@pytest.fixture
async def open_pg(postgres_url: str, schemas: list[str]) -> AsyncIterator[OpenStore]:
    """Opens stores on fresh schemas (or a given one); closes them afterwards."""
    stores: list[Store] = []

    async def opener(schema: str | None = None, **options: Any) -> Store:
        schema = schema or new_schema()
        if schema not in schemas:
            schemas.append(schema)
        store = await relaystore.connect(postgres_url, schema=schema, **options)
        stores.append(store)
        return store

    yield opener
    for store in stores:
        await store.close()


def meta(thread: str, checkpoint_id: str, **fields: Any) -> CheckpointMetadata:
    return CheckpointMetadata(id=checkpoint_id, thread_id=thread, created_at=1_700_000_000, **fields)


# --------------------------------------------------------------------------- URL and options


def test_url_options_are_split_from_the_connection_string() -> None:
    opts = parse_url(
        "postgresql://u:p%40ss@db:6543/app?schema=tenant_a&pool_min=2&pool_max=5&timeout=3"
        "&sslmode=disable&check=off",
        {},
    )
    assert (opts.schema, opts.pool_min, opts.pool_max, opts.timeout, opts.check) == (
        "tenant_a",
        2,
        5,
        3.0,
        False,
    )
    assert opts.conninfo == "postgresql://u:p%40ss@db:6543/app?sslmode=disable"
    assert opts.application_name.startswith("relaystore-")


def test_options_are_one_typed_model_with_the_password_only_in_the_conninfo() -> None:
    opts = backends.parse_url("postgres://u:secret@db/app?schema=t&password=also", pool_max=4)
    assert isinstance(opts, PgOptions) and isinstance(opts, BackendOptions)
    assert (opts.scheme, opts.schema, opts.pool_max) == ("postgres", "t", 4)
    assert opts.url == "postgres://u:***@db/app?schema=t&password=***"
    assert "secret" in opts.conninfo and "also" in opts.conninfo
    shown = f"{opts!r} {describe(opts)}"
    assert "secret" not in shown and "also" not in shown
    assert describe(opts)["schema"] == "t"
    with pytest.raises(ValidationError):  # frozen: a parsed value can be shared
        opts.pool_max = 5  # type: ignore[misc]


def test_defaults_skip_the_pool_check_and_bound_calls_by_three_timeouts() -> None:
    opts = parse_url("postgresql://h/db", {})
    assert (opts.check, opts.timeout, opts.call_timeout) == (False, 10.0, 30.0)
    assert parse_url("postgresql://h/db?timeout=2", {}).call_timeout == 6.0
    assert parse_url("postgresql://h/db?timeout=2&call_timeout=0", {}).call_timeout == 0.0
    assert parse_url("postgresql://h/db?check=1", {"call_timeout": 1.5}).call_timeout == 1.5


def test_keywords_override_url_options() -> None:
    opts = parse_url("postgres://h/db?schema=a&pool_max=3", {"schema": "b", "pool_max": 7, "check": False})
    assert (opts.schema, opts.pool_max, opts.check) == ("b", 7, False)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("postgresql://h/db?schema=Bad-Name", {}),
        ("postgresql://h/db", {"schema": "pg_catalog"}),
        ("postgresql://h/db", {"schema": 'x"; DROP TABLE y; --'}),
        ("postgresql://h/db", {"schema": "a" * 64}),
        ("postgresql://h/db?pool_min=3&pool_max=2", {}),
        ("postgresql://h/db?pool_max=zero", {}),
        ("postgresql://h/db?timeout=0", {}),
        ("postgresql://h/db?check=maybe", {}),
        ("postgresql://h/db?call_timeout=-1", {}),
        ("postgresql://h/db?no_such_libpq_option=1", {}),
        ("postgresql://h/db", {"poolmax": 3}),
    ],
)
def test_bad_options_are_invalid_input(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        parse_url(url, options)


async def test_unreachable_server_is_backend_unavailable(schemas: list[str]) -> None:
    with pytest.raises(BackendUnavailable):
        await relaystore.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/test?timeout=0.5")


# --------------------------------------------------------------------------- migrations


async def schema_versions(conn: psycopg.AsyncConnection[Any], schema: str) -> list[int]:
    query = sql.SQL("SELECT version FROM {}.relaystore_schema ORDER BY version").format(
        sql.Identifier(schema)
    )
    return [row[0] for row in await (await conn.execute(query)).fetchall()]


async def schema_exists(conn: psycopg.AsyncConnection[Any], schema: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    return await cur.fetchone() is not None


async def test_migrate_runs_inside_the_callers_transaction(postgres_url: str, schemas: list[str]) -> None:
    schema = new_schema()
    schemas.append(schema)
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:  # not autocommit
        await conn.execute("SELECT 1")  # a transaction is now open
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert await migrate(conn, schema) == SCHEMA_VERSION
        assert await schema_versions(conn, schema) == list(range(1, SCHEMA_VERSION + 1))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        await conn.rollback()  # the caller's rollback undoes the migration too
        assert not await schema_exists(conn, schema)

        await migrate(conn, schema)
        await conn.commit()
    async with await admin(postgres_url) as conn:
        assert await schema_versions(conn, schema) == list(range(1, SCHEMA_VERSION + 1))
        assert await migrate(conn, schema) == SCHEMA_VERSION  # again: nothing to do
        assert await schema_versions(conn, schema) == list(range(1, SCHEMA_VERSION + 1))


async def test_migrate_runs_no_ddl_when_the_schema_is_current(postgres_url: str, schemas: list[str]) -> None:
    """So a role without CREATE rights can open a schema that a deployment step migrated."""
    schema = new_schema()
    schemas.append(schema)
    async with await admin(postgres_url) as conn:
        await migrate(conn, schema)
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        await conn.execute("SET TRANSACTION READ ONLY")  # any DDL would now fail
        assert await migrate(conn, schema) == SCHEMA_VERSION
        await conn.rollback()


async def test_concurrent_openers_migrate_once(open_pg: OpenStore, postgres_url: str) -> None:
    schema = new_schema()
    stores = await asyncio.gather(*(open_pg(schema, pool_max=2) for _ in range(4)))
    assert {(await s.info())["schema_version"] for s in stores} == {SCHEMA_VERSION}
    async with await admin(postgres_url) as conn:
        assert await schema_versions(conn, schema) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused(open_pg: OpenStore, postgres_url: str) -> None:
    store = await open_pg()
    schema = (await store.info())["schema"]
    async with await admin(postgres_url) as conn:
        await conn.execute(
            sql.SQL("INSERT INTO {}.relaystore_schema (version) VALUES (%s)").format(sql.Identifier(schema)),
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(BackendUnavailable, match="Upgrade relaystore"):
        await open_pg(schema)


async def test_the_items_table_migrates_on_first_use_and_refuses_a_newer_version(
    open_pg: OpenStore, postgres_url: str
) -> None:
    """The items face's own version table, applied by the same routine as the backend's."""
    store = await open_pg()
    schema = sql.Identifier((await store.info())["schema"])
    await store.items.put(("ns",), "k", {"v": 1})
    versions = sql.SQL("SELECT version FROM {}.relaystore_items_schema ORDER BY version").format(schema)
    async with await admin(postgres_url) as conn:
        known = list(range(1, pg_items.SCHEMA_VERSION + 1))
        assert [r[0] for r in await (await conn.execute(versions)).fetchall()] == known
        await conn.execute(
            sql.SQL("INSERT INTO {}.relaystore_items_schema (version) VALUES (%s)").format(schema),
            (len(known) + 1,),
        )
    later = await open_pg((await store.info())["schema"])
    newer = len(known) + 1
    with pytest.raises(BackendUnavailable, match=rf"the items table has version {newer}.*Upgrade relaystore"):
        await later.items.get(("ns",), "k")
    assert (await store.items.get(("ns",), "k")) is not None  # a store already set up is unaffected


async def test_opening_drops_uploads_older_than_the_shared_cutoff(
    open_pg: OpenStore, postgres_url: str
) -> None:
    store = await open_pg()
    assert await store.blobs.list() == []  # the blob face's tables exist from its first use on
    schema = sql.Identifier((await store.info())["schema"])
    async with await admin(postgres_url) as conn:
        for upload, age in (("old", STALE_UPLOAD_SECONDS + 60), ("new", STALE_UPLOAD_SECONDS - 60)):
            await conn.execute(
                sql.SQL("INSERT INTO {}.blob_uploads VALUES (%s, now() - make_interval(secs => %s))").format(
                    schema
                ),
                (upload, age),
            )
            chunk = sql.SQL("INSERT INTO {}.blob_chunks VALUES (%s, 0, 'x')").format(schema)
            await conn.execute(chunk, (f"upload:{upload}",))
    await open_pg((await store.info())["schema"])
    async with await admin(postgres_url) as conn:
        owners = sql.SQL("SELECT owner FROM {}.blob_chunks ORDER BY owner").format(schema)
        assert [r[0] for r in await (await conn.execute(owners)).fetchall()] == ["upload:new"]


async def test_a_version_2_schema_upgrades_with_its_data(
    open_pg: OpenStore, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    """Migrations 3 (writes, attachments) and 4 (outputs.record jsonb -> json) on a live schema."""
    schema = new_schema()
    monkeypatch.setattr(pg_migrations, "SCHEMA_VERSION", 2)
    old = await open_pg(schema)
    await old.checkpoints.save("t", meta("t", "c1"), b"s")
    ref = await old.outputs.append("task", 0, "agent", {"type": "final", "content": inline(1.5), "ok": True})
    await old.close()
    async with await admin(postgres_url) as conn:  # outputs.record as migration 1 made it, jsonb
        table = sql.SQL("{}.outputs").format(sql.Identifier(schema))
        await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN record TYPE jsonb").format(table))
    monkeypatch.undo()
    store = await open_pg(schema)
    assert (await store.info())["schema_version"] == SCHEMA_VERSION
    async with await admin(postgres_url) as conn:
        kind = await conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'outputs' AND column_name = 'record'",
            (schema,),
        )
        assert await kind.fetchone() == ("json",)
    assert (await store.outputs.get(ref)).event.content.value == 1.5
    big = await store.outputs.append(
        "task", 0, "agent", {"type": "final", "content": inline(1e20), "ok": True}
    )
    assert type((await store.outputs.get(big)).event.content.value) is float
    await store.checkpoints.put_writes("t", "c1", [{"task_id": "a", "idx": 0, "channel": "c", "value": b"v"}])
    assert [w.value for w in await store.checkpoints.list_writes("t", "c1")] == [b"v"]


async def test_writes_racing_a_delete_are_never_orphaned(open_pg: OpenStore, postgres_url: str) -> None:
    store = await open_pg(pool_max=8)
    schema = sql.Identifier((await store.info())["schema"])
    write = {"task_id": "a", "idx": 0, "channel": "c", "value": b"v"}

    async def put(checkpoint_id: str) -> None:
        with suppress(NotFound):  # the delete won: nothing may be left behind
            await store.checkpoints.put_writes("t", checkpoint_id, [write])

    for round_ in range(20):
        ids = [f"r{round_}c{i}" for i in range(4)]
        for checkpoint_id in ids:
            await store.checkpoints.save("t", meta("t", checkpoint_id), b"")
        await asyncio.gather(
            *(put(c) for c in ids),
            *(store.checkpoints.delete("t", c) for c in ids[:2]),
            store.checkpoints.prune("t", keep=1),
        )
    async with await admin(postgres_url) as conn:
        cur = await conn.execute(
            sql.SQL(
                "SELECT COUNT(*) FROM {0}.checkpoint_writes w WHERE NOT EXISTS (SELECT 1 FROM "
                "{0}.checkpoints c WHERE c.thread_id = w.thread_id AND c.checkpoint_id = w.checkpoint_id)"
            ).format(schema)
        )
        assert cast(tuple[int], await cur.fetchone())[0] == 0


async def test_tenant_schemas_are_isolated(open_pg: OpenStore) -> None:
    a, b = await open_pg(), await open_pg()
    await a.checkpoints.save("t", meta("t", "c1"), b"a")
    assert await b.checkpoints.count("t") == 0
    assert await b.checkpoints.list_threads() == []
    assert (await a.info())["schema"] != (await b.info())["schema"]


async def test_list_agents_pages_past_an_agent_with_several_documents(open_pg: OpenStore) -> None:
    store = await open_pg()
    await store.adaptive.store_accumulators("a", AccumulatorState())
    await store.adaptive.store_trie(
        "a", {"generated_at": "2025-01-01T00:00:00Z", "workflow_name": "w", "root": {"name": "r"}}
    )
    await store.adaptive.store_accumulators("b", AccumulatorState())
    first = await store.adaptive.list_agents(limit=1)
    second = await store.adaptive.list_agents(limit=1, cursor=first.next_cursor)
    assert (list(first), list(second), second.next_cursor) == (["a"], ["b"], None)


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_accumulator_updates_lose_nothing(open_pg: OpenStore) -> None:
    store = await open_pg(pool_max=8)
    rounds, writers = 5, 8

    def bump(state: AccumulatorState | None) -> AccumulatorState:
        state = state or AccumulatorState(nodes={"": NodeAccumulator()})
        node = state.nodes[""]
        node.all_remaining_calls = Stats(count=node.all_remaining_calls.count + 1)
        return state

    async def writer() -> None:
        for _ in range(rounds):
            await store.adaptive.update_accumulators("agent", bump)

    await asyncio.gather(*(writer() for _ in range(writers)))
    final = await store.adaptive.load_accumulators("agent")
    assert final is not None
    assert final.nodes[""].all_remaining_calls.count == rounds * writers


async def test_exactly_one_racing_compare_and_set_wins(open_pg: OpenStore) -> None:
    store = await open_pg(pool_max=8)
    await store.checkpoints.save("t", meta("t", "root"), b"")

    async def attempt(i: int) -> str | None:
        try:
            return await store.checkpoints.save("t", meta("t", f"c{i}"), b"", expected_head="root")
        except Conflict:
            return None

    results = await asyncio.gather(*(attempt(i) for i in range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await store.checkpoints.head("t") == winners[0]
    assert await store.checkpoints.count("t") == 2


async def test_racing_saves_with_attachments_write_only_the_winners(open_pg: OpenStore) -> None:
    """The checkpoint and its attachments are one transaction: a losing CAS writes neither."""
    store = await open_pg(pool_max=8)
    await store.checkpoints.save("t", meta("t", "root"), b"")

    async def attempt(i: int) -> int | None:
        try:
            await store.checkpoints.save(
                "t", meta("t", f"c{i}"), b"", expected_head="root", attachments={f"k{i}": b"v"}
            )
            return i
        except Conflict:
            return None

    winners = [i for i in await asyncio.gather(*(attempt(i) for i in range(8))) if i is not None]
    assert len(winners) == 1
    assert list(await store.checkpoints.list_attachments("t")) == [f"k{winners[0]}"]


async def hold_thread_lock(postgres_url: str, schema: str, thread_id: str) -> psycopg.AsyncConnection[Any]:
    """An admin connection holding the advisory lock every save to ``thread_id`` takes."""
    conn = await admin(postgres_url)
    await conn.execute(
        "SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"relaystore:{schema}:thread:{thread_id}",)
    )
    return conn


async def test_a_plain_save_waits_for_the_thread_lock(open_pg: OpenStore, postgres_url: str) -> None:
    """The one-statement save takes the thread lock before it inserts (per-thread commit order)."""
    store = await open_pg()
    holder = await hold_thread_lock(postgres_url, (await store.info())["schema"], "t")
    async with holder:
        saving = asyncio.create_task(
            store.checkpoints.save("t", meta("t", "c1"), b"x", attachments={"k": b"v"})
        )
        await asyncio.sleep(0.3)
        assert not saving.done()
        assert await store.checkpoints.count("t") == 0
        assert await store.checkpoints.get_attachments("t", ["k"]) == {}
    assert await saving == "c1"  # closing the holder released the lock
    assert await store.checkpoints.get_attachments("t", ["k"]) == {"k": b"v"}


async def test_a_call_past_call_timeout_fails_and_its_connection_is_dropped(
    open_pg: OpenStore, postgres_url: str
) -> None:
    """A call stuck on the server (here behind a lock) fails at ``call_timeout``, writes nothing,
    and its connection is not lent again: the next calls work on a fresh one."""
    store = await open_pg(pool_min=1, pool_max=1, call_timeout=0.5)
    await store.checkpoints.save("t", meta("t", "c1"), b"x")
    holder = await hold_thread_lock(postgres_url, (await store.info())["schema"], "t")
    async with holder:
        started = asyncio.get_running_loop().time()
        with pytest.raises(BackendUnavailable, match="call_timeout"):
            # a compare-and-set save runs in a transaction, so cutting its connection rolls it back
            await store.checkpoints.save("t", meta("t", "c2"), b"y", expected_head="c1")
        assert asyncio.get_running_loop().time() - started < 3
    assert await store.checkpoints.head("t") == "c1"  # the cut statement wrote nothing
    await store.checkpoints.save("t", meta("t", "c2"), b"y")
    assert await store.checkpoints.head("t") == "c2"


async def test_concurrent_appends_all_land_in_distinct_order(open_pg: OpenStore) -> None:
    store = await open_pg(pool_max=8)
    await asyncio.gather(*(store.checkpoints.save("t", meta("t", f"c{i}"), b"") for i in range(16)))
    refs = await asyncio.gather(
        *(store.outputs.append("task", 0, "agent", {"type": "progress", "stage": str(i)}) for i in range(16))
    )
    assert await store.checkpoints.count("t") == 16
    records = await store.outputs.list_for_attempt("task", 0)
    assert sorted(r.id for r in records) == sorted(refs)
    assert len({r.seq for r in records}) == 16


# --------------------------------------------------------------------------- JSON exactness


async def test_adaptive_documents_keep_their_exact_text_including_nul(open_pg: OpenStore) -> None:
    store = await open_pg()
    observations = [
        {
            "ir_id": str(uuid.uuid4()),
            "blocks": [
                {
                    "span_id": "s\u00000",
                    "sequence_index": 0,
                    "role": "user",
                    "content": "before\u0000after ✓",
                    "content_type": "text",
                    "provenance": "user",
                }
            ],
            "created_at": "2025-01-02T03:04:05.123456789Z",
        }
    ]
    await store.adaptive.store_observations("key", observations)
    loaded = await store.adaptive.load_observations("key")
    assert loaded is not None
    assert loaded[0].blocks[0].content == "before\u0000after ✓"
    text = await store.adaptive._get_doc("acg_observations", "key")  # type: ignore[attr-defined]
    assert text == doc_json("acg_observations", loaded)
    assert "\\u0000" in text


async def test_float_formatting_survives(open_pg: OpenStore) -> None:
    store = await open_pg()
    state = AccumulatorState(
        nodes={"": NodeAccumulator(all_output_tokens=Stats(count=3, mean=17.0, m2=1e20))}
    )
    await store.adaptive.store_accumulators("agent", state)
    text = await store.adaptive._get_doc("accumulators", "agent")  # type: ignore[attr-defined]
    assert text == doc_json("accumulators", state)
    assert '"mean":17.0' in text


async def test_output_records_keep_nul_and_float_text(open_pg: OpenStore, postgres_url: str) -> None:
    store = await open_pg()
    content = {"text": "a\u0000b", "big": 1e20, "odd": 5.771043964779723e16}
    ref = await store.outputs.append(
        "task", 0, "agent", {"type": "final", "content": inline(content), "ok": True}
    )
    assert (await store.outputs.get(ref)).event.content.value == content
    async with await admin(postgres_url) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT record::text FROM {}.outputs").format(
                sql.Identifier((await store.info())["schema"])
            )
        )
        text = cast(tuple[str], await cur.fetchone())[0]
    assert "\\u0000" in text and "1e+20" in text  # the text as written, not jsonb's rewrite


async def test_nul_in_checkpoint_metadata_is_invalid_input_and_writes_nothing(open_pg: OpenStore) -> None:
    store = await open_pg()
    with pytest.raises(InvalidInput):  # metadata stays jsonb (see docs/backends/postgres.md)
        await store.checkpoints.save("t", meta("t", "c1", label="a\u0000b"), b"")
    assert await store.checkpoints.count("t") == 0


# --------------------------------------------------------------------------- plans


async def explain(conn: psycopg.AsyncConnection[Any], query: sql.Composable, params: tuple[Any, ...]) -> str:
    cur = await conn.execute(sql.SQL("EXPLAIN ") + query, params)
    return "\n".join(row[0] for row in await cur.fetchall())


async def test_latest_and_first_page_use_the_thread_index(open_pg: OpenStore, postgres_url: str) -> None:
    store = await open_pg()
    schema = sql.Identifier((await store.info())["schema"])
    async with await admin(postgres_url) as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {}.checkpoints (thread_id, checkpoint_id, metadata, state) "
                "SELECT 't' || (i % 5), 'c' || i, jsonb_build_object('id', 'c' || i, 'thread_id', "
                "'t' || (i % 5)), '' FROM generate_series(1, 50000) AS i"
            ).format(schema)
        )
        await conn.execute(sql.SQL("ANALYZE {}.checkpoints").format(schema))
        latest = sql.SQL(LATEST_CHECKPOINT).format(s=schema)  # type: ignore[arg-type]
        page = sql.SQL(list_checkpoints_query(True, False)).format(s=schema)  # type: ignore[arg-type]
        newest = sql.SQL(list_checkpoints_query(False, True)).format(s=schema)  # type: ignore[arg-type]
        plans = [
            await explain(conn, latest, ("t1",)),
            await explain(conn, page, ("t1", 100, 11)),
            await explain(conn, newest, ("t1", 11)),
        ]
        for plan in plans:
            assert "Index Scan" in plan and "checkpoints_thread_seq" in plan, plan
            assert "Sort" not in plan and "Seq Scan" not in plan, plan
    assert (await store.checkpoints.load_latest("t1")).metadata.id == "c49996"
    assert await store.checkpoints.list_threads() == ["t0", "t1", "t2", "t3", "t4"]


# --------------------------------------------------------------------------- connection loss


async def terminate_backends(postgres_url: str, application_name: str) -> int:
    """Kill the store's server connections and wait until the server has let them go."""
    async with await admin(postgres_url) as conn:
        cur = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        )
        killed = int((await cur.fetchone())[0])  # type: ignore[index]
        for _ in range(500):
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
            )
            if (await cur.fetchone())[0] == 0:  # type: ignore[index]
                break
            await asyncio.sleep(0.01)
        return killed


@pytest.mark.parametrize("check", [True, False])
async def test_lost_connections_fail_one_call_then_reconnect(
    open_pg: OpenStore, postgres_url: str, check: bool
) -> None:
    store = await open_pg(pool_min=3, pool_max=3, check=check)
    await store.checkpoints.save("t", meta("t", "c1"), b"x")
    assert await terminate_backends(postgres_url, (await store.info())["application_name"]) >= 1

    failures = 0
    for _ in range(3):
        try:
            assert (await store.checkpoints.load_latest("t")).metadata.id == "c1"
        except BackendUnavailable:
            failures += 1
    assert failures <= 1
    if check:  # the pool tests each connection as it leaves, so no call sees a dead one
        assert failures == 0
    await store.checkpoints.save("t", meta("t", "c2"), b"y")
    assert await store.checkpoints.head("t") == "c2"


async def test_dropped_schema_is_backend_unavailable_not_a_psycopg_error(
    open_pg: OpenStore, postgres_url: str
) -> None:
    store = await open_pg()
    await drop_schemas(postgres_url, [(await store.info())["schema"]])
    with pytest.raises(BackendUnavailable):
        await store.checkpoints.count("t")
    with pytest.raises(BackendUnavailable):
        await store.adaptive.update_accumulators("a", lambda s: s)


async def test_stored_metadata_leaves_out_what_the_columns_hold(
    open_pg: OpenStore, postgres_url: str
) -> None:
    """id, thread_id and state_size are not stored twice (the row's columns hold them); every
    read puts them back, and a row written with them (before) reads the same."""
    store = await open_pg()
    schema = sql.Identifier((await store.info())["schema"])
    await store.checkpoints.save("t", meta("t", "c1", attributes={"step": 1}), b"state")
    async with await admin(postgres_url) as conn:
        stored = sql.SQL("SELECT metadata FROM {}.checkpoints WHERE checkpoint_id = 'c1'").format(schema)
        row = await (await conn.execute(stored)).fetchone()
        assert row is not None and not {"id", "thread_id", "state_size"} & set(row[0])
        old = sql.SQL(
            "INSERT INTO {}.checkpoints (thread_id, checkpoint_id, metadata, state) "
            "VALUES ('t', 'c0', %s, 'xy')"
        ).format(schema)
        await conn.execute(old, (meta("t", "c0", state_size=2).model_dump_json(),))
    for checkpoint_id, size in (("c1", 5), ("c0", 2)):
        loaded = (await store.checkpoints.load("t", checkpoint_id)).metadata
        assert (loaded.id, loaded.thread_id, loaded.state_size) == (checkpoint_id, "t", size)
        bundle = await store.checkpoints.load_full("t", checkpoint_id)
        assert bundle is not None and bundle.metadata == loaded
    listed = await store.checkpoints.list("t")
    assert [(m.id, m.state_size) for m in listed] == [("c1", 5), ("c0", 2)]
    assert (await store.checkpoints.load_latest("t")).metadata.id == "c0"
