"""One Agora request budget for every worker process: a sliding one-second window per App ID, in Redis.

Agora allows 10 requests per second per App ID by default (``docs/agora.md`` §2) and answers 429
beyond. Every worker asks :func:`take` before each REST call; the Lua script keeps the send times of the
last window in a sorted set and answers either "go" or how many milliseconds to wait. Redis's own clock is
used, so workers on different machines share one notion of time. The window is longer than a second by
``MARGIN_MS``: a request is counted when its slot is taken, but Agora counts it when it arrives, and between
the two lie the sender's own work, thread and process scheduling on a busy host, and the network. With a
50 ms margin alone one fleet run in four got 429s during a burst of 300 stops: the sender's own work between
the take and the send (a write-ahead save on a loaded host) is unbounded. So the slot is stamped again right
before the request leaves (:meth:`RateLimiter.fresh`, called by the Agora client): the window holds send
times, and the margin covers only the socket and the network (measured in ``bench/README.md``).
"""

from __future__ import annotations

import secrets
import time
from typing import NamedTuple

import redis

from workers.core import schema, scripts

MARGIN_MS = 50
#: Periodic queries of confirmed sessions use at most this share of the window, so that starts, stops and
#: changes (the calls users feel) always find room when the budget is tight.
POLL_SHARE = 0.7


class Tier(NamedTuple):
    """How much of the window a kind of call may fill: ``share`` normally, ``yielding`` while a call of a
    tier it yields to waits for a slot; ``flag``: the waiting flag it raises when it finds no slot."""

    share: float
    yielding: float
    yields_to: tuple[str, ...] = ()
    flag: str | None = None


#: Priorities inside the one budget: stops, then starts (start, and the queries that confirm a start or
#: follow a 404 up: a recording already under way), then acquires (a new one), then changes (update,
#: updateLayout, pause, resume), then routine polls. A call goes only while the window is less than its share
#: full. A stop, a start or an acquire that finds no slot is registered as waiting until it takes one (or
#: half a second after its slot's time, if it never comes back); while one waits, the tiers below it yield: starts leave the last tenth of the window to stops, acquires the
#: last 40 % to starts and stops (a recording that acquired is started before new ones acquire: the fleet
#: starts depth first), changes keep 60 % and routine polls 40 % — enough to watch about 1,000 sessions every
#: 270 s on 10 requests/s. With nothing waiting above it, each tier uses its whole share.
TIERS: dict[str, Tier] = {
    "stop": Tier(1.0, 1.0, flag="stop"),
    "start": Tier(1.0, 0.9, yields_to=("stop",), flag="start"),
    "acquire": Tier(1.0, 0.6, yields_to=("stop", "start"), flag="acquire"),
    "change": Tier(0.8, 0.6, yields_to=("stop", "start", "acquire")),
    "poll": Tier(POLL_SHARE, 0.4, yields_to=("stop", "start", "acquire")),
}
WAITING_FLAGS = ("stop", "start", "acquire")
FLAG_OUTLASTS_MS = 500


class RateLimiter:
    """``take()`` before each Agora call; shared by every process using the same Redis."""

    def __init__(self, connection: redis.Redis, app_id: str, per_second: int) -> None:
        self._redis = connection
        self._keys = [
            schema.rate_limit(app_id),
            schema.rate_limit_sequence(app_id),
            *(schema.rate_limit_waiting(app_id, flag) for flag in WAITING_FLAGS),
        ]
        self.per_second = per_second
        self.taken: int | None = None  # the last slot this limiter took, until its request leaves
        self.caller = secrets.token_hex(6)  # who waits, when the caller does not say

    def try_take(self, tier: str = "start", caller: str = "") -> int:
        """0 when a request of this tier (:data:`TIERS`) may go now (and counts it), else milliseconds until
        one may. ``caller`` names who waits (a recording), so that its slot taken ends its wait."""
        if self.per_second <= 0:
            return 0
        rule = TIERS[tier]
        limit, limit_yielding = (max(1, int(self.per_second * s + 1e-9)) for s in (rule.share, rule.yielding))
        yields = "".join("1" if flag in rule.yields_to else "0" for flag in WAITING_FLAGS)
        raises = WAITING_FLAGS.index(rule.flag) + 1 if rule.flag else 0
        answer = int(
            scripts.TAKE_SLOT(
                self._redis,
                keys=self._keys,
                args=[
                    limit,
                    1000 + MARGIN_MS,
                    limit_yielding,
                    yields,
                    raises,
                    FLAG_OUTLASTS_MS,
                    caller or self.caller,
                ],
            )
        )
        if answer > 0:
            return answer
        self.taken = -answer
        return 0

    def take(self, max_wait_seconds: float = 1.0, tier: str = "start") -> bool:
        """Wait for a slot up to ``max_wait_seconds``; False if none came (the caller reschedules)."""
        deadline = time.monotonic() + max_wait_seconds
        while True:
            wait_ms = self.try_take(tier)
            if wait_ms == 0:
                return True
            if time.monotonic() + wait_ms / 1000 > deadline:
                return False
            time.sleep(wait_ms / 1000)

    def fresh(self) -> None:
        """Right before a request leaves: its slot is stamped with the time it really goes (a slow save or a
        busy host between the take and the send only keeps the slot longer in the window)."""
        if self.per_second <= 0 or self.taken is None:
            return
        scripts.RESTAMP_SLOT(self._redis, keys=self._keys[:1], args=[self.taken])
        self.taken = None
