"""The RESP listener with redis-py and raw sockets: commands, scope, transactions, bad input.

Each test runs a listener in its own event loop on a fresh SQLite store (conftest ``listener``).
"""

from __future__ import annotations

import asyncio
import json
import resource
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from typer.testing import CliRunner

import relaystore
from relaystore.cli import app
from relaystore.server.resp import RespListener
from relaystore.server.tokens import issue_adaptive_token, issue_token, store_id
from relaystore.stores import Store
from tests.server.resp.conftest import ADMIN, SIGNING_KEY

P = "nemo_relay:"


def run_json(agent: str, run_id: str | None = None) -> str:
    return json.dumps(
        {
            "id": run_id or str(uuid.uuid4()),
            "agent_id": agent,
            "calls": [],
            "started_at": "2026-11-21T10:17:12Z",
        }
    )


def client(listener: RespListener, password: str = ADMIN, **options: object) -> aioredis.Redis:
    return aioredis.Redis(port=listener.port, password=password, **options)  # type: ignore[arg-type]


def adaptive_token(listener: RespListener, tmp_path: Path, *agents: str) -> str:
    return issue_adaptive_token(
        SIGNING_KEY, agents=agents, audience=store_id(f"sqlite:///{tmp_path}/resp.db")
    )


async def raw(listener: RespListener, data: bytes, *, read_until_eof: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(data)
        await writer.drain()
        if read_until_eof:
            return await asyncio.wait_for(reader.read(), 10)
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


def command(*parts: bytes | str) -> bytes:
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


# --------------------------------------------------------------------------- commands


async def test_strings_lists_ttl_and_inspection(listener: RespListener, store: Store) -> None:
    r = client(listener)
    try:
        assert await r.set("cache:sha256:ab", '{"response":1}', px=120_000) is True
        assert 119 <= await r.ttl("cache:sha256:ab") <= 120
        assert await r.set("cache:sha256:ab", "x", nx=True) is None
        assert await r.set("fresh", "y", xx=True) is None
        assert await r.rpush("list", "a", "b", "c") == 3
        assert await r.lrange("list", -2, 10) == [b"b", b"c"] and await r.llen("list") == 3
        assert await r.type("list") == b"list" and await r.type("cache:sha256:ab") == b"string"
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await r.get("list")
        assert await r.exists("list", "nope", "list") == 2
        assert await r.keys("cache:*") == [b"cache:sha256:ab"] and await r.dbsize() == 2
        assert await r.expire("list", 50) and 0 < await r.pttl("list") <= 50_000
        assert await r.delete("list", "nope") == 1 and await r.ttl("list") == -2
        assert await r.echo("hi") == b"hi" and (await r.info())["redis_mode"] == "standalone"
    finally:
        await r.aclose()
    item = await store.items.get(("resp", "0"), "cache:sha256:ab")  # the generic area is store.items
    assert item is not None and item.value == {"s": '{"response":1}'} and item.ttl == pytest.approx(120)


async def test_the_generic_area_shows_in_the_cli(listener: RespListener, tmp_path: Path) -> None:
    r = client(listener)
    try:
        await r.set("cache:k", "v", ex=60)
    finally:
        await r.aclose()
    argv = ["memory", "get", "resp.0", "cache:k", "--url", f"sqlite:///{tmp_path}/resp.db"]
    shown = await asyncio.to_thread(CliRunner().invoke, app, argv)  # the CLI runs its own event loop
    assert shown.exit_code == 0 and '"s"' in shown.output and "v" in shown.output, shown.output


async def test_adaptive_documents_go_to_store_adaptive(listener: RespListener, store: Store) -> None:
    r = client(listener, protocol=3)
    stability = {"scores": [], "stable_prefix_length": 0, "total_observations": 0}
    try:
        assert await r.set(f"{P}acg_stability:a::model=m", json.dumps(stability))
        assert json.loads(await r.get(f"{P}acg_stability:a::model=m")) == stability
        assert await r.get(f"{P}plan:a") is None
        with pytest.raises(ResponseError, match="not a valid plan document"):
            await r.set(f"{P}plan:a", '{"agent_id": "a"}')
        with pytest.raises(ResponseError, match="does not expire"):
            await r.set(f"{P}acg_stability:a", json.dumps(stability), px=10)
        with pytest.raises(ResponseError, match="not the key's a:"):
            await r.set(f"{P}runs:a:{uuid.uuid4()}", run_json("b"))
        with pytest.raises(ResponseError, match="runs_index lists stored runs only"):
            await r.rpush(f"{P}runs_index:a", str(uuid.uuid4()))
        with pytest.raises(ResponseError, match="retention"):
            await r.delete(f"{P}runs_index:a")
        assert await r.keys(f"{P}*") == [f"{P}acg_stability:a::model=m".encode()]
    finally:
        await r.aclose()
    assert (await store.adaptive.load_stability("a::model=m")).total_observations == 0  # type: ignore[union-attr]
    assert await store.adaptive.load_plan("a") is None


async def test_the_runtimes_multi_is_one_store_run(listener: RespListener, store: Store) -> None:
    run_id = str(uuid.uuid4())
    block = (
        command("MULTI")
        + command("SET", f"{P}runs:a:{run_id}", run_json("a", run_id))
        + command("RPUSH", f"{P}runs_index:a", run_id)
        + command("EXEC")
    )
    auth = command("AUTH", ADMIN) + command("CLIENT", "SETINFO", "LIB-NAME", "redis-rs")
    assert (
        await raw(listener, auth + block) == b"+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n"
    )
    assert [str(r.id) for r in await store.adaptive.list_runs("a")] == [run_id]


async def test_a_refused_multi_writes_nothing(listener: RespListener, store: Store) -> None:
    r = client(listener)
    try:
        for queued in (
            [("SET", f"{P}runs:a:{uuid.uuid4()}", '{"id": 1}')],  # not a RunRecord
            [("SET", f"{P}runs:a:{uuid.uuid4()}", run_json("a")), ("SET", "other", "x")],  # two changes
            [("SET", "k", "x"), ("RPUSH", f"{P}runs_index:a", str(uuid.uuid4()))],  # index of no run
        ):
            pipe = r.pipeline(transaction=True)
            for args in queued:
                pipe.execute_command(*args)
            with pytest.raises(ResponseError, match="Transaction discarded"):
                await pipe.execute()
        assert await r.dbsize() == 0
    finally:
        await r.aclose()
    assert await store.adaptive.count_runs("a") == 0


async def test_ok_is_sent_after_the_commit(listener: RespListener, tmp_path: Path) -> None:
    r = client(listener)
    try:
        assert await r.set(f"{P}acg_observations:a", "[]")
        async with relaystore.connect(f"sqlite:///{tmp_path}/resp.db") as other:  # another connection
            assert await other.adaptive.load_observations("a") == []
    finally:
        await r.aclose()


async def test_hello_3_select_and_noauth(listener: RespListener) -> None:
    hello = await raw(listener, command("HELLO", "3", "AUTH", "default", ADMIN) + command("GET", "missing"))
    assert hello.startswith(b"%7\r\n") and b"proto\r\n:3\r\n" in hello and hello.endswith(b"_\r\n")
    assert await raw(listener, command("GET", "k")) == b"-NOAUTH Authentication required.\r\n"
    selected = await raw(listener, command("AUTH", ADMIN) + command("SELECT", "0") + command("SELECT", "1"))
    assert selected.startswith(b"+OK\r\n+OK\r\n-ERR DB index is out of range")


# --------------------------------------------------------------------------- bad input


async def test_wrong_password(listener: RespListener, tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError):
        await client(listener, password="not-the-token", retry=Retry(NoBackoff(), 0)).ping()  # no retries
    assert (await raw(listener, command("HELLO", "3", "AUTH", "default", "nope"))).startswith(b"-WRONGPASS")
    outputs_token = issue_token(
        SIGNING_KEY, task="t", attempt=0, producer="p", audience=store_id(f"sqlite:///{tmp_path}/resp.db")
    )
    assert (await raw(listener, command("AUTH", outputs_token))).startswith(b"-WRONGPASS")


async def test_an_adaptive_token_is_scoped_to_its_agents(listener: RespListener, tmp_path: Path) -> None:
    admin = client(listener)
    r = client(listener, adaptive_token(listener, tmp_path, "a"))
    try:
        await admin.set(f"{P}acg_observations:b", "[]")
        assert await r.set(f"{P}acg_observations:a::model=m", "[]") and await r.set("a:cache", "1")
        for key in (f"{P}acg_observations:b", f"{P}plan:b", "b:cache", "cache"):
            with pytest.raises(NoPermissionError):
                await r.get(key)
        assert sorted(await r.keys("*")) == [b"a:cache", f"{P}acg_observations:a::model=m".encode()]
        assert await r.ping()  # still connected after the refusals
    finally:
        await r.aclose()
        await admin.aclose()


async def test_unknown_command_keeps_the_connection(listener: RespListener) -> None:
    r = client(listener, single_connection_client=True)
    try:
        with pytest.raises(ResponseError, match="unknown command 'flushall'"):
            await r.execute_command("FLUSHALL")
        with pytest.raises(ResponseError, match="wrong number of arguments"):
            await r.execute_command("GET")
        assert await r.ping()
    finally:
        await r.aclose()


async def test_a_malformed_frame_closes_only_its_connection(listener: RespListener) -> None:
    bystander = client(listener, single_connection_client=True)
    try:
        assert await bystander.ping()
        reply = await raw(
            listener, command("AUTH", ADMIN) + b"*2\r\n$3\r\nGET\r\n$x\r\n", read_until_eof=True
        )
        assert reply.startswith(b"+OK\r\n-ERR Protocol error")  # then EOF: the server closed it
        reply = await raw(listener, b"*1\r\n:5\r\n", read_until_eof=True)
        assert reply.startswith(b"-ERR Protocol error")
        assert await bystander.set("still", "here") and await bystander.get("still") == b"here"
    finally:
        await bystander.aclose()


async def test_an_oversized_bulk_string_closes_its_connection(listener: RespListener) -> None:
    big = 200_000  # the fixture's limit is 64 KiB
    head = command("AUTH", ADMIN) + b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % big
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(head + b"x" * big + b"\r\n")
        reply = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert reply.startswith(b"+OK\r\n-ERR Protocol error: a command over the 65536-byte limit")
    r = client(listener)
    try:
        assert await r.exists("k") == 0 and await r.ping()
    finally:
        await r.aclose()


async def test_a_thousand_idle_connections_do_not_stall_it(listener: RespListener) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2300:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    idle = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(1000)]
    try:
        idle[0][1].write(b"*2\r\n$4\r\nAUTH")  # half a command, never finished
        r = client(listener)
        try:
            assert await asyncio.wait_for(r.set("busy", "yes"), 10)
            assert await asyncio.wait_for(r.get("busy"), 10) == b"yes"
        finally:
            await r.aclose()
    finally:
        for _, writer in idle:
            writer.close()


async def test_concurrent_connections_each_keep_their_runs(listener: RespListener, store: Store) -> None:
    async def agent_runs(agent: str) -> None:
        r = client(listener, single_connection_client=True)
        try:
            for _ in range(5):
                run_id = str(uuid.uuid4())
                pipe = r.pipeline(transaction=True)
                pipe.set(f"{P}runs:{agent}:{run_id}", run_json(agent, run_id))
                pipe.rpush(f"{P}runs_index:{agent}", run_id)
                assert (await pipe.execute())[0] is True
        finally:
            await r.aclose()

    agents = [f"agent-{k}" for k in range(8)]
    await asyncio.gather(*(agent_runs(a) for a in agents))  # their commits may share a group
    assert [await store.adaptive.count_runs(a) for a in agents] == [5] * len(agents)
