"""The Redis backend's store-order counters, checked against the data for ``relaystore doctor``.

Two counters live beside the data: ``rs:{out}:seq`` (outputs; the data is the ``all`` index) and
``rs:{cp}:seq`` (checkpoints; the data is every thread's ``order`` ZSET). Appends already check
them inside their script (``_NEXT_SEQ_FN``: a damaged counter is rebuilt from the data there),
so a doctor run only reports what it finds and, with ``repair``, rewrites each counter once.
"""

from __future__ import annotations

from relaystore.backends.redis.checkpoints import RedisCheckpointStore
from relaystore.backends.redis.connection import RedisConnection
from relaystore.backends.redis.outputs import RedisOutputStore
from relaystore.stores.doctor import CounterCheck
from relaystore.stores.outputs import OutputFilter


async def _top(conn: RedisConnection, zset: str) -> int:
    found = await conn.do(zset, "ZRANGE", zset, -1, -1, "WITHSCORES")
    if not found:
        return 0
    # redis-py pairs WITHSCORES replies as (member, score); a flat reply has the score second
    score = found[0][1] if isinstance(found[0], tuple | list) else found[1]
    return int(float(score))


def _trust(raw: bytes | None, floor: int) -> tuple[bool, str]:
    """Whether the counter's next INCR is above ``floor``, and why not."""
    if raw is None:
        return floor == 0, "" if floor == 0 else f"it is missing while the records use seq {floor}"
    if not raw.isdigit():
        return False, "it is not a number"
    if raw != str(int(raw)).encode():
        return False, f"{raw.decode()!r} is not a canonical number (Redis INCR refuses it)"
    if int(raw) < floor:
        return False, f"it says {int(raw)} but the records use seq {floor}"
    return True, ""


async def _check(conn: RedisConnection, counter: str, floor: int, repair: bool) -> CounterCheck:
    raw = await conn.do(counter, "GET", counter)
    trusted, why = _trust(raw, floor)
    repaired = False
    if not trusted and repair:
        repaired = bool(await conn.script("REPAIR_COUNTER", [counter], [floor]))
    stored = None if raw is None else raw.decode("utf-8", "backslashreplace")
    return CounterCheck(counter, stored, floor, trusted, repaired=repaired, detail=why)


async def check_counters(
    conn: RedisConnection, checkpoints: RedisCheckpointStore, outputs: RedisOutputStore, repair: bool
) -> list[CounterCheck]:
    """Both counters against their data; with ``repair``, rewrite the untrusted ones."""
    output_floor = await _top(conn, outputs._index(OutputFilter()))
    checkpoint_floor = 0
    threads = checkpoints._threads
    for raw in await conn.do(threads, "ZRANGE", threads, 0, -1):
        checkpoint_floor = max(checkpoint_floor, await _top(conn, checkpoints._keys(raw.decode()).order))
    return [
        await _check(conn, outputs._seq, output_floor, repair),
        await _check(conn, checkpoints._seq, checkpoint_floor, repair),
    ]
