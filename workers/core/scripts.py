"""Every Lua script the service runs, in one place, each hashed once at import and run by its SHA.

Scripts are how a step that must not be half-done is done in one atomic Redis step (accepting a callback,
saving a recording, taking a rate-limit slot...). Every key a script touches comes through ``KEYS``, named in
Python by :mod:`workers.core.schema`; scripts build no key names themselves. Each block says what it expects
(KEYS, ARGV) and answers, and which module calls it.

Run one with any client or pipeline: ``scripts.ADMIT(client, keys=[...], args=[...])``. A Redis that lost its
script cache (restart, ``SCRIPT FLUSH``) gets the text again on the first miss.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis
from redis.commands.core import Script

#: Every script by name (tests load each into a real Redis to check it compiles).
ALL: dict[str, Lua] = {}


class Lua:
    """One script: its text, hashed once (redis-py's :class:`~redis.commands.core.Script`, which also loads
    it into a pipeline before the pipeline runs)."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        # Bytes: redis-py then needs no client to hash it, so every script is made once, at import.
        self._script = Script(cast(Any, None), source.encode())
        ALL[name] = self

    @property
    def sha(self) -> str:
        return self._script.sha

    def __call__(
        self, client: redis.Redis | redis.client.Pipeline, keys: Sequence[str], args: Iterable[Any] = ()
    ) -> Any:
        return self._script(keys=keys, args=list(args), client=client)


# ACCEPT, run by workers.ncs.inbox
# Accepts a batch of callbacks, each on its own: one failing (XADD refused) does not stop the others.
# Creates a drain job as RQ's ``Queue.enqueue`` would: a copy of the partition's job template that RQ itself
# serialised, pushed on RQ's queue.
# KEYS: rq queue, rq queues set, stats, then per event: dedupe marker, inbox stream, drain job template,
#       "drain queued" flag, the job key a new drain job would get
# ARGV: dedupe ttl s, enqueued_at (RQ's format), queued flag ttl s, then per event: notice id, raw body, the
#       id a new drain job would get
# Answers per event: 1 accepted, 0 duplicate, -1 no job template (nothing written), -2 not stored
_ENQUEUE_DRAIN = """
local function enqueue_drain(template, job_key, job_id, queue_key, queues_key, enqueued_at)
  redis.call('HSET', job_key, unpack(redis.call('HGETALL', template)))
  redis.call('HSET', job_key, 'status', 'queued', 'created_at', enqueued_at, 'enqueued_at', enqueued_at)
  redis.call('RPUSH', queue_key, job_id)
  redis.call('SADD', queues_key, queue_key)
  return job_id
end
"""
ACCEPT_KEYS_PER_EVENT = 5
ACCEPT_ARGS_PER_EVENT = 3
ACCEPT = Lua(
    "accept",
    _ENQUEUE_DRAIN
    + """
local ttl, enqueued_at, flag_ttl = ARGV[1], ARGV[2], ARGV[3]
local out, accepted, duplicates = {}, 0, 0
for e = 0, (#KEYS - 3) / 5 - 1 do
  local k, a = 3 + 5 * e, 3 + 3 * e
  local seen, inbox, template, queued, job_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local notice_id, body, job_id = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local result
  if redis.call('EXISTS', seen) == 1 then
    duplicates = duplicates + 1
    result = 0
  elseif redis.call('EXISTS', template) == 0 then
    result = -1
  else
    local added = redis.pcall('XADD', inbox, '*', 'n', notice_id, 'b', body)
    if type(added) == 'table' and added.err then
      result = -2
    else
      if redis.call('SET', queued, '1', 'NX', 'EX', flag_ttl) then
        enqueue_drain(template, job_key, job_id, KEYS[1], KEYS[2], enqueued_at)
      end
      redis.call('SET', seen, '1', 'EX', ttl)  -- last: an event not stored leaves no marker
      accepted = accepted + 1
      result = 1
    end
  end
  out[#out + 1] = result
end
if accepted > 0 then redis.call('HINCRBY', KEYS[3], 'accepted', accepted) end
if duplicates > 0 then redis.call('HINCRBY', KEYS[3], 'duplicate', duplicates) end
return out
""",
)

