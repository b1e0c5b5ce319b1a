"""Redis backend: ``redis://host:port/db``, ``rediss://…`` (TLS), ``redis+cluster://h:p,h:p``.

Options (URL query or keyword arguments):

- ``prefix``: prepended to every key, default ``nemo_relay:`` (NeMo Relay's default);
- ``ttl``: seconds; when set, run records (and their index) expire that long after the last write;
- ``timeout``: seconds, default 5; bounds every round trip, connecting included;
- ``cluster=1``: treat ``redis://`` / ``rediss://`` as a Redis Cluster seed (as ``redis+cluster``).

Adaptive state uses NeMo Relay's RedisBackend key layout and JSON, so both read each other's data:
``{prefix}runs:{agent}:{run_id}``, ``{prefix}runs_index:{agent}``, ``{prefix}plan:{agent}``, … As
in NeMo Relay, agent ids and learning keys appear raw in key names (``:`` and ``/`` included), so a
prefix must not be a prefix of another tenant's prefix. One key is ours: ``{prefix}runs_trimmed:
{agent}`` counts pruned runs so that list cursors survive ``prune_runs``.

Checkpoints and outputs use our own layout under ``{prefix}rs:``: ids in key names are base64url
encoded, so no id can collide or move a key to another cluster slot. See docs/backends/redis.md.

Every multi-key write is one Lua script (atomic, one round trip). Updates of a document are
optimistic: read, compute, then a script writes only if the document's SHA-1 is unchanged.

Cluster mode (``redis+cluster://`` or ``?cluster=1``): the adaptive keys gain a hash tag,
``{prefix}{<16 hex of SHA-1(agent)>}runs:{agent}:…``, so a run, its index and its counter share a
slot. NeMo Relay compatibility therefore requires the plain layout: NeMo Relay itself cannot run on
a cluster (its MULTI spans ``runs:`` and ``runs_index:``, which hash to different slots, and fails
with CROSSSLOT), and it would not find tagged keys. All checkpoints of a prefix share one slot, and
all outputs another, because listing threads and outputs must stay atomic with writes.

Redis and connection errors surface as :class:`BackendUnavailable` (the pool reconnects on the next
call); a key holding the wrong Redis type as :class:`CorruptRecord` naming the key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import TypeAdapter
from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from relaystore.backends._options import flag, merge_options, number
from relaystore.backends.redis_items import RedisItemStore
from relaystore.errors import BackendUnavailable, Conflict, CorruptRecord, InvalidInput
from relaystore.models.checkpoints import Checkpoint, CheckpointMetadata, PendingWrite
from relaystore.models.outputs import BlobContent, OutputRecord, OutputRef
from relaystore.stores import AdaptiveStore, CheckpointStore, DocKind, OutputFilter, OutputStore, Store
from relaystore.stores._common import ANY, parse_json, parse_rows, prefix_upper_bound
from relaystore.stores.blobs import BlobStore
from relaystore.stores.checkpoints import SeqRow, duplicate_conflict, head_conflict

T = TypeVar("T")
_METADATA: TypeAdapter[CheckpointMetadata] = TypeAdapter(CheckpointMetadata)
_RECORD: TypeAdapter[OutputRecord] = TypeAdapter(OutputRecord)
_WRITE: TypeAdapter[PendingWrite] = TypeAdapter(PendingWrite)
DEFAULT_PREFIX = "nemo_relay:"
_SCAN_COUNT = 1000
_CHUNK = 500  # keys per MGET/HMGET/prune step: bounds one reply and one script's run time
_MAX_CAS_ATTEMPTS = 1000

# ------------------------------------------------------------------------- Lua scripts
# KEYS are always declared, so every script is valid in cluster mode (all its keys share a tag).

_STORE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl) else redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('RPUSH', KEYS[2], ARGV[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ttl) end
end
return 1
"""

# seq of index position i (0-based) is trimmed + i + 1, so "seq > after" starts at after - trimmed.
_RUN_IDS = """
local trimmed = tonumber(redis.call('GET', KEYS[2]) or '0')
local after, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local start = 0
if after >= 0 then start = math.max(0, after - trimmed) end
local stop = -1
if count > 0 then stop = start + count - 1 end
return {trimmed + start, redis.call('LRANGE', KEYS[1], start, stop)}
"""

# Deletes the oldest runs only if they are still the ids the caller read and ``keep`` still holds.
_PRUNE_RUNS = """
local n = #ARGV - 1
if redis.call('LLEN', KEYS[1]) - tonumber(ARGV[1]) < n then return -1 end
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
for i = 1, n do if head[i] ~= ARGV[i + 1] then return -1 end end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('LTRIM', KEYS[1], n, -1)
redis.call('INCRBY', KEYS[2], n)
return n
"""

_CAS_DOC = """
local current = redis.call('GET', KEYS[1])
local digest = ''
if current then digest = redis.sha1hex(current) end
if digest ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

# KEYS: order, meta, state, threads, seq, attachments, attachment keys.
# ARGV: thread, id, cas flag, expected head, metadata, state, then attachment key, value, ...
# The checks come first and write nothing, so a Conflict leaves the attachments unwritten too.
_SAVE_CHECKPOINT = """
local head = redis.call('ZRANGE', KEYS[1], -1, -1)[1] or ''
if ARGV[3] == '1' and head ~= ARGV[4] then return {'head', head} end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return {'dup'} end
local seq = redis.call('INCR', KEYS[5])
redis.call('ZADD', KEYS[1], seq, ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[5])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[6])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
for i = 7, #ARGV, 2 do
  redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[7], 0, ARGV[i])
