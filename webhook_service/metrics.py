"""``GET /metrics``: Prometheus text format, read from Redis at scrape time (every process sees the same numbers).

Counters come from the hash ``acr:stats`` the receiver and the drains keep; gauges from queue lengths and the
recordings indexes. If Redis does not answer, ``acr_redis_up`` is 0 and the rest is left out.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook_service.services import get_services
from workers import keys
from workers.notify import NOTIFY_QUEUE

bp = Blueprint("metrics", __name__)

QUEUES = (keys.NCS_QUEUE, keys.DEFAULT_QUEUE, NOTIFY_QUEUE)
OVERDUE_AFTER_MS = 5000


class RedisCollector(Collector):
    """One scrape: a few Redis reads in one pipeline."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def collect(self) -> Iterator[Metric]:
        try:
            pipe = self.connection.pipeline(transaction=False)
            pipe.hgetall(keys.STATS)
            for name in QUEUES:
                pipe.llen(f"rq:queue:{name}")
            for partition in range(keys.PARTITIONS):
                pipe.xlen(keys.inbox(partition))
            pipe.zcard(keys.TIMERS)
            pipe.time()
            pipe.zcard(keys.RECORDINGS_INDEX)
            pipe.zcard(keys.ACTIVE_RECORDINGS)
            answers = pipe.execute()
            seconds, micros = answers[-3]
            overdue = self.connection.zcount(
                keys.TIMERS, "-inf", seconds * 1000 + micros // 1000 - OVERDUE_AFTER_MS
            )
        except redis.RedisError:
            yield GaugeMetricFamily("acr_redis_up", "1 when Redis answered this scrape", value=0)
            return
        yield GaugeMetricFamily("acr_redis_up", "1 when Redis answered this scrape", value=1)
        stats = {k.decode(): int(v) for k, v in answers[0].items()}
        callbacks = CounterMetricFamily("acr_ncs_callbacks", "NCS callbacks answered 200", labels=["outcome"])
        callbacks.add_metric(["accepted"], stats.get("accepted", 0))
        callbacks.add_metric(["duplicate"], stats.get("duplicate", 0))
        yield callbacks
        yield CounterMetricFamily(
            "acr_events_applied", "callbacks applied to their session", value=stats.get("applied", 0)
        )
        yield CounterMetricFamily(
            "acr_events_redundant",
            "redundant copies dropped by the drains (same uid, sequence, type)",
            value=stats.get("dropped_duplicates", 0),
        )
        yield CounterMetricFamily(
            "acr_dead_letters",
            "stored callbacks the workers could not parse",
            value=stats.get("dead_lettered", 0),
        )
        queued = GaugeMetricFamily("acr_queue_jobs", "jobs waiting in each RQ queue", labels=["queue"])
        for name, length in zip(QUEUES, answers[1 : 1 + len(QUEUES)], strict=True):
            queued.add_metric([name], length)
        yield queued
        backlog = answers[1 + len(QUEUES) : 1 + len(QUEUES) + keys.PARTITIONS]
        yield GaugeMetricFamily(
            "acr_inbox_entries", "stored callbacks not yet trimmed from the inbox streams", value=sum(backlog)
        )
        yield GaugeMetricFamily("acr_timers", "recordings with a pending wake-up", value=answers[-4])
        yield GaugeMetricFamily(
            "acr_timers_overdue",
            f"wake-ups due more than {OVERDUE_AFTER_MS // 1000} s ago and not yet claimed (should stay 0)",
            value=overdue,
        )
        yield CounterMetricFamily(
            "acr_timers_fired", "wake-ups claimed by the workers", value=stats.get("timers_fired", 0)
        )
        yield GaugeMetricFamily(
            "acr_timer_late_max_seconds",
            "the latest a recording's step ever ran after its wake-up was due",
            value=stats.get("timer_late_max_ms", 0) / 1000,
        )
        yield GaugeMetricFamily(
            "acr_step_max_seconds",
            "the longest orchestration step so far (the lock outlasts it; see workers/recordings/timers.py)",
            value=stats.get("step_max_ms", 0) / 1000,
        )
        yield GaugeMetricFamily(
            "acr_recordings", "recordings ever created (and not expired)", value=answers[-2]
        )
        yield GaugeMetricFamily(
            "acr_recordings_active", "recordings not yet completed, backed up or failed", value=answers[-1]
        )


@bp.get("/metrics")
def metrics() -> Response:
    """The metrics, no token (restrict by network, as usual for /metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(get_services().redis))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