# WAKE_PARTITION, run by workers.ncs.inbox
# Queues a drain job for a partition unconditionally (the sweep found a stale backlog).
# KEYS: queued flag, job template, rq queue, rq queues set, the new job's key
# ARGV: enqueued_at, queued flag ttl s, the new job's id. Answers the job id, or -1 without a template.
WAKE_PARTITION = Lua(
    "wake_partition",
    _ENQUEUE_DRAIN
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
return enqueue_drain(KEYS[2], KEYS[5], ARGV[3], KEYS[3], KEYS[4], ARGV[1])
""",
)

# DUE_TIMERS, CLAIM_TIMERS, run by workers.recordings.timers
# DUE_TIMERS: KEYS: timers. ARGV: limit. Answers the ids due now (Redis time), earliest first.
DUE_TIMERS = Lua(
    "due_timers",
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
""",
)
# CLAIM_TIMERS: claims the due timers among the given ids (one still due when another worker claimed it first
# is skipped): each gets its "queued" flag and a lease, or, when its flag is set already (a step is queued, or
# its job was lost), is looked at again soon rather than after a whole lease.
# KEYS: timers, stats, then the queued flag of each id. ARGV: lease ms, queued ttl ms, recheck ms, the ids.
# Answers {ids whose step must be queued now, ids due whose flag was already set}.
CLAIM_TIMERS = Lua(
    "claim_timers",
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out, held = {}, {}
local late, fired = 0, 0
for i = 3, #KEYS do
  local id = ARGV[i + 1]
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id))
  if due and due <= now then
    fired = fired + 1
    late = math.max(late, now - due)
    if redis.call('SET', KEYS[i], 'claimed', 'NX', 'PX', tonumber(ARGV[2])) then
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
      table.insert(out, id)
    else
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id)
      table.insert(held, id)
    end
  end
end
if fired > 0 then
  redis.call('HINCRBY', KEYS[2], 'timers_fired', fired)
  local max = tonumber(redis.call('HGET', KEYS[2], 'timer_claim_late_max_ms') or '0')
  if late > max then redis.call('HSET', KEYS[2], 'timer_claim_late_max_ms', late) end
end
return {out, held}
""",
)

# CREATE_RECORDING, run by workers.recordings.store
# KEYS: idempotency key (or ""), document, timeline, listing index, active index, timers, admission queue of
#       its capacity class, admission counter
# ARGV: id, fingerprint, document, listing score, now ms, timeline entry, idempotency ttl, queue score base
# Answers {id, fingerprint}: ours when created, the first request's when the key was used before.
CREATE_RECORDING = Lua(
    "create_recording",
    """if KEYS[1] ~= '' then
  local held = redis.call('GET', KEYS[1])
  if held then
    local sep = string.find(held, ' ', 1, true)
    return {string.sub(held, 1, sep - 1), string.sub(held, sep + 1)}
  end
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[7])
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[7], tonumber(ARGV[8]) + redis.call('INCR', KEYS[8]), ARGV[1])
return {ARGV[1], ARGV[2]}
""",
)

# QUEUE_STOP, run by workers.recordings.store
# KEYS: stop-asked flag, commands, timeline. ARGV: command, flag ttl, timeline entry.
QUEUE_STOP = Lua(
    "queue_stop",
    """if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[3])
  return 1
end
return 0
""",
)

# SAVE_RECORDING, run by workers.recordings.runner: a step's whole outcome, only while the step holds the lock
# KEYS: lock, document, timeline, timers, active index, commands, poked flag, notification outbox, admission
#       queue, holders and waiting-after-406 set of its capacity class, then sid->recording keys and channel claim sets (every
#       recording that used a channel and uid)
# ARGV: token, document, id, wake at (-1: none), terminal (0/1), retention s, updated ms, commands to drop,
#       timeline cap, soon (ms, after a poke), number of sid keys, number of outbox entries, admission (0: holds
#       or waits for a slot, 1: gives its slot back, 2: holds one and waits after a 406), slots of its class,
#       the outbox entries, then the timeline entries
SAVE_RECORDING = Lua(
    "save_recording",
    """if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local id, retention, now = ARGV[3], tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('SET', KEYS[2], ARGV[2])
