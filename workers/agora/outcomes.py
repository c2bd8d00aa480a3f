"""One table from an Agora answer (endpoint, HTTP status, Agora ``code``) to what the caller does next.

Sources: ``docs/agora.md`` §3.9 (current status-code table, legacy codes and the retryability summary) and
§2 (start: 5xx and 65 retried with the same parameters, re-acquire when that keeps failing). Rows are tried in
order; ``None`` in a row matches anything. The orchestration decides *how often* and *how long*; this table only
says *what kind* of answer it was.
"""

from __future__ import annotations

import enum


class Outcome(enum.Enum):
    """What an Agora answer means for the caller."""

    OK = "ok"
    #: Send the same request again after a backoff (206/65, 5xx, 504/62, transport errors).
    RETRY = "retry"
    #: Over the App ID's QPS (429): back off harder, then send the same request again.
    RATE_LIMITED = "rate_limited"
    #: The resource ID is spent, expired or unusable (433, 1001, 502): acquire a new one, then start.
    REACQUIRE = "reacquire"
    #: A task already runs for this resource ID (201/7) or for this cname + uid (53).
    ALREADY_RUNNING = "already_running"
    #: stop found the task exiting or gone (49, 404 on stop).
    ALREADY_STOPPED = "already_stopped"
    #: query/update found no task (404): gone, never started, or an HA migration still in progress (≤ 90 s).
    NOT_FOUND = "not_found"
    #: stop: nobody published, nothing was recorded (206/435).
    NOTHING_RECORDED = "nothing_recorded"
    #: acquire: the App ID's concurrency quota is taken (400/406 ``vendor_over_load``): wait for capacity.
    OVER_CAPACITY = "over_capacity"
    #: The request itself is wrong or not allowed (400/2, 401, 432, 1003, ...): do not resend it unchanged.
    REJECTED = "rejected"


ANY = None

#: (endpoint or ANY, HTTP status or ANY, Agora code or ANY) -> Outcome, first match wins.
TABLE: tuple[tuple[str | None, int | None, int | None, Outcome], ...] = (
    (ANY, 200, ANY, Outcome.OK),
    (ANY, 429, ANY, Outcome.RATE_LIMITED),
    ("start", 201, 7, Outcome.ALREADY_RUNNING),
    ("start", ANY, 7, Outcome.ALREADY_RUNNING),
    ("start", ANY, 53, Outcome.ALREADY_RUNNING),
    ("stop", 206, 435, Outcome.NOTHING_RECORDED),
    ("stop", ANY, 435, Outcome.NOTHING_RECORDED),
    (ANY, 206, 65, Outcome.RETRY),
    (ANY, ANY, 65, Outcome.RETRY),
    ("acquire", ANY, 406, Outcome.OVER_CAPACITY),
    ("start", ANY, 433, Outcome.REACQUIRE),
    ("start", ANY, 1001, Outcome.REACQUIRE),
    ("start", 500, 502, Outcome.REACQUIRE),
    ("stop", ANY, 49, Outcome.ALREADY_STOPPED),
    ("stop", 404, 404, Outcome.ALREADY_STOPPED),
    (ANY, 404, 404, Outcome.NOT_FOUND),
    (ANY, ANY, 62, Outcome.RETRY),
    (ANY, 500, ANY, Outcome.RETRY),
    (ANY, 502, ANY, Outcome.RETRY),
    (ANY, 503, ANY, Outcome.RETRY),
    (ANY, 504, ANY, Outcome.RETRY),
    (ANY, 206, ANY, Outcome.RETRY),
)


def classify(endpoint: str, status: int, code: int | None) -> Outcome:
    """The Outcome for one answer; anything unlisted (other 4xx, 1xx/3xx) is REJECTED, other 5xx RETRY."""
    for row_endpoint, row_status, row_code, outcome in TABLE:
        if row_endpoint not in (ANY, endpoint):
            continue
        if row_status not in (ANY, status):
            continue
        if row_code not in (ANY, code):
            continue
        return outcome
    if status >= 500:
        return Outcome.RETRY
    return Outcome.REJECTED
