"""Redis-specific behaviour the conformance suite cannot see: the key layout shared with NeMo
Relay, round trips, TTL, concurrency across connections and failure handling."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

import relaystore
import relaystore.backends.redis as redis_backend
from relaystore import backends
from relaystore.backends._policy import describe
from relaystore.backends.redis.connection import RedisConnection
from relaystore.backends.redis.layout import AdaptiveKeys, encode, glob_escape
from relaystore.backends.redis.scripts import LUA_ENCODE
from relaystore.backends.redis.url import RedisOptions, parse_url
from relaystore.errors import BackendUnavailable, CorruptRecord, InvalidInput
from relaystore.models import AccumulatorState, PendingWrite
from relaystore.stores import Store
from relaystore.testing import docs
from tests.support.redis_stores import purge
from tests.support.services import free_port, start_redis

AGENT = "team:alpha/agent-1"


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    name = f"rstest:{uuid.uuid4().hex}:"
    yield name
    await purge(redis_url, name)


@pytest.fixture
async def store(redis_url: str, prefix: str) -> AsyncIterator[Store]:
    async with relaystore.connect(redis_url, prefix=prefix) as opened:
        yield opened


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def count_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the key of every round trip any Redis store makes, in order."""
    calls: list[str] = []
    original = RedisConnection.call

    async def counting(self: RedisConnection, key: str, fn: Any) -> Any:
        calls.append(key)
        return await original(self, key, fn)

    monkeypatch.setattr(RedisConnection, "call", counting)
    return calls


def _run(agent: str) -> dict[str, Any]:
    return docs.as_json(docs.run_record(agent))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- URLs


def test_url_options() -> None:
    config = parse_url("redis://u:p%40ss@h:7000/3?prefix=x:&ttl=60&timeout=1.5", {})
    assert (config.hosts, config.db, config.username) == ((("h", 7000),), 3, "u")
    assert config.password is not None and config.password.get_secret_value() == "p@ss"
    assert "p%40ss" not in config.url and "p@ss" not in str(config.model_dump(mode="json"))
    assert (config.prefix, config.ttl, config.timeout, config.cluster) == ("x:", 60, 1.5, False)
    assert parse_url("redis://h", {}).prefix == "nemo_relay:"
    cluster = parse_url("redis+cluster://a:1,b:2", {"prefix": "k:"})
    assert cluster.cluster and cluster.hosts == (("a", 1), ("b", 2)) and cluster.prefix == "k:"
    assert parse_url("rediss://h:1?cluster=1", {}).cluster and parse_url("rediss://h:1", {}).tls


def test_the_parse_url_entry_gives_typed_options_without_the_password() -> None:
    parsed = backends.parse_url("rediss://u:s3cret@h:1/0?cluster=1", prefix="p:", ttl=5)
    assert isinstance(parsed, RedisOptions) and (parsed.prefix, parsed.ttl, parsed.tls) == ("p:", 5, True)
    assert parsed.url == "rediss://u@h:1/0?cluster=1"
    assert "s3cret" not in json.dumps(describe(parsed))
    # the RESP listener (issue 19) reuses NeMo Relay's key layout from the package
    assert redis_backend.AdaptiveKeys is AdaptiveKeys


