"""Ask a fresh NeMo Relay runtime what it knows about a request: its cache facts, as JSON.

Run as a script in its own process (the runtime keeps process-global state)::

    python -m tests.support.nemo_facts REDIS_URL PREFIX AGENT

The runtime registers against Redis under PREFIX (loading the ACG observations and stability it
finds there into its hot cache), then ``AdaptiveRuntime.build_cache_request_facts`` is called for
a request shaped like the driver's ``demo`` workload. The facts are printed as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from tests.support.nemo_driver import ROOT, SEARCH, SYSTEM

REQUEST_ID = "01a1fd9c-2b68-7723-87b9-5954bcd2a69e"


def demo_request(text: str = "Research topic number 999") -> dict[str, Any]:
    """An annotated request with the demo workload's scaffold (system prompt, search tool)."""
    return {
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
        "model": "gpt-4.1-mini",
        "tools": [SEARCH],
        "api_specific": {"api": "openai_chat"},
    }


def facts(redis_url: str, prefix: str, agent: str, timeout: float = 120) -> dict[str, Any] | None:
    """Run this module in a subprocess and return the facts it printed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.nemo_facts", redis_url, prefix, agent],
        cwd=ROOT,
        env=env,
        timeout=timeout,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def _main(url: str, prefix: str, agent: str) -> None:
    from nemo_relay import adaptive as ad

    cfg = ad.AdaptiveConfig(
        agent_id=agent,
        state=ad.StateConfig(backend=ad.BackendSpec.redis(url, key_prefix=prefix)),
        telemetry=ad.TelemetryConfig(learners=["acg"]),
        acg=ad.AcgConfig(provider="passthrough", observation_window=8),
    )
    runtime = ad.AdaptiveRuntime(cfg.to_dict())
    await runtime.register()
    result = runtime.build_cache_request_facts(
        provider="openai", request_id=REQUEST_ID, annotated_request=demo_request(), agent_id=agent
    )
    print(json.dumps(result), flush=True)
    runtime.deregister()
    # The 0.10.4 runtime sometimes crashes in shutdown() after an empty registration; the facts
    # are already printed, so leave without it.
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(_main(*sys.argv[1:4]))
