"""One Agora request budget for every worker process: a sliding one-second window per App ID, in Redis.

Agora allows 10 requests per second per App ID by default (``agora-reference.md`` §2) and answers 429
beyond. Every worker asks :func:`take` before each REST call; the Lua script keeps the send times of the
last window in a sorted set and answers either "go" or how many milliseconds to wait. Redis's own clock is
used, so workers on different machines share one notion of time. The window is longer than a second by
``MARGIN_MS``: a request is counted when its slot is taken, but Agora counts it when it arrives, and between
the two lie the sender's own work, thread and process scheduling on a busy host, and the network. With a
50 ms margin one fleet run in four got 429s during a burst of 300 stops; the margin must cover the worst
take-to-arrival delay, not the typical one (measured in ``bench/README.md``).
"""

from __future__ import annotations

import time

import redis

from workers import keys

MARGIN_MS = 200
#: Periodic queries of confirmed sessions use at most this share of the window, so that starts, stops and
#: changes (the calls users feel) always find room when the budget is tight.
POLL_SHARE = 0.7

TAKE_LUA = """
local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window)
local count = redis.call('ZCARD', key)
if count < limit then
  local seq = redis.call('INCR', key .. ':seq')
  redis.call('ZADD', key, now_ms, now_ms .. ':' .. seq)
  redis.call('PEXPIRE', key, window * 2)
  redis.call('PEXPIRE', key .. ':seq', window * 2)
  return 0
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now_ms + 1)
"""


class RateLimiter:
    """``take()`` before each Agora call; shared by every process using the same Redis."""

    def __init__(self, connection: redis.Redis, app_id: str, per_second: int) -> None:
        self._script = connection.register_script(TAKE_LUA)
        self._key = keys.rate_limit(app_id)
        self.per_second = per_second

    def try_take(self, share: float = 1.0) -> int:
        """0 when a request may go now (and counts it), else milliseconds until one may. With ``share`` < 1
        the request goes only while the window is less than that share full (see :data:`POLL_SHARE`)."""
        if self.per_second <= 0:
            return 0
        limit = max(1, int(self.per_second * share))
        return int(self._script(keys=[self._key], args=[limit, 1000 + MARGIN_MS]))

    def take(self, max_wait_seconds: float = 1.0, share: float = 1.0) -> bool:
        """Wait for a slot up to ``max_wait_seconds``; False if none came (the caller reschedules)."""
        deadline = time.monotonic() + max_wait_seconds
        while True:
            wait_ms = self.try_take(share)
            if wait_ms == 0:
                return True
            if time.monotonic() + wait_ms / 1000 > deadline:
                return False
            time.sleep(wait_ms / 1000)