end
return {'ok', seq}
"""

_LOAD_CHECKPOINT = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

_LOAD_LATEST_CHECKPOINT = """
local id = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
if not id then return false end
return {id, redis.call('HGET', KEYS[2], id), redis.call('HGET', KEYS[3], id)}
"""

# Flat reply: seq, id, metadata (nil if missing) per checkpoint.
_LIST_CHECKPOINTS = """
local after, limit, newest = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local args
if newest then
  local high = '+inf'
  if after ~= '' then high = '(' .. after end
  args = {'ZREVRANGEBYSCORE', KEYS[1], high, '-inf', 'WITHSCORES'}
else
  local low = '-inf'
  if after ~= '' then low = '(' .. after end
  args = {'ZRANGEBYSCORE', KEYS[1], low, '+inf', 'WITHSCORES'}
end
if limit > 0 then table.insert(args, 'LIMIT'); table.insert(args, 0); table.insert(args, limit) end
local found = redis.call(unpack(args))
local out = {}
for i = 1, #found, 2 do
  table.insert(out, tonumber(found[i + 1]))
  table.insert(out, found[i])
  table.insert(out, redis.call('HGET', KEYS[2], found[i]))
end
return out
"""

# base64url without padding, as ``_encode`` in Python: cascades build the key of each deleted
# checkpoint's pending writes from ids they only learn inside the script (prune, delete_thread).
_LUA_ENCODE = """
local ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
local function encode(text)
  local out = {}
  for i = 1, #text, 3 do
    local a, b, c = string.byte(text, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = (c and 4) or (b and 3) or 2
    for j = 0, chars - 1 do
      local v = math.floor(n / 2 ^ (18 - 6 * j)) % 64
      out[#out + 1] = string.sub(ALPHABET, v + 1, v + 1)
    end
  end
  return table.concat(out)
end
"""

# KEYS: order, meta, state, threads, the checkpoint's writes, write ids. ARGV: thread, id.
_DELETE_CHECKPOINT = """
redis.call('DEL', KEYS[5])
redis.call('SREM', KEYS[6], ARGV[2])
if redis.call('ZREM', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[4], ARGV[1]) end
return 1
"""

# KEYS: order, meta, state, threads, attachments, attachment keys, write ids. ARGV: thread,
# writes stem. Writes keys are built here, not declared: they carry the same {cp} tag, so the
# same slot. Stores written before the write-ids set existed have writes only under saved ids.
_DELETE_THREAD = (
    _LUA_ENCODE
    + """
local n = redis.call('ZCARD', KEYS[1])
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  redis.call('DEL', ARGV[2] .. encode(id))
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  redis.call('DEL', ARGV[2] .. encode(id))
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], KEYS[7])
redis.call('ZREM', KEYS[4], ARGV[1])
return n
"""
)

# Pending writes whose checkpoint is not in the thread (sent ahead of a save that never came).
_DROP_ORPHAN_WRITES = """
local function drop_orphans(order, ids, stem)
  local n = 0
  for _, id in ipairs(redis.call('SMEMBERS', ids)) do
    if not redis.call('ZSCORE', order, id) then
      redis.call('DEL', stem .. encode(id))
      redis.call('SREM', ids, id)
      n = n + 1
    end
  end
  return n
end
"""

# KEYS: order, write ids. ARGV: writes stem.
_DELETE_ORPHAN_WRITES = _LUA_ENCODE + _DROP_ORPHAN_WRITES + "return drop_orphans(KEYS[1], KEYS[2], ARGV[1])"

# KEYS: order, meta, state, threads, write ids. ARGV: thread, keep, writes stem.
_PRUNE_CHECKPOINTS = (
    _LUA_ENCODE
    + _DROP_ORPHAN_WRITES
    + """
local drop = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if drop <= 0 then drop_orphans(KEYS[1], KEYS[5], ARGV[3]) return 0 end
if drop <= 0 then return 0 end
local ids = redis.call('ZRANGE', KEYS[1], 0, drop - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, drop - 1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('DEL', ARGV[3] .. encode(id))
  redis.call('SREM', KEYS[5], id)
end
drop_orphans(KEYS[1], KEYS[5], ARGV[3])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[4], ARGV[1]) end
return drop
"""
)

# KEYS: write ids, the checkpoint's writes. ARGV: checkpoint id, replace flag, field, JSON, ...
# HSETNX keeps the first write of a (task_id, idx); HSET replaces it. The checkpoint need not
# exist yet; the write-ids set lets delete_thread and prune find writes of unsaved ids.
_PUT_WRITES = """
redis.call('SADD', KEYS[1], ARGV[1])
local verb = 'HSETNX'
if ARGV[2] == '1' then verb = 'HSET' end
for i = 3, #ARGV, 2 do redis.call(verb, KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: attachments, attachment keys. ARGV: key, value, key, value, ...
_PUT_ATTACHMENTS = """
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], 0, ARGV[i])
end
return 1
"""

# KEYS: attachments, attachment keys. ARGV: keys. Returns how many existed.
_DELETE_ATTACHMENTS = """
local n = 0
for i = 1, #ARGV do
  n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return n
"""

# KEYS: seq, records, then every zset the output joins (indexes, parents' children). ARGV[2] is
# the record's JSON without "seq"; the script splices the new seq in as the first field.
_INSERT_OUTPUT = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -1 end
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], '{"seq":' .. string.format('%d', seq) .. ',' .. string.sub(ARGV[2], 2))
for i = 3, #KEYS do redis.call('ZADD', KEYS[i], seq, ARGV[1]) end
return seq
"""

_LATEST_OUTPUT = """
local ref = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
if not ref then return false end
return {ref, redis.call('HGET', KEYS[2], ref)}
"""

# Flat reply: seq, ref, record per output.
_LIST_OUTPUTS = """
local args = {'ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES'}
if tonumber(ARGV[2]) > 0 then
  table.insert(args, 'LIMIT'); table.insert(args, 0); table.insert(args, ARGV[2])
