"""Benchmark cases, one module per face. Importing this package registers them all.

A new module (e.g. ``redis.py`` with ``backends=("redis",)``) is picked up once it is listed here.
"""

from benchmarks.cases import (
    adaptive,
    checkpoints,
    http,
    langgraph,
    langgraph_loop,
    langgraph_store,
    outputs,
    resp,
    runtimes,
    scaling,
    ui,
)

__all__ = [
    "adaptive",
    "checkpoints",
    "http",
    "langgraph",
    "langgraph_loop",
    "langgraph_store",
    "outputs",
    "resp",
    "runtimes",
    "scaling",
    "ui",
]
