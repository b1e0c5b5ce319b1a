"""The Redis backend's Lua scripts, by face: every multi-key write is one script (atomic, one
round trip), and reads that need several keys at once are too.

KEYS are always declared, so every script is valid in cluster mode (all its keys share a tag); a
script that builds further key names itself (chunks, pending writes) builds them under the same
tag, so in the same slot. :class:`~relaystore.backends.redis.connection.RedisConnection`
registers every entry of :data:`SCRIPTS` once and runs one by name.

Names starting with ``_`` (and :data:`LUA_ENCODE`) are Lua fragments that define local functions,
prepended to the scripts that use them.
"""

# ------------------------------------------------------------------------- shared fragments

# The next number of a store-order counter, checked against the data: the highest score of the
# ZSET it orders. A counter that holds no decimal number (a flipped byte), holds one Redis' INCR
# refuses ("02"), or is behind that score is rebuilt from the score, so one damaged counter can
# neither reuse a seq in that ZSET nor fail every later append.
_NEXT_SEQ_FN = """
local function checked_counter(raw, floor)
  local last = nil
  if raw and string.match(raw, '^%d+$') then last = tonumber(raw) end
  if last == nil or last < floor then return floor end
  return last
end
local function next_seq(counter, index)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')[2]
  local seq = checked_counter(redis.call('GET', counter), tonumber(top or '0')) + 1
  redis.call('SET', counter, string.format('%d', seq))
  return seq
end
"""

# KEYS: counter. ARGV: the highest number the data uses. Rewrites the counter if it is not a
# canonical decimal at or above that number; returns 1 if it did.
REPAIR_COUNTER = (
    _NEXT_SEQ_FN
    + """
local raw = redis.call('GET', KEYS[1])
local fixed = string.format('%d', checked_counter(raw, tonumber(ARGV[1])))
if raw == fixed then return 0 end
redis.call('SET', KEYS[1], fixed)
return 1
"""
)

# A page of a seq-scored ZSET with each member's hash field: ``rows`` flattens a WITHSCORES reply
# into seq, member, value (nil if missing) triples; ``limited`` adds LIMIT 0 n when n > 0.
_ROWS = """
local function limited(args, limit)
  if limit > 0 then table.insert(args, 'LIMIT'); table.insert(args, 0); table.insert(args, limit) end
  return args
end
local function rows(found, hash)
  local out = {}
  for i = 1, #found, 2 do
    table.insert(out, tonumber(found[i + 1]))
    table.insert(out, found[i])
    table.insert(out, redis.call('HGET', hash, found[i]))
  end
  return out
end
"""

# ------------------------------------------------------------ adaptive (NeMo Relay's layout)

STORE_RUN = """
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
RUN_IDS = """
local trimmed = tonumber(redis.call('GET', KEYS[2]) or '0')
local after, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local start = 0
if after >= 0 then start = math.max(0, after - trimmed) end
local stop = -1
if count > 0 then stop = start + count - 1 end
return {trimmed + start, redis.call('LRANGE', KEYS[1], start, stop)}
"""

# Deletes the oldest runs only if they are still the ids the caller read and ``keep`` still holds.
PRUNE_RUNS = """
local n = #ARGV - 1
if redis.call('LLEN', KEYS[1]) - tonumber(ARGV[1]) < n then return -1 end
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
for i = 1, n do if head[i] ~= ARGV[i + 1] then return -1 end end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('LTRIM', KEYS[1], n, -1)
redis.call('INCRBY', KEYS[2], n)
return n
"""

CAS_DOC = """
local current = redis.call('GET', KEYS[1])
local digest = ''
if current then digest = redis.sha1hex(current) end
if digest ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

# ------------------------------------------------------------------------- checkpoints

