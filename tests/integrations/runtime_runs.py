"""One turn of a real runtime Runner with an offline fake model, storing into relaystore.

``python runtime_runs.py agents|adk URL MESSAGE`` runs one turn of session ``conv`` and prints,
as JSON, the texts the model was given (so a second process can show it saw the first's turn)
and its reply. Used by ``test_runtime_runners.py``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncGenerator
from typing import Any


def _texts(value: Any) -> list[str]:
    """Every string under ``text``/``content`` keys of a nested JSON-like value."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("text", "content") and isinstance(inner, str):
                found.append(inner)
            else:
                found.extend(_texts(inner))
    elif isinstance(value, list):
        for inner in value:
            found.extend(_texts(inner))
    return found


async def agents_turn(url: str, message: str) -> dict[str, Any]:
    from agents import Agent, Runner
    from agents.testing import ScriptedModel
    from openai.types.responses import ResponseOutputMessage, ResponseOutputText

    from relaystore.integrations.openai_agents import RelaySession

    reply = f"echo: {message}"
    output = ResponseOutputMessage(
        id="msg",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=reply, annotations=[])],
    )
    model = ScriptedModel([[output]])
    async with RelaySession("conv", url) as session:
        result = await Runner.run(Agent(name="echo", model=model), message, session=session)
    assert model.last_call is not None
    return {"seen": _texts(model.last_call.input), "reply": result.final_output}


async def adk_turn(url: str, message: str) -> dict[str, Any]:
    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.adk.runners import Runner
    from google.genai import types

    from relaystore.integrations.adk import RelayArtifactService, RelaySessionService

    seen: list[str] = []

    class EchoLlm(BaseLlm):
        """Offline model: answers ``echo: <last user text>`` and records what it was sent."""

        async def generate_content_async(
            self, llm_request: LlmRequest, stream: bool = False
        ) -> AsyncGenerator[LlmResponse, None]:
            texts = [p.text for c in llm_request.contents for p in (c.parts or []) if p.text]
            seen.extend(texts)
            yield LlmResponse(
                content=types.Content(role="model", parts=[types.Part(text=f"echo: {texts[-1]}")])
            )

    sessions = RelaySessionService(url)
    runner = Runner(
        app_name="demo",
        agent=LlmAgent(name="echo", model=EchoLlm(model="echo")),
        session_service=sessions,
        artifact_service=RelayArtifactService(url),
        auto_create_session=True,
    )
    reply = ""
    content = types.Content(role="user", parts=[types.Part(text=message)])
    async for event in runner.run_async(user_id="u", session_id="conv", new_message=content):
        if event.content and event.content.parts and event.content.parts[0].text:
            reply = event.content.parts[0].text
    await sessions.close()
    return {"seen": seen, "reply": reply}


if __name__ == "__main__":
    runtime, url, text = sys.argv[1:4]
    turn = agents_turn if runtime == "agents" else adk_turn
    print(json.dumps(asyncio.run(turn(url, text))))
