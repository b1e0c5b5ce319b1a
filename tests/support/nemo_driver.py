"""Drive the real NeMo Relay runtime (PyPI ``nemo-relay``) so that it writes adaptive state to Redis.

Run as a script in its own process (the runtime keeps process-global state)::

    python -m tests.support.nemo_driver REDIS_URL PREFIX AGENT RUNS [--workload varied|demo] [--seed N]

or from a test with :func:`drive`, which does exactly that and returns when the runtime is idle.

Workloads:

- ``demo``: the spec's run shape: planner LLM, two parallel tools, writer LLM.
- ``varied``: per run, a seeded mix of 3 LLM names with different call counts, varying completion
  tokens, parallel and sequential tools, and requests with and without system prompts and tools.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Web search",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
FETCH = {
    "type": "function",
    "function": {
        "name": "fetch",
        "description": "Fetch a URL",
        "parameters": {"type": "object", "properties": {"url": {"type": "string"}}},
    },
}
SYSTEM = "You are a careful research planner. Always cite sources."


def drive(
    redis_url: str,
    prefix: str,
    agent: str,
    runs: int,
    workload: str = "varied",
    seed: int = 0,
    timeout: float = 300,
) -> None:
    """Run the driver in a subprocess; raise ``RuntimeError`` with its stderr if it failed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.nemo_driver",
            redis_url,
            prefix,
            agent,
            str(runs),
            "--workload",
            workload,
            "--seed",
            str(seed),
        ],
        cwd=ROOT,
        env=env,
        timeout=timeout,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"nemo-relay driver failed ({done.returncode}):\n{done.stderr[-4000:]}")


def _request(model: str, text: str, *, system: bool, tools: list[dict]) -> dict:
    messages = [{"role": "system", "content": SYSTEM}] if system else []
    messages.append({"role": "user", "content": text})
    body: dict = {"model": model, "messages": messages}
    if tools:
        body["tools"] = tools
    return body


def _fake_llm(model: str, completion_tokens: int, delay: float):  # type: ignore[no-untyped-def]
    async def call(_request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(delay)
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "ok " * completion_tokens},
                }
            ],
            "usage": {
                "prompt_tokens": 42,
                "completion_tokens": completion_tokens,
                "total_tokens": 42 + completion_tokens,
            },
        }

    return call


async def _main(url: str, prefix: str, agent: str, runs: int, workload: str, seed: int) -> None:
    import nemo_relay as nr
    from nemo_relay import LLMRequest, ScopeType, codecs, llm, scope, tools
    from nemo_relay import adaptive as ad

    codec = {"codec": codecs.OpenAIChatCodec(), "response_codec": codecs.OpenAIChatCodec()}
    rng = random.Random(seed)

    async def tool(args):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.03)
        return nr.ToolExecutionResult({"results": [args]})

    async def call_llm(
        name: str,
        model: str,
        text: str,
        tokens: int,
        *,
        system: bool,
        tool_list: list[dict],
        delay: float = 0.02,
    ) -> None:
        request = LLMRequest({}, _request(model, text, system=system, tools=tool_list))
        await llm.execute(name, request, _fake_llm(model, tokens, delay), **codec)

    async def demo_run(i: int) -> None:
        await call_llm(
            "planner",
            "gpt-4.1-mini",
            f"Research topic number {i}",
            17,
            system=True,
            tool_list=[SEARCH],
            delay=0.05,
        )
        await asyncio.sleep(0.02)
        await asyncio.gather(
            tools.execute("search", {"q": f"a{i}"}, tool),
            tools.execute("fetch", {"url": f"https://x/{i}"}, tool),
        )
        await call_llm(
            "writer",
            "gpt-4.1-mini",
            f"Write up topic number {i}",
            17,
            system=True,
            tool_list=[SEARCH],
            delay=0.05,
        )

    async def varied_run(i: int) -> None:
        with_system = i % 3 != 2
        tool_list = [SEARCH, FETCH] if i % 2 == 0 else ([SEARCH] if i % 5 else [])
        await call_llm(
            "planner",
            "gpt-4.1-mini",
            f"Plan task {i}",
            rng.randint(5, 40),
            system=with_system,
            tool_list=tool_list,
        )
        for k in range(1 + i % 3):  # 1..3 researcher calls
            await call_llm(
                "researcher",
                "llama-3.1-8b",
                f"Research {i}.{k}",
                rng.randint(20, 120),
                system=False,
                tool_list=tool_list if k == 0 else [],
            )
            if rng.random() < 0.5:
                await asyncio.gather(
                    tools.execute("search", {"q": f"{i}.{k}"}, tool),
                    tools.execute("fetch", {"url": f"https://x/{i}/{k}"}, tool),
                )
            else:
                await tools.execute("search", {"q": f"{i}.{k}"}, tool)
        if i % 4 != 3:
            await call_llm(
                "writer",
                "claude-sonnet",
                f"Write up {i}",
                rng.randint(50, 300),
                system=with_system,
                tool_list=[],
            )

    body = demo_run if workload == "demo" else varied_run
    cfg = ad.AdaptiveConfig(
        agent_id=agent,
        state=ad.StateConfig(backend=ad.BackendSpec.redis(url, key_prefix=prefix)),
        telemetry=ad.TelemetryConfig(learners=["latency_sensitivity", "tool_parallelism", "acg"]),
        tool_parallelism=ad.ToolParallelismConfig(mode="observe_only"),
        acg=ad.AcgConfig(provider="passthrough", observation_window=8),
    )
    runtime = ad.AdaptiveRuntime(cfg.to_dict())
    await runtime.register()
    try:
        for i in range(runs):
            with scope.scope(f"{agent}-run", ScopeType.Agent):
                await body(i)
        await asyncio.sleep(0.5)
        runtime.wait_for_idle()
    finally:
        runtime.deregister()
        await runtime.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("agent")
    parser.add_argument("runs", type=int)
    parser.add_argument("--workload", choices=["demo", "varied"], default="varied")
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args()
    asyncio.run(_main(ns.url, ns.prefix, ns.agent, ns.runs, ns.workload, ns.seed))
    # nemo-relay 0.10.4 segfaults now and then during interpreter finalization (its native
    # threads outlive the runtime), after everything is stored: skip finalization.
    sys.stdout.flush()
    os._exit(0)
