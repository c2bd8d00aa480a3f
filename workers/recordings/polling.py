"""How often a confirmed session is queried: the one decision the web process shares with the workers
(``/metrics`` shows the interval a fleet gets, see ``docs/orchestration.md``)."""

from __future__ import annotations

from workers.agora.ratelimit import MARGIN_MS, POLL_SHARE

#: Agora's high-availability window: a task missing from ``query`` answers for this long may be migrating.
MISSING_WINDOW = 90.0
POLL_EVERY = 120.0
#: However large the fleet, a confirmed session is queried at least this often: three HA windows, so that a
#: silent death is seen well within MISSING_LIMIT (the rate limit's poll share sets the interval between).
POLL_EVERY_MAX = 3 * MISSING_WINDOW
#: Polls are spread over the last 10 % of the interval, so sessions started together do not poll together.
POLL_JITTER = 0.1


def poll_interval(active: int, per_second: float) -> tuple[float, bool]:
    """The routine poll interval for a fleet of ``active`` recordings sharing ``per_second`` Agora requests:
    polls use at most :data:`~workers.agora.ratelimit.POLL_SHARE` of the budget (the rest stays free for starts,
    stops and changes). Never below POLL_EVERY; capped at POLL_EVERY_MAX, and then ``True``: the fleet is too
    large for its App ID's budget to watch every session as often as the HA window wants (on /metrics)."""
    budget = per_second * POLL_SHARE * 1000 / (1000 + MARGIN_MS) if per_second > 0 else 0.0
    wanted = max(POLL_EVERY, active / budget) if budget > 0 else POLL_EVERY
    return min(wanted, POLL_EVERY_MAX), wanted > POLL_EVERY_MAX
