"""Adapters that let other agent runtimes keep their state in a relaystore Store.

- :mod:`relaystore.integrations.langgraph`: ``RelaySaver``, a LangGraph checkpointer
  (needs the ``langgraph`` extra).
- :mod:`relaystore.integrations.langgraph_store`: ``RelayStore``, a LangGraph ``BaseStore`` for
  long-term memory (same extra).
"""
