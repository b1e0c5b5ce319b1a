"""Adapters that let other agent runtimes keep their state in a relaystore Store.

- :mod:`relaystore.integrations.langgraph`: ``RelaySaver``, a LangGraph checkpointer
  (needs the ``langgraph`` extra).
"""