end
local found = redis.call(unpack(args))
local out = {}
for i = 1, #found, 2 do
  table.insert(out, tonumber(found[i + 1]))
  table.insert(out, found[i])
  table.insert(out, redis.call('HGET', KEYS[2], found[i]))
end
return out
"""

_CHILDREN_OUTPUTS = """
local seen, out = {}, {}
for i = 2, #KEYS do
  local found = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
  for j = 1, #found, 2 do
    local ref = found[j]
    if not seen[ref] then
      seen[ref] = true
      table.insert(out, tonumber(found[j + 1]))
      table.insert(out, ref)
      table.insert(out, redis.call('HGET', KEYS[1], ref))
    end
  end
end
return out
"""

# Blobs: KEYS = meta hash, uploads zset; ARGV = sha, meta JSON, upload id, chunk count, key base.
# Every blob key shares the "{blob}" hash tag, so building chunk keys in Lua stays in one slot.
_COMMIT_BLOB = """
local base, id, n = ARGV[5], ARGV[3], tonumber(ARGV[4])
redis.call('ZREM', KEYS[2], id)
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
for i = 0, n - 1 do
  local staged = base .. 'up:' .. id .. ':' .. i
  if exists then redis.call('DEL', staged)
  else redis.call('RENAME', staged, base .. 'c:' .. ARGV[1] .. ':' .. i) end
end
if not exists then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return exists and 0 or 1
"""

# KEYS = uploads zset (or meta hash); ARGV = key base, chunk key stem ('up:<id>' or 'c:<sha>').
_DROP_CHUNKS = """
local i = 0
while redis.call('DEL', ARGV[1] .. ARGV[2] .. ':' .. i) == 1 do i = i + 1 end
return i
"""

_DELETE_BLOB = """
if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
local i = 0
while redis.call('DEL', ARGV[1] .. 'c:' .. ARGV[2] .. ':' .. i) == 1 do i = i + 1 end
return 1
"""

_SCRIPTS = {
    "_COMMIT_BLOB": _COMMIT_BLOB,
    "_DROP_CHUNKS": _DROP_CHUNKS,
    "_DELETE_BLOB": _DELETE_BLOB,
    "_STORE_RUN": _STORE_RUN,
    "_RUN_IDS": _RUN_IDS,
    "_PRUNE_RUNS": _PRUNE_RUNS,
    "_CAS_DOC": _CAS_DOC,
    "_SAVE_CHECKPOINT": _SAVE_CHECKPOINT,
    "_LOAD_CHECKPOINT": _LOAD_CHECKPOINT,
    "_LOAD_LATEST_CHECKPOINT": _LOAD_LATEST_CHECKPOINT,
    "_LIST_CHECKPOINTS": _LIST_CHECKPOINTS,
    "_DELETE_CHECKPOINT": _DELETE_CHECKPOINT,
    "_DELETE_THREAD": _DELETE_THREAD,
    "_PRUNE_CHECKPOINTS": _PRUNE_CHECKPOINTS,
    "_PUT_WRITES": _PUT_WRITES,
    "_DELETE_ORPHAN_WRITES": _DELETE_ORPHAN_WRITES,
    "_PUT_ATTACHMENTS": _PUT_ATTACHMENTS,
    "_DELETE_ATTACHMENTS": _DELETE_ATTACHMENTS,
    "_INSERT_OUTPUT": _INSERT_OUTPUT,
    "_LATEST_OUTPUT": _LATEST_OUTPUT,
    "_LIST_OUTPUTS": _LIST_OUTPUTS,
    "_CHILDREN_OUTPUTS": _CHILDREN_OUTPUTS,
}


# ------------------------------------------------------------------------- helpers


def _encode(value: str) -> str:
    """Id as a key-name part: base64url has no ``:``, ``{`` or ``}``, and is reversible."""
    return base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode()


def _slot_tag(value: str) -> str:
    """Cluster hash tag for an agent or learning key (only the slot depends on it)."""
    return "{" + hashlib.sha1(value.encode()).hexdigest()[:16] + "}"


def _write_field(write: PendingWrite) -> str:
    """Hash field of a pending write: its ``(task_id, idx)``; the encoded task id has no ``|``."""
    return f"{_encode(write.task_id)}|{write.idx}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


def _text(raw: bytes | None, key: str) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise CorruptRecord(key, f"not UTF-8: {exc}") from exc


def _sorted_page(items: set[str], after: str | None, limit: int | None) -> list[str]:
    ordered = sorted(i for i in items if after is None or i > after)
    return ordered if limit is None else ordered[:limit]


def _chunks(values: Sequence[T], size: int = _CHUNK) -> list[Sequence[T]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


class RedisConnection:
    """One redis-py client plus the error policy: every round trip is bounded by ``timeout``."""

    def __init__(self, client: Redis | RedisCluster, timeout: float, cluster: bool) -> None:
        self.client = client
        self.timeout = timeout
        self.cluster = cluster
        self._scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}

    async def call(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()``; ``key`` names the record in a :class:`CorruptRecord`."""
        try:
            async with asyncio.timeout(self.timeout):
                return await fn()
        except TimeoutError as exc:
            raise BackendUnavailable(f"Redis did not answer within {self.timeout}s") from exc
        except rx.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                raise CorruptRecord(key, str(exc)) from exc
            raise BackendUnavailable(f"Redis error on {key}: {exc}") from exc
        except (rx.RedisError, OSError) as exc:
            raise BackendUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        script = self._scripts[name]
        return await self.call(keys[0], lambda: script(keys=list(keys), args=list(args)))

    async def do(self, key: str, command: str, *args: Any) -> Any:
        """One command, e.g. ``do(key, "GET", key)``."""
        return await self.call(key, lambda: self.client.execute_command(command, *args))

    async def scan(self, pattern: str) -> list[str]:
        """Every key matching ``pattern``: O(keys in the database) per call, in pages of 1000.

        The timeout applies to each step, not to the whole walk, which may be long.
        """
        found = self.client.scan_iter(match=pattern, count=_SCAN_COUNT)
        keys: list[str] = []
        while True:
            try:
                key = await self.call(pattern, found.__anext__)
            except StopAsyncIteration:
                return keys
            keys.append(key.decode())

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        values: list[bytes | None] = []
        for chunk in _chunks(keys):
            values += await self.do(chunk[0], "MGET", *chunk)
        return values

    async def close(self) -> None:
        await self.client.aclose()


