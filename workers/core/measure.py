"""Measurements the workers record in Redis for ``/metrics`` (:mod:`webhook_service.api.metrics` reads them at scrape).

Every process writes into the same few hashes, so any web process's scrape sees the whole fleet. Each write is
one round trip, made after the work it measures; a failed write is logged at debug level and forgotten (a
measurement never breaks the work it measures).

* ``acr:hist:apply``: seconds from a callback's acceptance (its inbox entry id, Redis's clock) to the drain
  that applied it (Redis's clock again, read by the script): one field per bucket (its upper bound in
  milliseconds, or ``+Inf``) counting the events that fell in it (not cumulative), and ``sum_ms``.
* ``acr:hist:agora``: every request sent to Agora (each host attempt), by endpoint and outcome
  (:class:`workers.agora.outcomes.Outcome`, or ``transport_error`` when no answer came): fields
  ``<endpoint>|<outcome>|<bucket>`` (bound in milliseconds, not cumulative) and ``<endpoint>|<outcome>|sum_us``.
* ``acr:recordings:state``: the state of every non-terminal recording a step has saved, ``<state> <since ms>``
  (terminal ones are removed); and in ``acr:stats``, ``entered:<state>`` counts the recordings that entered
  each state. Writing the state (a set, not an increment) makes the gauge self-correcting; see the README.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from workers.core import schema, scripts

log = logging.getLogger(__name__)


#: Upper bounds (milliseconds) of the accepted-to-applied histogram.
APPLY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000)
#: Upper bounds (milliseconds) of the Agora request duration histogram.
AGORA_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10_000, 20_000)
INF = "+Inf"
TRANSPORT_ERROR = "transport_error"


def bucket_of(value_ms: float, bounds: Sequence[int]) -> str:
    """The field of the bucket ``value_ms`` falls in (its upper bound, or ``+Inf``)."""
    for bound in bounds:
        if value_ms <= bound:
            return str(bound)
    return INF


def record_applied(connection: redis.Redis, entries: Sequence[tuple[bytes, object]]) -> None:
    """Count the inbox entries a drain just applied (``(entry id, fields)`` pairs) in the apply histogram."""
    if not entries:
        return
    try:
        accepted = [int(entry_id.split(b"-", 1)[0]) for entry_id, _ in entries]
        scripts.COUNT_APPLIED(
            connection,
            keys=[schema.APPLY_HISTOGRAM],
            args=[len(APPLY_BUCKETS_MS), *APPLY_BUCKETS_MS, *accepted],
        )
    except (redis.RedisError, ValueError):
        log.debug("apply latency not recorded", exc_info=True)


def record_agora(connection: redis.Redis, endpoint: str, outcome: str, seconds: float) -> None:
    """Count one request sent to Agora: its endpoint, outcome and duration."""
    prefix = f"{endpoint}|{outcome}|"
    try:
        pipe = connection.pipeline(transaction=False)
        pipe.hincrby(schema.AGORA_HISTOGRAM, prefix + bucket_of(seconds * 1000, AGORA_BUCKETS_MS), 1)
        pipe.hincrby(schema.AGORA_HISTOGRAM, prefix + "sum_us", max(0, round(seconds * 1_000_000)))
        pipe.execute()
    except redis.RedisError:
        log.debug("agora request not recorded", exc_info=True)


def record_state(
    connection: redis.Redis, recording_id: str, state: str, *, terminal: bool, entered: bool
) -> None:
    """Note a recording's state after a save; ``entered`` when it changed into it (counted once)."""
    try:
        scripts.NOTE_STATE(
            connection,
            keys=[schema.RECORDING_STATES, schema.STATS],
            args=[recording_id, state, 1 if terminal else 0, 1 if entered else 0],
        )
    except redis.RedisError:
        log.debug("recording state not recorded", exc_info=True)