# KEYS: order, meta, state, threads, seq, attachments, attachment keys.
# ARGV: thread, id, cas flag, expected head, metadata, state, then attachment key, value, ...
# The checks come first and write nothing, so a Conflict leaves the attachments unwritten too.
SAVE_CHECKPOINT = (
    _NEXT_SEQ_FN
    + """
local head = redis.call('ZRANGE', KEYS[1], -1, -1)[1] or ''
if ARGV[3] == '1' and head ~= ARGV[4] then return {'head', head} end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return {'dup'} end
local seq = next_seq(KEYS[5], KEYS[1])
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
)

LOAD_CHECKPOINT = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

LOAD_LATEST_CHECKPOINT = """
local id = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
if not id then return false end
return {id, redis.call('HGET', KEYS[2], id), redis.call('HGET', KEYS[3], id)}
"""

# KEYS: order, meta. ARGV: after seq ('' for none), limit (0 for none), newest first flag.
# Flat reply: seq, id, metadata (nil if missing) per checkpoint.
LIST_CHECKPOINTS = (
    _ROWS
    + """
local after, newest = ARGV[1], ARGV[3] == '1'
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
return rows(redis.call(unpack(limited(args, tonumber(ARGV[2])))), KEYS[2])
"""
)

# base64url without padding, as :func:`.layout.encode` in Python: cascades build the key of each deleted
# checkpoint's pending writes from ids they only learn inside the script (prune, delete_thread).
LUA_ENCODE = """
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
DELETE_CHECKPOINT = """
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
DELETE_THREAD = (
    LUA_ENCODE
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
_DROP_ORPHANS_FN = """
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
DELETE_ORPHAN_WRITES = LUA_ENCODE + _DROP_ORPHANS_FN + "return drop_orphans(KEYS[1], KEYS[2], ARGV[1])"

# KEYS: order, meta, state, threads, write ids. ARGV: thread, keep, writes stem.
PRUNE_CHECKPOINTS = (
    LUA_ENCODE
    + _DROP_ORPHANS_FN
    + """
local drop = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if drop <= 0 then drop_orphans(KEYS[1], KEYS[5], ARGV[3]) return 0 end
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
PUT_WRITES = """
redis.call('SADD', KEYS[1], ARGV[1])
local verb = 'HSETNX'
if ARGV[2] == '1' then verb = 'HSET' end
for i = 3, #ARGV, 2 do redis.call(verb, KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: attachments, attachment keys. ARGV: key, value, key, value, ...
PUT_ATTACHMENTS = """
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], 0, ARGV[i])
end
return 1
"""

# KEYS: attachments, attachment keys. ARGV: keys. Returns how many existed.
DELETE_ATTACHMENTS = """
local n = 0
for i = 1, #ARGV do
  n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return n
"""

# ------------------------------------------------------------------------- outputs

# KEYS: seq, records, then every zset the output joins (indexes, the first being "all", then
# parents' children). ARGV[2] is the record's JSON without "seq"; the script splices the new seq
# in as the first field.
INSERT_OUTPUT = (
    _NEXT_SEQ_FN
    + """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return -1 end
local seq = next_seq(KEYS[1], KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], '{"seq":' .. string.format('%d', seq) .. ',' .. string.sub(ARGV[2], 2))
for i = 3, #KEYS do redis.call('ZADD', KEYS[i], seq, ARGV[1]) end
return seq
"""
)

LATEST_OUTPUT = """
local ref = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
if not ref then return false end
return {ref, redis.call('HGET', KEYS[2], ref)}
"""

# KEYS: index, records. ARGV: low score bound, limit (0 for none).
# Flat reply: seq, ref, record per output.
LIST_OUTPUTS = (
    _ROWS
    + """
local args = {'ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES'}
return rows(redis.call(unpack(limited(args, tonumber(ARGV[2])))), KEYS[2])
"""
)

CHILDREN_OUTPUTS = """
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

# ------------------------------------------------------------------------- blobs

# Blobs: KEYS = meta hash, uploads zset; ARGV = sha, meta JSON, upload id, chunk count, key base.
# Every blob key shares the "{blob}" hash tag, so building chunk keys in Lua stays in one slot.
COMMIT_BLOB = """
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

# Deletes ``{base}{stem}:0``, ``:1``, … until one is missing; returns how many existed.
_DROP_CHUNKS_FN = """
local function drop_chunks(base, stem)
  local i = 0
  while redis.call('DEL', base .. stem .. ':' .. i) == 1 do i = i + 1 end
  return i
end
"""

# KEYS = uploads zset (or meta hash); ARGV = key base, chunk key stem ('up:<id>' or 'c:<sha>').
DROP_CHUNKS = _DROP_CHUNKS_FN + "return drop_chunks(ARGV[1], ARGV[2])"

# KEYS = meta hash; ARGV = key base, sha.
DELETE_BLOB = (
    _DROP_CHUNKS_FN
    + """
if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
drop_chunks(ARGV[1], 'c:' .. ARGV[2])
return 1
"""
)

# ------------------------------------------------------------------------- items
# KEYS: namespaces ZSET, expiry ZSET, then one namespace hash per entry. ARGV: now, then per entry
# 't' (touch), 'd' (delete), 'x' (delete if expired) + namespace, key; or 'p' (put) + namespace,
# key, value JSON, ttl ('' for none), packed vectors ('' for none). Returns how many it removed.
_ITEM_HEADER = (
    "local function header(r) return string.match(r, '^([^|]*)|([^|]*)|([^|]*)|([^\\n]*)\\n') end\n"
)
ITEM_WRITE = (
    _ITEM_HEADER
    + """
local now = tonumber(ARGV[1])
local function fmt(x) return string.format('%.6f', x) end
local a, removed = 2, 0
for k = 3, #KEYS do
  local h, kind, ns, key = KEYS[k], ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local member = ns .. '\\0' .. key
  local old = redis.call('HGET', h, key)
  local c, u, e, t
  if old then c, u, e, t = header(old) end
  local live = old and (e == '' or tonumber(e) > now)
  if kind == 't' then
    if live and t ~= '' then
      local expires = fmt(now + tonumber(t))
      local body = string.sub(old, string.find(old, '\\n', 1, true) + 1)
      redis.call('HSET', h, key, c .. '|' .. u .. '|' .. expires .. '|' .. t .. '\\n' .. body)
      redis.call('ZADD', KEYS[2], expires, member)
    end
    a = a + 3
  elseif kind == 'd' or kind == 'x' then
    if old and (kind == 'd' or not live) then
      redis.call('HDEL', h, key)
      redis.call('HDEL', h .. ':v', key)
      redis.call('ZREM', KEYS[2], member)
      if redis.call('HLEN', h) == 0 then redis.call('ZREM', KEYS[1], ns) end
      removed = removed + 1
    end
    a = a + 3
  else
    local value, ttl, vectors = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    local created, updated = fmt(now), fmt(now)
    if live then created = c end
    if old then updated = fmt(math.max(now, tonumber(u) + 0.000001)) end
    local expires = ''
    if ttl ~= '' then expires = fmt(now + tonumber(ttl)) end
    redis.call('HSET', h, key, created .. '|' .. updated .. '|' .. expires .. '|' .. ttl .. '\\n' .. value)
    if vectors ~= '' then redis.call('HSET', h .. ':v', key, vectors)
    else redis.call('HDEL', h .. ':v', key) end
    if expires ~= '' then redis.call('ZADD', KEYS[2], expires, member)
    else redis.call('ZREM', KEYS[2], member) end
    redis.call('ZADD', KEYS[1], 0, ns)
    a = a + 6
  end
end
return removed
"""
)
# KEYS: one namespace hash per item. ARGV: the items' keys, in the same order.
ITEM_GET = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], ARGV[i]) or false end
return out
"""


SCRIPTS: dict[str, str] = {
    "REPAIR_COUNTER": REPAIR_COUNTER,
    "COMMIT_BLOB": COMMIT_BLOB,
    "DROP_CHUNKS": DROP_CHUNKS,
    "DELETE_BLOB": DELETE_BLOB,
    "STORE_RUN": STORE_RUN,
    "RUN_IDS": RUN_IDS,
    "PRUNE_RUNS": PRUNE_RUNS,
    "CAS_DOC": CAS_DOC,
    "SAVE_CHECKPOINT": SAVE_CHECKPOINT,
    "LOAD_CHECKPOINT": LOAD_CHECKPOINT,
    "LOAD_LATEST_CHECKPOINT": LOAD_LATEST_CHECKPOINT,
    "LIST_CHECKPOINTS": LIST_CHECKPOINTS,
    "DELETE_CHECKPOINT": DELETE_CHECKPOINT,
    "DELETE_THREAD": DELETE_THREAD,
    "PRUNE_CHECKPOINTS": PRUNE_CHECKPOINTS,
    "PUT_WRITES": PUT_WRITES,
    "DELETE_ORPHAN_WRITES": DELETE_ORPHAN_WRITES,
    "PUT_ATTACHMENTS": PUT_ATTACHMENTS,
    "DELETE_ATTACHMENTS": DELETE_ATTACHMENTS,
    "INSERT_OUTPUT": INSERT_OUTPUT,
    "LATEST_OUTPUT": LATEST_OUTPUT,
    "LIST_OUTPUTS": LIST_OUTPUTS,
    "CHILDREN_OUTPUTS": CHILDREN_OUTPUTS,
    "ITEM_WRITE": ITEM_WRITE,
    "ITEM_GET": ITEM_GET,
}