# ------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class _ThreadKeys:
    order: str  # ZSET checkpoint id -> seq
    meta: str  # HASH checkpoint id -> metadata JSON
    state: str  # HASH checkpoint id -> state bytes
    writes_stem: str  # + enc(checkpoint id): HASH enc(task_id)|idx -> PendingWrite JSON
    attachments: str  # HASH attachment key -> bytes
    attachment_keys: str  # ZSET attachment keys, all scored 0: sorted pages by ZRANGEBYLEX
    write_ids: str  # SET of checkpoint ids that have pending writes (saved or not)

    def writes(self, checkpoint_id: str) -> str:
        """The key of one checkpoint's pending writes."""
        return self.writes_stem + _encode(checkpoint_id)


class RedisCheckpointStore(CheckpointStore):
    """Checkpoints under ``{prefix}rs:{cp}:`` (one cluster slot per prefix)."""

    def __init__(self, conn: RedisConnection, prefix: str) -> None:
        self._c = conn
        self._base = f"{prefix}rs:{{cp}}:"
        self._seq = self._base + "seq"
        self._threads = self._base + "threads"  # ZSET, all scores 0: lexicographic thread listing

    def _keys(self, thread_id: str) -> _ThreadKeys:
        stem = f"{self._base}t:{_encode(thread_id)}:"
        return _ThreadKeys(
            stem + "order",
            stem + "meta",
            stem + "state",
            stem + "w:",
            stem + "att",
            stem + "attkeys",
            stem + "wids",
        )

    def _checkpoint(
        self, keys: _ThreadKeys, checkpoint_id: str, meta: bytes, state: bytes | None
    ) -> Checkpoint:
        where = f"{keys.meta}[{checkpoint_id}]"
        if state is None:
            raise CorruptRecord(f"{keys.state}[{checkpoint_id}]", "state is missing")
        return Checkpoint(parse_json(_METADATA, meta, where), bytes(state))

    async def _save_with_attachments(
        self,
        thread_id: str,
        metadata: CheckpointMetadata,
        state: bytes,
        expected_head: Any,
        attachments: dict[str, bytes],
    ) -> None:
        """One script: the CAS and duplicate checks, the checkpoint, then its attachments."""
        k = self._keys(thread_id)
        cas = expected_head is not ANY
        args: list[Any] = [
            thread_id,
            metadata.id,
            "1" if cas else "0",
            (expected_head or "") if cas else "",
            metadata.json_text(),
            state,
        ]
        args += [part for key, value in attachments.items() for part in (key, value)]
        keys = [k.order, k.meta, k.state, self._threads, self._seq, k.attachments, k.attachment_keys]
        reply = await self._c.script("_SAVE_CHECKPOINT", keys, args)
        if reply[0] == b"head":
            raise head_conflict(thread_id, expected_head, reply[1].decode() or None)
        if reply[0] == b"dup":
            raise duplicate_conflict(thread_id, metadata.id)

    async def _head(self, thread_id: str) -> str | None:
        order = self._keys(thread_id).order  # the id alone: a corrupt head is still the head
        found = await self._c.do(order, "ZRANGE", order, -1, -1)
        return found[0].decode() if found else None

    async def _load(self, thread_id: str, checkpoint_id: str) -> Checkpoint | None:
        k = self._keys(thread_id)
        meta, state = await self._c.script("_LOAD_CHECKPOINT", [k.meta, k.state], [checkpoint_id])
        return None if meta is None else self._checkpoint(k, checkpoint_id, meta, state)

    async def _load_latest(self, thread_id: str) -> Checkpoint | None:
        k = self._keys(thread_id)
        reply = await self._c.script("_LOAD_LATEST_CHECKPOINT", [k.order, k.meta, k.state])
        if reply is None:
            return None
        checkpoint_id = reply[0].decode()
        if reply[1] is None:
            raise CorruptRecord(f"{k.meta}[{checkpoint_id}]", "metadata is missing")
        return self._checkpoint(k, checkpoint_id, reply[1], reply[2])

    async def _list(
        self, thread_id: str, limit: int | None, after: int | None, newest_first: bool
    ) -> list[SeqRow]:
        k = self._keys(thread_id)
        args = ["" if after is None else after, limit or 0, "1" if newest_first else "0"]
        flat = await self._c.script("_LIST_CHECKPOINTS", [k.order, k.meta], args)
        rows = [
            (flat[i], f"{k.meta}[{flat[i + 1].decode()}]", flat[i + 2] or b"") for i in range(0, len(flat), 3)
        ]
        return parse_rows(_METADATA, rows)

    async def _delete(self, thread_id: str, checkpoint_id: str) -> bool:
        k = self._keys(thread_id)
        keys = [k.order, k.meta, k.state, self._threads, k.writes(checkpoint_id), k.write_ids]
        return bool(await self._c.script("_DELETE_CHECKPOINT", keys, [thread_id, checkpoint_id]))

    async def _delete_thread(self, thread_id: str) -> int:
        k = self._keys(thread_id)
        keys = [k.order, k.meta, k.state, self._threads, k.attachments, k.attachment_keys, k.write_ids]
        return int(await self._c.script("_DELETE_THREAD", keys, [thread_id, k.writes_stem]))

    async def _count(self, thread_id: str) -> int:
        order = self._keys(thread_id).order
        return int(await self._c.do(order, "ZCARD", order))

    async def _list_threads(self, limit: int | None, after: str | None, prefix: str | None) -> list[str]:
        low = "-" if after is None else "(" + after
        if prefix is not None and (after is None or after < prefix):
            low = "[" + prefix
        bound = None if prefix is None else prefix_upper_bound(prefix)
        high = "+" if bound is None else "(" + bound
        extra = [] if limit is None else ["LIMIT", 0, limit]
        found = await self._c.do(self._threads, "ZRANGEBYLEX", self._threads, low, high, *extra)
        return [t.decode() for t in found]

    async def _prune(self, thread_id: str, keep: int) -> int:
        k = self._keys(thread_id)
        keys = [k.order, k.meta, k.state, self._threads, k.write_ids]
        return int(await self._c.script("_PRUNE_CHECKPOINTS", keys, [thread_id, keep, k.writes_stem]))

    # ------------------------------------------------------------------ pending writes

    async def _put_writes(
        self, thread_id: str, checkpoint_id: str, writes: list[PendingWrite], replace: bool
    ) -> None:
        k = self._keys(thread_id)
        args: list[Any] = [checkpoint_id, "1" if replace else "0"]
        for write in writes:
            args += [_write_field(write), write.model_dump_json()]
        await self._c.script("_PUT_WRITES", [k.write_ids, k.writes(checkpoint_id)], args)

    async def _delete_orphan_writes(self, thread_id: str) -> int:
        k = self._keys(thread_id)
        return int(await self._c.script("_DELETE_ORPHAN_WRITES", [k.order, k.write_ids], [k.writes_stem]))

    async def _list_writes(self, thread_id: str, checkpoint_id: str) -> list[PendingWrite]:
        key = self._keys(thread_id).writes(checkpoint_id)
        stored = await self._c.do(key, "HGETALL", key)
        return [
            parse_json(_WRITE, text, f"{key}[{name.decode(errors='replace')}]")
            for name, text in stored.items()
        ]

    # ------------------------------------------------------------------ attachments

    async def _put_attachments(self, thread_id: str, items: dict[str, bytes]) -> None:
        k = self._keys(thread_id)
        args = [part for key, value in items.items() for part in (key, value)]
        await self._c.script("_PUT_ATTACHMENTS", [k.attachments, k.attachment_keys], args)

    async def _get_attachments(self, thread_id: str, keys: list[str]) -> dict[str, bytes]:
        name = self._keys(thread_id).attachments
        found: dict[str, bytes] = {}
        for chunk in _chunks(keys):
            values = await self._c.do(name, "HMGET", name, *chunk)
            found.update((k, bytes(v)) for k, v in zip(chunk, values, strict=True) if v is not None)
        return found

    async def _delete_attachments(self, thread_id: str, keys: list[str]) -> int:
        k = self._keys(thread_id)
        return int(await self._c.script("_DELETE_ATTACHMENTS", [k.attachments, k.attachment_keys], keys))

    async def _list_attachments(self, thread_id: str, after: str | None, limit: int | None) -> list[str]:
        # A sorted set of the keys makes a page O(log n + page), where HKEYS + sort would read
        # every key of the thread for each page of a listing walk.
        name = self._keys(thread_id).attachment_keys
        low = "-" if after is None else "(" + after
        extra = [] if limit is None else ["LIMIT", 0, limit]
        found = await self._c.do(name, "ZRANGEBYLEX", name, low, "+", *extra)
        return [_text(key, name) or "" for key in found]