local outbox = tonumber(ARGV[12])
for i = 15, 14 + outbox do redis.call('RPUSH', KEYS[8], ARGV[i]) end
for i = 15 + outbox, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
if #ARGV >= 15 + outbox then redis.call('LTRIM', KEYS[3], -tonumber(ARGV[9]), -1) end
local q, slots, release, agora_full = 9, tonumber(ARGV[14]), ARGV[13] == '1', ARGV[13] == '2'
-- admission: record a wait after a 406, give a slot back, and wake who may use what freed: the recordings
-- waiting after a 406 first; when none waits, as many heads of the queue as slots are free
local moved = false
if agora_full then
  redis.call('SADD', KEYS[q + 2], id)
elseif redis.call('SREM', KEYS[q + 2], id) == 1 then
  moved = true
end
if release then
  -- only a slot or a queue place really given back frees anything (later saves of the same end do not)
  local held = redis.call('SREM', KEYS[q + 1], id) + redis.call('ZREM', KEYS[q], id)
  if held > 0 then moved = true end
end
if moved then
  local waiting = redis.call('SMEMBERS', KEYS[q + 2])
  for _, other in ipairs(waiting) do redis.call('ZADD', KEYS[4], 'LT', now, other) end
  if slots > 0 and #waiting == 0 then
    local free = slots - redis.call('SCARD', KEYS[q + 1])
    if free > 0 then
      for _, head in ipairs(redis.call('ZRANGE', KEYS[q], 0, free - 1)) do
        redis.call('ZADD', KEYS[4], 'LT', now, head)
      end
    end
  end
end

local wake = tonumber(ARGV[4])
if wake >= 0 and redis.call('DEL', KEYS[7]) == 1 then
  -- a wake-up came while this step ran (it found the lock held): look again soon, whatever was planned
  wake = math.min(wake, tonumber(ARGV[7]) + tonumber(ARGV[10]))
end
if wake >= 0 then redis.call('ZADD', KEYS[4], wake, id) else redis.call('ZREM', KEYS[4], id) end
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[5], id)
  redis.call('EXPIRE', KEYS[2], retention)
  redis.call('EXPIRE', KEYS[3], retention)
else
  redis.call('ZADD', KEYS[5], ARGV[7], id)
end
if tonumber(ARGV[8]) > 0 then redis.call('LTRIM', KEYS[6], tonumber(ARGV[8]), -1) end
local claims = 12 + tonumber(ARGV[11])
for i = 12, claims - 1 do redis.call('SET', KEYS[i], id, 'EX', retention) end
for i = claims, #KEYS do
  redis.call('SADD', KEYS[i], id)
  redis.call('EXPIRE', KEYS[i], retention)
end
return 1
""",
)

# EXTEND_LOCK, run by workers.recordings.runner
# KEYS: lock. ARGV: token, ttl ms. 1 when still held (and extended).
EXTEND_LOCK = Lua(
    "extend_lock",
    """if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
""",
)

# RELEASE_LOCK, run by workers.recordings.runner
RELEASE_LOCK = Lua(
    "release_lock",
    """if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""",
)

# TAKE_OVER_LOCK, run by workers.recordings.liveness
# KEYS: lock. ARGV: expected value, new value, ttl ms. 1 when taken over.
TAKE_OVER_LOCK = Lua(
    "take_over_lock",
    """if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
""",
)

# ADMIT, run by workers.recordings.admission
# KEYS: queue, holders, creation counter, waiting after a 406. ARGV: id, slots (0: no limit), holds already (0/1), its priority's
# score base (used when it is not queued yet: created before admission existed, or its place was lost).
# Answers 0 when the recording holds a slot (now or before), else its 1-based place among those waiting.
ADMIT = Lua(
    "admit",
    """local id, slots = ARGV[1], tonumber(ARGV[2])
