"""RelaySession (OpenAI Agents SDK ``Session``) on every backend: the cases of the SDK's own
session suites (direct ops, limits, pop, isolation, Unicode, injection strings, concurrency,
corrupt data, settings) plus relaystore's own (batches split by pop, interrupted pops, processes).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")

from agents.memory import Session, SessionSettings

from relaystore.errors import InvalidInput
from relaystore.integrations.openai_agents import ITEMS_KEY, LABEL, REPLACES_KEY, RelaySession
from relaystore.models.checkpoints import CheckpointMetadata
from relaystore.stores import Store
from tests.conformance.factories import discover

FACTORIES = discover()
ROOT = Path(__file__).resolve().parents[2]


def msg(text: str, role: str = "user") -> dict[str, Any]:
    return {"role": role, "content": text}


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    module = FACTORIES[request.param]
    reason = module.unavailable()
    if reason:
        pytest.skip(f"{request.param}: {reason}")
    async with module.fresh(tmp_path) as opened:
        yield opened


async def test_satisfies_the_protocol_and_keeps_order(store: Store) -> None:
    session = RelaySession("s1", store)
    assert isinstance(session, Session)
    assert session.session_id == "s1"
    assert await session.get_items() == []
    await session.add_items([msg("a"), msg("b", "assistant")])
    await session.add_items([msg("c")])
    await session.add_items([])
    assert [i["content"] for i in await session.get_items()] == ["a", "b", "c"]


async def test_limit_semantics(store: Store) -> None:
    session = RelaySession("lim", store)
    await session.add_items([msg(str(n)) for n in range(3)])
    await session.add_items([msg(str(n)) for n in range(3, 6)])
    contents = lambda items: [i["content"] for i in items]  # noqa: E731
    assert contents(await session.get_items(4)) == ["2", "3", "4", "5"]  # newest 4, oldest first
    assert contents(await session.get_items(1)) == ["5"]
    assert contents(await session.get_items(100)) == [str(n) for n in range(6)]
    assert await session.get_items(0) == []
    with pytest.raises(InvalidInput, match="negative"):
        await session.get_items(-1)
    with pytest.raises(InvalidInput):
        await session.get_items("3")  # type: ignore[arg-type]


async def test_session_settings_limit_and_override(store: Store) -> None:
    session = RelaySession("set", store, session_settings={"limit": 2})
    assert session.session_settings == SessionSettings(limit=2)
    await session.add_items([msg(str(n)) for n in range(5)])
    assert [i["content"] for i in await session.get_items()] == ["3", "4"]
    assert len(await session.get_items(limit=4)) == 4
    with pytest.raises(TypeError, match="Unknown session settings"):
        RelaySession("bad", store, session_settings={"limitt": 1})


async def test_pop_really_deletes_newest_across_batches(store: Store) -> None:
    session = RelaySession("pop", store)
    assert await session.pop_item() is None
    await session.add_items([msg("a"), msg("b"), msg("c")])
    await session.add_items([msg("d")])
    assert (await session.pop_item())["content"] == "d"  # type: ignore[index]
    assert (await session.pop_item())["content"] == "c"  # type: ignore[index]  # splits the batch
    await session.add_items([msg("e")])
    assert [i["content"] for i in await session.get_items()] == ["a", "b", "e"]
    assert [(await session.pop_item())["content"] for _ in range(3)] == ["e", "b", "a"]  # type: ignore[index]
    assert await session.pop_item() is None
    assert await store.checkpoints.count(session.thread_id) == 0  # nothing left behind


async def test_an_interrupted_pop_never_shows_an_item_twice(store: Store) -> None:
    session = RelaySession("torn", store)
    await session.add_items([msg("a"), msg("b"), msg("c")])
    old = await store.checkpoints.head(session.thread_id)
    assert old is not None
    # a pop that saved the remainder and stopped before deleting the old checkpoint
    torn = CheckpointMetadata(
        id="remainder",
        thread_id=session.thread_id,
        label=LABEL,
        custom={
            ITEMS_KEY: '[{"role":"user","content":"a"},{"role":"user","content":"b"}]',
            REPLACES_KEY: old,
        },
    )
    await store.checkpoints.save(session.thread_id, torn, b"")
    assert [i["content"] for i in await session.get_items()] == ["a", "b"]
    assert [i["content"] for i in await session.get_items(5)] == ["a", "b"]
    assert (await session.pop_item())["content"] == "b"  # type: ignore[index]
    assert [i["content"] for i in await session.get_items()] == ["a"]  # the old one is gone for good


async def test_items_round_trip_exactly(store: Store) -> None:
    session = RelaySession("rt", store)
    items: list[Any] = [
        {
            "role": "user",
            "content": "こんにちは 😊 🚀 naïve",
            "nested": {"a": [1, 2.5, None, True], "b": {"c": ""}},
        },
        {"role": "assistant", "content": '\'; DROP TABLE agent_messages; -- "quotes" \\ back\\slash \x01'},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x": 1}'},
        {"role": "user", "content": "\ud800 lone surrogate"},
    ]
    await session.add_items(items)
    got = await session.get_items()
    assert got == items
    got[0]["nested"]["a"].append("mutated")
    assert await session.get_items() == items  # new objects each call


async def test_items_that_are_not_json_are_refused(store: Store) -> None:
    session = RelaySession("bad", store)
    with pytest.raises(InvalidInput, match="not JSON"):
        await session.add_items([{"role": "user", "content": object()}])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        await session.add_items("not a list")  # type: ignore[arg-type]
    assert await session.get_items() == []


async def test_sessions_are_isolated_and_clear_is_reusable(store: Store) -> None:
    one, two = RelaySession("one", store), RelaySession("two", store)
    await one.add_items([msg("1")])
    await two.add_items([msg("2")])
    assert await one.pop_item() == msg("1")
    assert await two.get_items() == [msg("2")]
    await two.clear_session()
    assert await two.get_items() == []
    await two.add_items([msg("again")])
    assert await two.get_items() == [msg("again")]


async def test_corrupt_items_are_skipped_and_do_not_count(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    session = RelaySession("corrupt", store)
    await session.add_items([msg("old")])
    await session.add_items([msg("kept")])
    for n, bad in enumerate(['{"truncated', '{"not": "a list"}']):
        record = CheckpointMetadata(
            id=f"bad{n}", thread_id=session.thread_id, label=LABEL, custom={ITEMS_KEY: bad}
        )
        await store.checkpoints.save(session.thread_id, record, b"")
    with caplog.at_level(logging.WARNING, logger="relaystore"):
        assert await session.get_items(limit=2) == [msg("old"), msg("kept")]
    assert "skipping session items" in caplog.text
    assert await session.get_items() == [msg("old"), msg("kept")]
    assert await session.pop_item() == msg("kept")  # the corrupt newest ones are dropped first
    assert await store.checkpoints.count(session.thread_id) == 1


async def test_eight_concurrent_writers_lose_nothing_and_keep_order(store: Store) -> None:
    sessions = [RelaySession("busy", store) for _ in range(8)]

    async def write(writer: int, session: RelaySession) -> None:
        for n in range(5):
            await session.add_items([msg(f"{writer}:{n}:q"), msg(f"{writer}:{n}:a", "assistant")])

    await asyncio.gather(*(write(w, s) for w, s in enumerate(sessions)))
    contents = [i["content"] for i in await sessions[0].get_items()]
    assert len(contents) == 80
    for writer in range(8):
        mine = [c for c in contents if c.startswith(f"{writer}:")]
        assert mine == [f"{writer}:{n}:{part}" for n in range(5) for part in ("q", "a")]
    for at in range(0, 80, 2):  # each add_items call landed whole
        assert contents[at].endswith(":q") and contents[at + 1] == contents[at][:-1] + "a"


async def test_concurrent_pops_return_each_item_once(store: Store) -> None:
    session = RelaySession("pops", store)
    await session.add_items([msg(str(n)) for n in range(6)])
    await session.add_items([msg(str(n)) for n in range(6, 10)])
    popped = await asyncio.gather(*(RelaySession("pops", store).pop_item() for _ in range(12)))
    got = sorted(int(p["content"]) for p in popped if p is not None)  # type: ignore[index]
    assert got == list(range(10))
    assert popped.count(None) == 2
    assert await session.get_items() == []


async def test_a_closed_session_refuses_every_call(tmp_path: Path) -> None:
    session = RelaySession("closing", f"sqlite:///{tmp_path}/c.db")
    await session.add_items([msg("x")])
    await session.close()
    for call in (session.get_items(), session.add_items([]), session.pop_item(), session.clear_session()):
        with pytest.raises(RuntimeError, match="closed"):
            await call
    async with RelaySession("closing", f"sqlite:///{tmp_path}/c.db") as again:
        assert await again.get_items() == [msg("x")]


def test_a_url_session_works_from_any_event_loop(tmp_path: Path) -> None:
    session = RelaySession("loops", f"sqlite:///{tmp_path}/loops.db")
    asyncio.run(session.add_items([msg("first loop")]))
    asyncio.run(session.add_items([msg("second loop")]))
    assert asyncio.run(session.get_items()) == [msg("first loop"), msg("second loop")]
    asyncio.run(session.close())


def test_eight_writers_in_two_processes_share_one_sqlite_session(tmp_path: Path) -> None:
    """Two processes (each import of the SDK costs seconds), four concurrent sessions each."""
    url = f"sqlite:///{tmp_path}/shared.db"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from relaystore.integrations.openai_agents import RelaySession
        async def write(writer):
            async with RelaySession("shared", {url!r}) as session:
                for n in range(10):
                    await session.add_items([{{"role": "user", "content": f"{{writer}}:{{n}}"}}])
        async def main(process):
            await asyncio.gather(*(write(process * 4 + task) for task in range(4)))
        asyncio.run(main(int(sys.argv[1])))
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script, str(p)]) for p in range(2)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]

    async def read() -> list[Any]:
        async with RelaySession("shared", url) as session:
            return await session.get_items()

    contents = [i["content"] for i in asyncio.run(read())]
    assert sorted(contents) == sorted(f"{w}:{n}" for w in range(8) for n in range(10))
    for writer in range(8):
        assert [c for c in contents if c.startswith(f"{writer}:")] == [f"{writer}:{n}" for n in range(10)]


def test_without_the_extra_the_import_error_names_it() -> None:
    code = "import sys; sys.modules['agents'] = None; import relaystore.integrations.openai_agents"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pip install 'relaystore[openai-agents]'" in done.stderr.strip().splitlines()[-1]
