"""A Python sub-agent: reads its IN_REFS over HTTP, does its "work", emits one final output.

Everything it knows comes from the environment the coordinator sets (as mlua-swarm's spawn-time
injection does): RELAYSTORE_URL, RELAYSTORE_TOKEN (scoped to this agent), IN_REFS (space
separated output refs), TASK_ID, ATTEMPT and PRODUCER. It prints its new output ref.
"""

from __future__ import annotations

import asyncio
import os

import relaystore
from relaystore.models import FinalEvent, inline


async def main() -> None:
    in_refs = os.environ.get("IN_REFS", "").split()
    producer = os.environ["PRODUCER"]
    # The http:// backend reads RELAYSTORE_TOKEN itself; the token allows only this agent's scope.
    async with relaystore.connect(os.environ["RELAYSTORE_URL"]) as store:
        inputs = [await store.outputs.get(ref) for ref in in_refs]
        summary = {
            "by": producer,
            "read": {str(r.id): r.producer_agent for r in inputs},
            "words": sum(len(str(r.event.model_dump()).split()) for r in inputs),
        }
        ref = await store.outputs.append(
            os.environ["TASK_ID"],
            int(os.environ["ATTEMPT"]),
            producer,
            FinalEvent(content=inline(summary), ok=True),
            parent_refs=in_refs,
        )
    print(ref)


if __name__ == "__main__":
    asyncio.run(main())