if redis.call('SISMEMBER', KEYS[2], id) == 1 then return 0 end
if ARGV[3] == '1' or slots <= 0 then
  redis.call('SADD', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  return 0
end
local rank = redis.call('ZRANK', KEYS[1], id)
if not rank then
  redis.call('ZADD', KEYS[1], 'NX', tonumber(ARGV[4]) + redis.call('INCR', KEYS[3]), id)
  rank = redis.call('ZRANK', KEYS[1], id)
end
local free = slots - redis.call('SCARD', KEYS[2])
if redis.call('SCARD', KEYS[4]) > 0 then free = 0 end
if rank < free then
  redis.call('SADD', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  return 0
end
return rank - math.max(free, 0) + 1
""",
)

# KEEP_MAX, run by workers.recordings.timers
# KEYS: stats. ARGV: field, value. Keeps the maximum.
KEEP_MAX = Lua(
    "keep_max",
    """local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > held then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
""",
)

# APPEND_TIMELINE, run by workers.recordings.store
# KEYS: recording document, timeline. ARGV: entry, cap. Appends only to a recording that exists, and gives a
# timeline it creates the document's TTL (a finished recording's keys expire together).
APPEND_TIMELINE = Lua(
    "append_timeline",
    """if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 and redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
""",
)

# TAKE_SLOT, run by workers.agora.ratelimit
# KEYS: window, sequence, then the waiters of the tiers others yield to (stop, start, acquire: sorted sets of
# who waits, until when). ARGV: limit, window ms, limit while a tier it yields to has a waiter, the tiers it
# yields to ('1'/'0' each), the tier it waits as when refused (1-based, 0: none), how long a wait is kept
# past its slot's time (ms), the caller (waits of one caller replace each other; a slot taken ends its wait).
# Answers -n (go: counted as member n) or the milliseconds until a slot frees.
TAKE_SLOT = Lua(
    "take_slot",
    """local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
for i = 1, #ARGV[4] do
  if string.sub(ARGV[4], i, i) == '1' and redis.call('ZCOUNT', KEYS[2 + i], now_ms, '+inf') > 0 then
    limit = tonumber(ARGV[3])
  end
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window)
local count = redis.call('ZCARD', key)
local waits_as = tonumber(ARGV[5])
if count < limit then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', key, now_ms, seq)
  redis.call('PEXPIRE', key, window * 2)
  redis.call('PEXPIRE', KEYS[2], window * 2)
  if waits_as > 0 then redis.call('ZREM', KEYS[2 + waits_as], ARGV[7]) end
  return -seq
end
-- the send time whose expiry brings the window below this call's limit
local freeing = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
local wait = math.max(1, tonumber(freeing[2]) + window - now_ms + 1)
if waits_as > 0 then
  local waiters = KEYS[2 + waits_as]
  redis.call('ZREMRANGEBYSCORE', waiters, '-inf', now_ms)
  redis.call('ZADD', waiters, now_ms + wait + tonumber(ARGV[6]), ARGV[7])
  redis.call('PEXPIRE', waiters, wait + tonumber(ARGV[6]) + window)
end
return wait
""",
)

# RESTAMP_SLOT, run by workers.agora.ratelimit
# KEYS: window. ARGV: member. The slot's send time becomes now (it only ever moves later: never more requests
# in a window than were admitted).
RESTAMP_SLOT = Lua(
    "restamp_slot",
    """if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[1], 'XX', now[1] * 1000 + math.floor(now[2] / 1000), ARGV[1])
end
""",
)

# COUNT_APPLIED, run by workers.core.measure
# KEYS: histogram. ARGV: number of bounds, the bounds (ms), then the entries' acceptance times (ms).
COUNT_APPLIED = Lua(
    "count_applied",
    """local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[1])
local counts, sum = {}, 0
for i = nb + 2, #ARGV do
  local age = math.max(0, now - tonumber(ARGV[i]))
  sum = sum + age
  local field = '+Inf'
  for j = 2, nb + 1 do
    if age <= tonumber(ARGV[j]) then field = ARGV[j] break end
  end
  counts[field] = (counts[field] or 0) + 1
end
for field, count in pairs(counts) do redis.call('HINCRBY', KEYS[1], field, count) end
redis.call('HINCRBY', KEYS[1], 'sum_ms', sum)
return sum
""",
)

# NOTE_STATE, run by workers.core.measure
# KEYS: states hash, stats. ARGV: id, state, terminal (0/1), entered (0/1).
NOTE_STATE = Lua(
    "note_state",
    """if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], 'entered:' .. ARGV[2], 1) end
if ARGV[3] == '1' then return redis.call('HDEL', KEYS[1], ARGV[1]) end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.match(current, '^[^ ]+') == ARGV[2] then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
return 1
""",
)
