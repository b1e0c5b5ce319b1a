"""A LangGraph checkpointer (``BaseCheckpointSaver``) over any relaystore backend.

``RelaySaver`` maps LangGraph's model onto the generic checkpoint contract, with no
LangGraph-only tables, so every backend (memory, sqlite, file, redis, postgres, http) serves it:

- one relaystore **thread** per LangGraph ``(thread_id, checkpoint_ns)``:
  ``thread_prefix + thread_id + "\\x1f" + checkpoint_ns``;
- one relaystore **checkpoint** per LangGraph checkpoint, with the same id and parent; its state
  is the serde-typed checkpoint *without* ``channel_values``, its ``attributes`` hold the
  LangGraph metadata as JSON and its ``refs`` the attachment keys of its channel values,
  so listings filter and retention collects garbage without decoding states. (Records written
  before relaystore 0.2 keep the metadata as JSON text in ``custom``; they are still read.)
- channel values are **attachments** keyed ``channel + "\\x1f" + version``, written only for
  ``new_versions``, so an unchanged channel is stored once however many checkpoints share it;
- pending writes are the contract's **pending writes**, stored as they come, before their
  checkpoint if LangGraph sends them first (``durability="async"`` does);
- ``get_tuple`` is one ``load_full`` and each page of ``list`` one ``list_full``: one round trip
  on sqlite and postgres, metadata filters included.

Use it from async code (``async with RelaySaver.from_url(url) as saver``) or from scripts
(``with RelaySaver.from_url_sync(url) as saver``). See ``docs/langgraph.md``.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    from relaystore._extras import missing_extra

    raise missing_extra("relaystore.integrations.langgraph", "langgraph") from exc

from relaystore.integrations.langgraph.records import SEPARATOR
from relaystore.integrations.langgraph.saver import RelaySaver
from relaystore.integrations.langgraph_store import RelayStore

__all__ = ["SEPARATOR", "RelaySaver", "RelayStore"]