# ------------------------------------------------------------------------- outputs


class RedisOutputStore(OutputStore):
    """Outputs under ``{prefix}rs:{out}:`` (one cluster slot per prefix).

    ``records`` is a HASH ref -> JSON; every filter a listing can use has its own ZSET of refs
    scored by seq, so "latest" is one ZRANGE -1 -1 and a page is one ZRANGEBYSCORE … LIMIT.
    """

    def __init__(self, conn: RedisConnection, prefix: str) -> None:
        self._c = conn
        self._base = f"{prefix}rs:{{out}}:"
        self._seq = self._base + "seq"
        self._records = self._base + "records"

    def _index(self, flt: OutputFilter) -> str:
        parts = []
        if flt.task_id is not None:
            parts.append("t:" + _encode(flt.task_id))
        if flt.attempt is not None:
            if flt.task_id is None:
                raise InvalidInput("an attempt filter needs a task_id")
            parts.append(f"a:{flt.attempt}")
        if flt.producer_agent is not None:
            parts.append("p:" + _encode(flt.producer_agent))
        return self._base + "idx:" + (":".join(parts) or "all")

    def _indexes_of(self, record: OutputRecord) -> list[str]:
        task, attempt, producer = record.task_id, record.attempt, record.producer_agent
        filters = [
            OutputFilter(),
            OutputFilter(task),
            OutputFilter(task, attempt),
            OutputFilter(producer_agent=producer),
            OutputFilter(task, producer_agent=producer),
            OutputFilter(task, attempt, producer),
        ]
        return [self._index(f) for f in filters]

    def _children(self, ref: str) -> str:
        return f"{self._base}children:{ref}"

    def _decode(self, ref: bytes | str, text: bytes | None) -> OutputRecord:
        ref = ref.decode() if isinstance(ref, bytes) else ref
        return parse_json(_RECORD, text or b"", f"{self._records}[{ref}]")

    async def _insert(self, record: OutputRecord) -> int:
        parents = [self._children(p) for p in dict.fromkeys(record.parent_refs)]
        keys = [self._seq, self._records, *self._indexes_of(record), *parents]
        doc = record.model_dump_json(exclude={"seq"})
        seq = int(await self._c.script("_INSERT_OUTPUT", keys, [record.id, doc]))
        if seq < 0:
            raise Conflict(f"output {record.id} already exists")
        return seq

    async def _get_many(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        found: list[OutputRecord] = []
        for chunk in _chunks(refs):
            texts = await self._c.do(self._records, "HMGET", self._records, *chunk)
            found += [self._decode(r, t) for r, t in zip(chunk, texts, strict=True) if t is not None]
        return found

    async def _latest(self, flt: OutputFilter) -> OutputRecord | None:
        reply = await self._c.script("_LATEST_OUTPUT", [self._index(flt), self._records])
        if reply is None or reply[1] is None:
            return None
        return self._decode(reply[0], reply[1])

    async def _list(self, flt: OutputFilter, after: int | None, limit: int | None) -> list[OutputRecord]:
        low = "-inf" if after is None else f"({after}"
        flat = await self._c.script("_LIST_OUTPUTS", [self._index(flt), self._records], [low, limit or 0])
        return self._decode_listed(flat)

    async def _children_of(self, refs: Sequence[OutputRef]) -> list[OutputRecord]:
        found: list[OutputRecord] = []
        for chunk in _chunks(refs):
            keys = [self._records, *(self._children(r) for r in chunk)]
            found += self._decode_listed(await self._c.script("_CHILDREN_OUTPUTS", keys))
        return found

    def _decode_listed(self, flat: list[Any]) -> list[OutputRecord]:
        """Records from a flat ``seq, ref, record`` reply; a corrupt one stays as a placeholder
        with its seq (see :func:`parse_rows`), a vanished one is left out."""
        rows = [
            (flat[i], f"{self._records}[{flat[i + 1].decode()}]", flat[i + 2])
            for i in range(0, len(flat), 3)
            if flat[i + 2] is not None
        ]
        return [record for _, record in parse_rows(_RECORD, rows)]


# ------------------------------------------------------------------------- blobs

_STALE_UPLOAD_SECONDS = 86_400


class RedisBlobStore(BlobStore):
    """Blobs under ``{prefix}rs:{blob}:``: a ``meta`` hash (digest → size and mime), 1 MiB
    chunk strings ``c:<sha>:<i>``, staged chunks ``up:<upload>:<i>`` and an ``uploads`` sorted set
    (upload id → start time) so a crashed upload's chunks are dropped a day later."""

    def __init__(self, conn: RedisConnection, prefix: str) -> None:
        self._c = conn
        self._base = f"{prefix}rs:{{blob}}:"
        self._meta = self._base + "meta"
        self._uploads = self._base + "uploads"

    async def _put_chunk(self, upload_id: str, index: int, data: bytes) -> None:
        if index == 0:
            await self._c.do(self._uploads, "ZADD", self._uploads, time.time(), upload_id)
        await self._c.do(self._base, "SET", f"{self._base}up:{upload_id}:{index}", data)

    async def _commit(self, upload_id: str, blob: BlobContent, chunks: int) -> None:
        meta = json.dumps({"size": blob.size, "mime": blob.mime})
        keys = [self._meta, self._uploads]
        await self._c.script("_COMMIT_BLOB", keys, [blob.sha256, meta, upload_id, chunks, self._base])

    async def _abort(self, upload_id: str) -> None:
        await self._c.do(self._uploads, "ZREM", self._uploads, upload_id)
        await self._c.script("_DROP_CHUNKS", [self._uploads], [self._base, f"up:{upload_id}"])

    async def _stat(self, sha256: str) -> BlobContent | None:
        raw = await self._c.do(self._meta, "HGET", self._meta, sha256)
        return None if raw is None else self._blob(sha256, raw)

    def _blob(self, sha256: str, raw: bytes) -> BlobContent:
        try:
            meta = json.loads(raw)
            return BlobContent(sha256=sha256, size=meta["size"], mime=meta["mime"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptRecord(f"{self._meta}[{sha256}]", str(exc)) from exc

    async def _chunk(self, sha256: str, index: int) -> bytes | None:
        return await self._c.do(self._base, "GET", f"{self._base}c:{sha256}:{index}")

    async def _delete(self, sha256: str) -> bool:
        return bool(await self._c.script("_DELETE_BLOB", [self._meta], [self._base, sha256]))

    async def _list(self, after: str | None, limit: int | None) -> list[BlobContent]:
        # HKEYS is O(blobs); a blob store holds far fewer entries than it holds bytes
        digests = {k.decode() for k in await self._c.do(self._meta, "HKEYS", self._meta)}
        page = _sorted_page(digests, after, limit)
        raws = await self._c.do(self._meta, "HMGET", self._meta, *page) if page else []
        return [self._blob(sha, raw) for sha, raw in zip(page, raws, strict=True) if raw is not None]

    async def drop_stale_uploads(self) -> int:
        cutoff = time.time() - _STALE_UPLOAD_SECONDS
        stale = await self._c.do(self._uploads, "ZRANGEBYSCORE", self._uploads, "-inf", cutoff)
        for upload_id in stale:
            await self._abort(upload_id.decode())
        return len(stale)


# ------------------------------------------------------------------------- adaptive


class AdaptiveKeys:
    """NeMo Relay's key names, with a per-owner hash tag in cluster mode."""

    def __init__(self, prefix: str, cluster: bool) -> None:
        self.prefix = prefix
        self.cluster = cluster

    def key(self, family: str, owner: str, suffix: str = "") -> str:
        """``{prefix}[{tag}]{family}:{owner}{suffix}``, e.g. family ``plan`` or ``runs_index``."""
        tag = _slot_tag(owner) if self.cluster else ""
        return f"{self.prefix}{tag}{family}:{owner}{suffix}"

    def run(self, agent_id: str, run_id: str) -> str:
        return self.key("runs", agent_id, ":" + run_id)

    def pattern(self, family: str) -> str:
        tag = "{*}" if self.cluster else ""
        return _glob_escape(self.prefix) + _glob_escape(tag).replace("\\*", "*") + f"{family}:*"

    def owner_of(self, key: str, family: str) -> str | None:
        """The owner named by a scanned key of ``family``, or None if the key is not ours."""
        rest = key[len(self.prefix) :]
        tag = ""
        if self.cluster:
            tag, _, rest = rest.partition("}")
            tag += "}"
        if not rest.startswith(family + ":"):
            return None
        owner = rest[len(family) + 1 :]
        if self.cluster and tag != _slot_tag(owner):
            return None
        return owner


class RedisAdaptiveStore(AdaptiveStore):
    """Adaptive state in NeMo Relay's RedisBackend layout (see the module docstring)."""

    def __init__(self, conn: RedisConnection, keys: AdaptiveKeys, ttl: int | None) -> None:
        self._c = conn
        self._k = keys
        self._ttl = ttl or 0

    def _run_keys(self, agent_id: str) -> tuple[str, str]:
        return self._k.key("runs_index", agent_id), self._k.key("runs_trimmed", agent_id)

    async def _store_run(self, agent_id: str, run_id: str, text: str) -> None:
        index, trimmed = self._run_keys(agent_id)
        keys = [self._k.run(agent_id, run_id), index, trimmed]
        if not await self._c.script("_STORE_RUN", keys, [run_id, text, self._ttl]):
            raise Conflict(f"agent {agent_id!r} already has run {run_id}")

    async def _list_runs(
        self, agent_id: str, after: int | None, limit: int | None
    ) -> list[tuple[int, str, str]]:
        # Dangling index entries (expired or deleted runs) are skipped, so keep reading pages
        # until ``limit`` rows are found or the index ends: one extra round trip pair per gap.
        rows: list[tuple[int, str, str]] = []
        while limit is None or len(rows) < limit:
            want = None if limit is None else limit - len(rows)
            batch, after, exhausted = await self._run_page(agent_id, after, want)
            rows += batch
            if exhausted:
                break
        return rows

    async def _run_page(
        self, agent_id: str, after: int | None, want: int | None
    ) -> tuple[list[tuple[int, str, str]], int | None, bool]:
        """One LRANGE and one MGET: ``(rows, last seq read, whether the index ended)``."""
        index, trimmed = self._run_keys(agent_id)
        first, ids = await self._c.script(
            "_RUN_IDS", [index, trimmed], [-1 if after is None else after, want or 0]
        )
        keys = [self._k.run(agent_id, rid.decode()) for rid in ids]
        texts = await self._c.mget(keys) if keys else []
        rows = [
            (first + i + 1, key, _text(text, key) or "")
            for i, (key, text) in enumerate(zip(keys, texts, strict=True))
            if text is not None
        ]
        last = first + len(ids) if ids else after
        return rows, last, want is None or len(ids) < want

    async def _count_runs(self, agent_id: str) -> int:
        index = self._run_keys(agent_id)[0]
        return int(await self._c.do(index, "LLEN", index))

    async def _prune_runs(self, agent_id: str, keep: int) -> int:
        index, trimmed = self._run_keys(agent_id)
        pruned = 0
        while True:
            drop = await self._count_runs(agent_id) - keep
            if drop <= 0:
                return pruned
            ids = [r.decode() for r in await self._c.do(index, "LRANGE", index, 0, min(drop, _CHUNK) - 1)]
            keys = [index, trimmed, *(self._k.run(agent_id, rid) for rid in ids)]
            done = int(await self._c.script("_PRUNE_RUNS", keys, [keep, *ids]))
            pruned += max(done, 0)  # -1: a concurrent prune got there first; look again

    async def _owners(self, families: Sequence[str]) -> set[str]:
        owners: set[str] = set()
        for family in families:
            for key in await self._c.scan(self._k.pattern(family)):
                owner = self._k.owner_of(key, family)
                if owner is not None:
                    owners.add(owner)
        return owners

    async def _list_agents(self, after: str | None, limit: int | None) -> list[str]:
        owners = await self._owners(["runs_index", "plan", "trie", "accumulators"])
        return _sorted_page(owners, after, limit)

    async def _get_doc(self, kind: DocKind, key: str) -> str | None:
        name = self._k.key(kind, key)
        return _text(await self._c.do(name, "GET", name), name)

    async def _put_doc(self, kind: DocKind, key: str, text: str) -> None:
        name = self._k.key(kind, key)
        await self._c.do(name, "SET", name, text)

    async def _delete_doc(self, kind: DocKind, key: str) -> bool:
        name = self._k.key(kind, key)
        return bool(await self._c.do(name, "DEL", name))

    async def _list_keys(self, kind: DocKind, after: str | None, limit: int | None) -> list[str]:
        return _sorted_page(await self._owners([kind]), after, limit)

    async def _update_doc(
        self, kind: DocKind, key: str, apply: Callable[[str | None], str | None]
    ) -> str | None:
        name = self._k.key(kind, key)
        for attempt in range(_MAX_CAS_ATTEMPTS):
            began = time.monotonic()
            current = await self._get_doc(kind, key)
            new = apply(current)
            if new is None:
                return current
            digest = "" if current is None else hashlib.sha1(current.encode()).hexdigest()
            if await self._c.script("_CAS_DOC", [name], [digest, new]):
                return new
            # Another process won. Randomized exponential backoff in units of one attempt (capped
            # at 50 ms): losers step aside instead of all redoing a large decode-apply-encode at
            # once and mostly losing again. Writers in this process already take turns.
            spent = time.monotonic() - began
            await asyncio.sleep(min(random.random() * spent * 2 ** min(attempt, 5), 0.05))
        raise Conflict(f"{name} kept changing; gave up after {_MAX_CAS_ATTEMPTS} attempts")


# ------------------------------------------------------------------------- opening


@dataclass
class RedisConfig:
    """What a ``redis://`` URL and its options say."""

    hosts: list[tuple[str, int]]
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    cluster: bool = False
    prefix: str = DEFAULT_PREFIX
    ttl: int | None = None
    timeout: float = 5.0
    extra: dict[str, str] = field(default_factory=dict)


def _parse_hosts(hostlist: str, url: str) -> list[tuple[str, int]]:
    hosts = []
    for item in hostlist.split(","):
        try:
            parts = urlsplit("//" + item)
            hosts.append((parts.hostname or "127.0.0.1", parts.port or 6379))
        except ValueError as exc:
            raise InvalidInput(f"{url!r}: bad host {item!r}: {exc}") from None
    return hosts


def parse_url(url: str, options: dict[str, Any]) -> RedisConfig:
    """Parse a ``redis://``, ``rediss://`` or ``redis+cluster://`` URL plus keyword options."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"redis", "rediss", "redis+cluster"}:
        raise InvalidInput(f"not a redis URL: {url!r}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    opts = merge_options(parts.query, options, {"prefix", "ttl", "timeout", "cluster"}, "redis")
    cluster_flag = flag(opts, "cluster", False, blank_is_false=True)
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise InvalidInput(f"{url!r}: the path must be a database number")
    config = RedisConfig(
        hosts=_parse_hosts(hostlist or "127.0.0.1:6379", url),
        db=int(db_text),
        username=unquote(username) or None,
        password=unquote(password) or None,
        tls=scheme == "rediss",
        cluster=scheme == "redis+cluster" or cluster_flag,
        prefix=opts.get("prefix", DEFAULT_PREFIX),
        ttl=number(opts, "ttl", int, None, low=0, exclusive=True),
        timeout=number(opts, "timeout", float, 5.0, low=0, exclusive=True),
    )
    if config.cluster and config.db != 0:
        raise InvalidInput("Redis Cluster has only database 0")
    if not config.cluster and len(config.hosts) != 1:
        raise InvalidInput(f"{url!r}: several hosts need redis+cluster:// or ?cluster=1")
    return config


def _client(config: RedisConfig) -> Redis | RedisCluster:
    # No client-side retries: a retried script could apply twice (store_run would then report a
    # Conflict for its own write). A failed call raises; the pool reconnects on the next one.
    common: dict[str, Any] = {
        "username": config.username,
        "password": config.password,
        "ssl": config.tls,
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if config.cluster:
        nodes = [ClusterNode(host, port) for host, port in config.hosts]
        return RedisCluster(startup_nodes=nodes, **common)
    host, port = config.hosts[0]
    return Redis(host=host, port=port, db=config.db, **common)


async def open_store(url: str, **options: Any) -> Store:
    """Connect to Redis (or a Redis Cluster) and return a :class:`Store` on it.

    Options: ``prefix`` (str), ``ttl`` (int seconds, run records only), ``timeout`` (float
    seconds, per round trip) and ``cluster`` (bool). Raises :class:`InvalidInput` for a bad URL
    or option and :class:`BackendUnavailable` when the server cannot be reached.
    """
    config = parse_url(url, options)
    conn = RedisConnection(_client(config), config.timeout, config.cluster)
    blobs = RedisBlobStore(conn, config.prefix)
    try:
        if config.cluster:
            await conn.call("cluster", conn.client.initialize)
        await conn.do("PING", "PING")
        await blobs.drop_stale_uploads()
    except BaseException:
        await conn.close()
        raise

    async def info() -> dict[str, Any]:
        server = await conn.call("INFO", lambda: conn.client.info("server"))
        if "redis_version" not in server:  # a cluster may answer with one section per node
            server = next((v for v in server.values() if isinstance(v, dict)), {})
        return {
            "prefix": config.prefix,
            "cluster": config.cluster,
            "ttl": config.ttl,
            "timeout": config.timeout,
            "redis_version": server.get("redis_version"),
        }

    return Store(
        url,
        "redis",
        RedisCheckpointStore(conn, config.prefix),
        RedisOutputStore(conn, config.prefix),
        RedisAdaptiveStore(conn, AdaptiveKeys(config.prefix, config.cluster), config.ttl),
        blobs=blobs,
        items=RedisItemStore(conn, config.prefix),
        close=conn.close,
        info=info,
        concurrent_calls=True,
    )