@pytest.mark.parametrize(
    "url",
    [
        "redis://h?nope=1",
        "redis://h?ttl=0",
        "redis://h?timeout=x",
        "redis://h/db",
        "redis://a:1,b:2",
        "redis+cluster://a:1/2",
        "redis://h?cluster=maybe",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidInput):
        parse_url(url, {})


# --------------------------------------------------------------------------- NeMo Relay's layout


async def test_adaptive_keys_are_nemo_relays(store: Store, raw: Redis, prefix: str) -> None:
    first, second = _run(AGENT), _run(AGENT)
    for record in (first, second):
        await store.adaptive.store_run(record)
    await store.adaptive.store_accumulators(AGENT, AccumulatorState())
    assert [r.decode() for r in await raw.lrange(f"{prefix}runs_index:{AGENT}", 0, -1)] == [
        first["id"],
        second["id"],
    ]
    stored = json.loads(await raw.get(f"{prefix}runs:{AGENT}:{first['id']}"))
    assert stored == first
    assert await raw.type(f"{prefix}accumulators:{AGENT}") == b"string"
    assert await raw.ttl(f"{prefix}runs:{AGENT}:{first['id']}") == -1  # as NeMo Relay: no TTL


async def test_runs_written_the_nemo_relay_way_are_listed_and_dangling_ids_skipped(
    store: Store, raw: Redis, prefix: str
) -> None:
    records = [_run(AGENT) for _ in range(3)]
    for record in records:  # exactly what NeMo Relay's store_run does: SET + RPUSH in MULTI
        async with raw.pipeline(transaction=True) as pipe:
            pipe.set(f"{prefix}runs:{AGENT}:{record['id']}", json.dumps(record))
            pipe.rpush(f"{prefix}runs_index:{AGENT}", record["id"])
            await pipe.execute()
    await raw.delete(f"{prefix}runs:{AGENT}:{records[1]['id']}")
    page = await store.adaptive.list_runs(AGENT, limit=1)
    assert [r.id for r in page] == [records[0]["id"]]
    rest = await store.adaptive.list_runs(AGENT, limit=1, cursor=page.next_cursor)
    assert [r.id for r in rest] == [records[2]["id"]]  # the gap did not end the page early
    assert await store.adaptive.list_agents() == [AGENT]


async def test_cursor_survives_prune(store: Store) -> None:
    records = [_run(AGENT) for _ in range(6)]
    for record in records:
        await store.adaptive.store_run(record)
    page = await store.adaptive.list_runs(AGENT, limit=4)
    assert await store.adaptive.prune_runs(AGENT, keep=3) == 3
    rest = await store.adaptive.list_runs(AGENT, cursor=page.next_cursor)
    assert [r.id for r in rest] == [r["id"] for r in records[4:]]
    assert await store.adaptive.count_runs(AGENT) == 3


async def test_list_runs_takes_two_round_trips(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(300):
        await store.adaptive.store_run(_run(AGENT))
    calls = count_round_trips(monkeypatch)
    assert len(await store.adaptive.list_runs(AGENT)) == 300
    assert len(calls) == 2  # the id range (a script), then one MGET
    calls.clear()
    await store.adaptive.list_runs(AGENT, limit=50)
    assert len(calls) == 2


async def test_hash_reads_go_in_chunks_of_500(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    attachments = {f"k{i:04}": b"v" for i in range(1001)}
    await store.checkpoints.put_attachments("t", attachments)
    calls = count_round_trips(monkeypatch)
    assert await store.checkpoints.get_attachments("t", [*attachments, "missing"]) == attachments
    assert len(calls) == 3  # 1,002 fields: HMGETs of 500, 500 and 2


async def test_ttl_expires_runs(redis_url: str, prefix: str, raw: Redis) -> None:
    async with relaystore.connect(f"{redis_url}?ttl=100", prefix=prefix) as store:
        record = _run(AGENT)
        await store.adaptive.store_run(record)
        await store.adaptive.store_plan(docs.execution_plan(AGENT))
    assert 0 < await raw.ttl(f"{prefix}runs:{AGENT}:{record['id']}") <= 100
    assert 0 < await raw.ttl(f"{prefix}runs_index:{AGENT}") <= 100
    assert await raw.ttl(f"{prefix}plan:{AGENT}") == -1  # documents never expire


async def test_wrong_redis_type_is_a_corrupt_record(store: Store, raw: Redis, prefix: str) -> None:
    await raw.rpush(f"{prefix}plan:{AGENT}", "x")
    with pytest.raises(CorruptRecord) as info:
        await store.adaptive.load_plan(AGENT)
    assert info.value.key == f"{prefix}plan:{AGENT}"


# --------------------------------------------------------------------------- checkpoint extras

AWKWARD_IDS = ["a", "ab", "abc", "abcd", "x:{cp}|y", "é", "日本語の id", "\U0001f600" * 3, "z" * 1000]


async def test_lua_encoder_names_the_same_keys_as_python(raw: Redis) -> None:
    # prune and delete_thread build writes keys in Lua: a mismatch would orphan them silently
    script = LUA_ENCODE + "return encode(ARGV[1])"
    for text in AWKWARD_IDS:
        assert (await raw.eval(script, 0, text)).decode() == encode(text)


async def test_cascades_leave_no_writes_or_attachment_keys(store: Store, raw: Redis, prefix: str) -> None:
    writes = [PendingWrite(task_id="t|1", idx=0, channel="c", value=b"v")]
    for thread in ("t1", "t2"):
        for checkpoint_id in AWKWARD_IDS:
            await store.checkpoints.save(thread, docs.checkpoint(thread, checkpoint_id), b"s")
            await store.checkpoints.put_writes(thread, checkpoint_id, writes)
        await store.checkpoints.put_attachments(thread, {"k": b"v"})
    stem = store.checkpoints._keys("t1").writes_stem  # type: ignore[attr-defined]
    assert await raw.exists(stem + encode("日本語の id"))
    await store.checkpoints.delete("t1", "a")
    await store.checkpoints.prune("t1", keep=2)
    assert len([k async for k in raw.scan_iter(glob_escape(stem) + "*")]) == 2
    await store.checkpoints.delete_thread("t1")
    await store.checkpoints.delete_thread("t2")
    assert [k async for k in raw.scan_iter(glob_escape(prefix) + "*")] == [f"{prefix}rs:{{cp}}:seq".encode()]


async def test_corrupt_pending_write_names_key_and_field(store: Store, raw: Redis) -> None:
    await store.checkpoints.save("t1", docs.checkpoint("t1", "c1"), b"s")
    key = store.checkpoints._keys("t1").writes("c1")  # type: ignore[attr-defined]
    await raw.hset(key, "dA|0", b"{not json")
    with pytest.raises(CorruptRecord) as info:
        await store.checkpoints.list_writes("t1", "c1")
    assert info.value.key == f"{key}[dA|0]"


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_updaters_on_separate_connections_lose_nothing(redis_url: str, prefix: str) -> None:
    updaters, rounds = 8, 15
    stores = [await relaystore.connect(redis_url, prefix=prefix) for _ in range(updaters)]

    async def work(store: Store) -> None:
        for _ in range(rounds):
            await store.adaptive.update_accumulators(AGENT, docs.incremented)

    try:
        await asyncio.gather(*(work(s) for s in stores))
        assert docs.counter_of(await stores[0].adaptive.load_accumulators(AGENT)) == updaters * rounds
    finally:
        for opened in stores:
            await opened.close()


# --------------------------------------------------------------------------- failures


async def test_unreachable_server_at_open() -> None:
    with pytest.raises(BackendUnavailable):
        await relaystore.connect(f"redis://127.0.0.1:{free_port()}/0?timeout=2")


async def test_server_loss_then_recovery() -> None:
    server = start_redis()
    try:
        store = await relaystore.connect(server.url, prefix="p:", timeout=2)
        await store.adaptive.store_run(_run(AGENT))
        server.stop()
        with pytest.raises(BackendUnavailable):
            await store.adaptive.count_runs(AGENT)
        server = start_redis(port=server.port)
        assert await store.adaptive.count_runs(AGENT) == 0  # reconnected (to an empty new server)
        await store.close()
    finally:
        server.stop()


async def test_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(BackendUnavailable):
            await relaystore.connect(f"redis://127.0.0.1:{port}/0", timeout=0.3)


# --------------------------------------------------------------------------- cluster


async def test_cluster_keeps_an_agents_keys_in_one_slot_and_nemo_layout_would_not() -> None:
    from redis.asyncio.cluster import RedisCluster
    from redis.exceptions import ResponseError

    from tests.conformance.factories import redis_cluster

    if reason := redis_cluster.unavailable():
        pytest.skip(reason)
    url = redis_cluster.cluster().url
    prefix = f"rstest:{uuid.uuid4().hex}:"
    host, _, port = url.removeprefix("redis+cluster://").split(",")[0].partition(":")
    raw = RedisCluster(host=host, port=int(port))
    try:
        async with relaystore.connect(url, prefix=prefix) as store:
            record = _run(AGENT)
            await store.adaptive.store_run(record)
            keys = [key async for key in raw.scan_iter(match=f"{prefix}*")]
            assert len(keys) == 2  # the run and its index (no prune yet, so no counter)
            assert len({raw.keyslot(k) for k in keys}) == 1
            assert [r.id for r in await store.adaptive.list_runs(AGENT)] == [record["id"]]
        # NeMo Relay's store_run: MULTI over its untagged run and index keys, which hash apart
        run_key, index_key = f"{prefix}runs:{AGENT}:x", f"{prefix}runs_index:{AGENT}"
        assert raw.keyslot(run_key) != raw.keyslot(index_key)
        node = raw.get_node_from_key(f"{prefix}runs:{AGENT}:x")
        direct = Redis(host=node.host, port=node.port)
        try:
            async with direct.pipeline(transaction=True) as pipe:
                pipe.set(f"{prefix}runs:{AGENT}:x", "{}")
                pipe.rpush(f"{prefix}runs_index:{AGENT}", "x")
                with pytest.raises(ResponseError):  # MOVED / CROSSSLOT: the transaction is refused
                    await pipe.execute()
        finally:
            await direct.aclose()
    finally:
        await purge(url, prefix)
        await raw.aclose()
