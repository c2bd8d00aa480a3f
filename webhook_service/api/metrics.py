"""``GET /metrics``: Prometheus text format, read from Redis at scrape time (every process sees the same numbers).

Counters come from the hash ``acr:stats`` the receiver, the drains and the steps keep, and from the histograms
of :mod:`workers.core.measure`; gauges from queue lengths, RQ's registries, the inbox streams, the recordings
indexes and the rate-limit window. Two pipelined round trips per scrape. If Redis does not answer,
``acr_redis_up`` is 0 and the rest is left out.

Recordings per state: the steps keep ``acr:recordings:state`` (id -> state and since when) for non-terminal
recordings, and count entries into every state (terminal ones included) in ``acr:stats``. A scrape reads that
hash and the active index, both bounded by the recordings in flight (which Agora's rate limit bounds in turn:
every live session is queried at least every 2 minutes), never a recording's document. Active recordings no
step has saved yet are ``pending``; hash entries no longer in the active index (a removal that failed) are
ignored, and removed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import redis
from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from webhook_service.services import get_services
from workers.agora import MARGIN_MS
from workers.core import measure, schema
from workers.recordings import TERMINAL, State, admission_usage, poll_interval

bp = Blueprint("metrics", __name__)

QUEUES = schema.QUEUES
OVERDUE_AFTER_MS = 5000
RATE_WINDOW_MS = 1000 + MARGIN_MS
ACTIVE_STATES = tuple(s.value for s in State if s not in TERMINAL)
ALL_STATES = tuple(s.value for s in State)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_ms(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-", 1)[0])


def _cumulative(counts: dict[str, int], bounds_ms: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (le in seconds, cumulative) from per-bucket counts keyed by their bound in ms."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound in bounds_ms:
        total += counts.get(str(bound), 0)
        out.append((repr(bound / 1000), total))
    out.append(("+Inf", total + counts.get(measure.INF, 0)))
    return out


@dataclass
class Scrape:
    """What one scrape read from Redis."""

    now_ms: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    queued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    notify_scheduled: int = 0
    inbox: list[int] = field(default_factory=list)
    cursors: list[bytes | None] = field(default_factory=list)
    timers: int = 0
    recordings: int = 0
    active: set[str] = field(default_factory=set)
    states: dict[str, str] = field(default_factory=dict)
    apply: dict[str, int] = field(default_factory=dict)
    agora: dict[str, int] = field(default_factory=dict)
    dead: int = 0
    overdue: int = 0
    oldest: list[float] = field(default_factory=list)
    rate_used: int = 0
    admission: dict[str, tuple[int, int]] = field(default_factory=dict)


class RedisCollector(Collector):
    """One scrape: two pipelines of Redis reads (and the removal of stale recording-state entries)."""

    def __init__(
        self,
        connection: redis.Redis,
        app_id: str = "",
        rate_limit: int = 0,
        slots: dict[str, int] | None = None,
    ) -> None:
        self.connection = connection
        self.app_id = app_id
        self.rate_limit = rate_limit
        #: the concurrency quota per capacity class (AGORA_MAX_RECORDERS, AGORA_MAX_WEB_RECORDERS)
        self.slots = slots or {}

    def collect(self) -> Iterator[Metric]:
        try:
            scrape = self._first_round()
            self._second_round(scrape)
        except redis.RedisError:
            yield GaugeMetricFamily("acr_redis_up", "1 when Redis answered this scrape", value=0)
            return
        yield GaugeMetricFamily("acr_redis_up", "1 when Redis answered this scrape", value=1)
        yield from self._families(scrape)

    # -- reads ---------------------------------------------------------------------------------------------

    def _first_round(self) -> Scrape:
        pipe = self.connection.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(schema.STATS)
        for name in QUEUES:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
        for name in QUEUES:
            pipe.zcard(FailedJobRegistry.key_template.format(name))
        pipe.zcard(ScheduledJobRegistry.key_template.format(schema.NOTIFY_QUEUE))
        for partition in range(schema.PARTITIONS):
            pipe.xlen(schema.inbox(partition))
        pipe.mget([schema.inbox_cursor(p) for p in range(schema.PARTITIONS)])
        pipe.zcard(schema.TIMERS)
        pipe.zcard(schema.RECORDINGS_INDEX)
        pipe.zrange(schema.ACTIVE_RECORDINGS, 0, -1)
        pipe.hgetall(schema.RECORDING_STATES)
        pipe.hgetall(schema.APPLY_HISTOGRAM)
        pipe.hgetall(schema.AGORA_HISTOGRAM)
        pipe.xlen(schema.DEAD_LETTERS)
        answers = iter(pipe.execute())
        n = len(QUEUES)
        seconds, micros = next(answers)
        return Scrape(
            now_ms=int(seconds) * 1000 + int(micros) // 1000,
            stats={_text(k): int(v) for k, v in next(answers).items()},
            queued=[next(answers) for _ in range(n)],
            failed=[next(answers) for _ in range(n)],
            notify_scheduled=next(answers),
            inbox=[next(answers) for _ in range(schema.PARTITIONS)],
            cursors=next(answers),
            timers=next(answers),
            recordings=next(answers),
            active={_text(m) for m in next(answers)},
            states={_text(k): _text(v) for k, v in next(answers).items()},
            apply={_text(k): int(v) for k, v in next(answers).items()},
            agora={_text(k): int(v) for k, v in next(answers).items()},
            dead=next(answers),
            admission=admission_usage(self.connection),
        )

    def _second_round(self, scrape: Scrape) -> None:
        now_ms = scrape.now_ms
        pipe = self.connection.pipeline(transaction=False)
        pipe.zcount(schema.TIMERS, "-inf", now_ms - OVERDUE_AFTER_MS)
        for partition, cursor in enumerate(scrape.cursors):
            start = "-" if cursor is None else "(" + _text(cursor)
            pipe.xrange(schema.inbox(partition), min=start, count=1)
        if self.app_id:
            pipe.zcount(schema.rate_limit(self.app_id), now_ms - RATE_WINDOW_MS, "+inf")
        stale = [recording_id for recording_id in scrape.states if recording_id not in scrape.active]
        if stale:
            pipe.hdel(schema.RECORDING_STATES, *stale)
        answers = pipe.execute()
        scrape.overdue = answers[0]
        scrape.oldest = [
            max(0, now_ms - _stream_ms(entries[0][0])) / 1000 if entries else 0.0
            for entries in answers[1 : 1 + schema.PARTITIONS]
        ]
        if self.app_id:
            scrape.rate_used = answers[1 + schema.PARTITIONS]

    # -- families ------------------------------------------------------------------------------------------

    def _families(self, scrape: Scrape) -> Iterator[Metric]:
        stats = scrape.stats
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
            "entries ever set aside in the dead-letter stream (callbacks that cannot be parsed, and what else failed for good)",
            value=stats.get("dead_lettered", 0),
        )
        yield GaugeMetricFamily(
            "acr_dead_letter_entries",
            "entries in the dead-letter stream acr:dead (capped at 10,000)",
            value=scrape.dead,
        )
        queued = GaugeMetricFamily("acr_queue_jobs", "jobs waiting in each RQ queue", labels=["queue"])
        failed = GaugeMetricFamily(
            "acr_jobs_failed", "jobs in each RQ queue's failed registry (kept 7 days)", labels=["queue"]
        )
        for name, length, failures in zip(QUEUES, scrape.queued, scrape.failed, strict=True):
            queued.add_metric([name], length)
            failed.add_metric([name], failures)
        yield queued
        yield failed
        notify_index = QUEUES.index(schema.NOTIFY_QUEUE)
        yield GaugeMetricFamily(
            "acr_notifications_pending",
            "notifications waiting: queued, or scheduled for a retry",
            value=scrape.queued[notify_index] + scrape.notify_scheduled,
        )
        yield GaugeMetricFamily(
            "acr_notifications_failed",
            "notification jobs that failed (RQ's failed registry of the notify queue)",
            value=scrape.failed[notify_index],
        )
        yield CounterMetricFamily(
            "acr_notifications_exhausted",
            "notifications that ran out of retries without being delivered",
            value=stats.get("notifications_exhausted", 0) + stats.get("dead_lettered:notification", 0),
        )
        yield GaugeMetricFamily(
            "acr_inbox_entries",
            "stored callbacks not yet trimmed from the inbox streams",
            value=sum(scrape.inbox),
        )
        ages = GaugeMetricFamily(
            "acr_inbox_oldest_age_seconds",
            "age of the oldest callback not yet applied, per inbox partition (0 when none waits)",
            labels=["partition"],
        )
        for partition, age in enumerate(scrape.oldest):
            ages.add_metric([str(partition)], age)
        yield ages
        apply = scrape.apply
        yield HistogramMetricFamily(
            "acr_callback_apply_seconds",
            "seconds from a callback's acceptance to the drain that applied it",
            buckets=_cumulative(apply, measure.APPLY_BUCKETS_MS),
            sum_value=apply.get("sum_ms", 0) / 1000,
        )
        yield from self._agora(scrape.agora)
        yield GaugeMetricFamily("acr_timers", "recordings with a pending wake-up", value=scrape.timers)
        yield GaugeMetricFamily(
            "acr_timers_overdue",
            f"wake-ups due more than {OVERDUE_AFTER_MS // 1000} s ago and not yet claimed (should stay 0)",
            value=scrape.overdue,
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
            "acr_recordings", "recordings ever created (and not expired)", value=scrape.recordings
        )
        yield GaugeMetricFamily(
            "acr_recordings_active",
            "recordings not yet completed, backed up or failed",
            value=len(scrape.active),
        )
        yield from self._states(scrape.active, scrape.states, scrape.now_ms)
        entered = CounterMetricFamily(
            "acr_recordings_entered",
            "recordings that entered each state (counted by the orchestration steps)",
            labels=["state"],
        )
        for state in ALL_STATES:
            entered.add_metric([state], stats.get(f"entered:{state}", 0))
        yield entered
        yield from self._admission(scrape)
        if self.app_id:
            used = GaugeMetricFamily(
                "acr_ratelimit_requests",
                f"Agora requests counted in the shared rate-limit window ({RATE_WINDOW_MS} ms) per App ID",
                labels=["app"],
            )
            used.add_metric([self.app_id], scrape.rate_used)
            yield used
            limit = GaugeMetricFamily(
                "acr_ratelimit_limit", "requests per window allowed (AGORA_RATE_LIMIT)", labels=["app"]
            )
            limit.add_metric([self.app_id], self.rate_limit)
            yield limit

    def _admission(self, scrape: Scrape) -> Iterator[Metric]:
        holding = GaugeMetricFamily(
            "acr_admission_slots_used",
            "recordings holding a slot of the App ID's concurrency quota, per capacity class",
            labels=["class"],
        )
        waiting = GaugeMetricFamily(
            "acr_admission_queue", "recordings queued for a slot, per capacity class", labels=["class"]
        )
        slots = GaugeMetricFamily(
            "acr_admission_slots", "slots per capacity class (0: no limit)", labels=["class"]
        )
        for klass, (held, queued) in sorted(scrape.admission.items()):
            holding.add_metric([klass], held)
            waiting.add_metric([klass], queued)
            slots.add_metric([klass], self.slots.get(klass, 0))
        yield from (holding, waiting, slots)
        interval, capped = poll_interval(len(scrape.active), self.rate_limit)
        yield GaugeMetricFamily(
            "acr_poll_interval_seconds",
            "routine query interval of a confirmed session for the fleet's size (stretched to keep 30% of the "
            "rate budget free)",
            value=interval,
        )
        yield GaugeMetricFamily(
            "acr_poll_interval_capped",
            "1 when the fleet is too large for the App ID's budget: sessions are polled less often than the "
            "budget's share allows, at the 270 s cap (3 HA windows); split the fleet or raise AGORA_RATE_LIMIT",
            value=1 if capped else 0,
        )

    @staticmethod
    def _states(active: set[str], states: dict[str, str], now_ms: int) -> Iterator[Metric]:
        counts = dict.fromkeys(ACTIVE_STATES, 0)
        since: dict[str, int] = {}
        for recording_id, value in states.items():
            if recording_id not in active:
                continue
            state, _, at = value.partition(" ")
            counts[state] = counts.get(state, 0) + 1
            if at.isdigit():
                since[state] = min(since.get(state, now_ms), int(at))
        counts[State.PENDING.value] += len(active) - sum(counts.values())
        by_state = GaugeMetricFamily(
            "acr_recordings_by_state", "non-terminal recordings in each state", labels=["state"]
        )
        oldest = GaugeMetricFamily(
            "acr_recordings_state_oldest_seconds",
            "how long the longest-standing recording in each state has been in it (0 when none)",
            labels=["state"],
        )
        for state, count in counts.items():
            by_state.add_metric([state], count)
            oldest.add_metric([state], max(0, now_ms - since[state]) / 1000 if state in since else 0)
        yield by_state
        yield oldest

    @staticmethod
    def _agora(fields: dict[str, int]) -> Iterator[Metric]:
        requests: dict[tuple[str, str], int] = defaultdict(int)
        buckets: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        sums: dict[str, int] = defaultdict(int)
        for name, value in fields.items():
            endpoint, outcome, bucket = (name.split("|") + ["", ""])[:3]
            if bucket == "sum_us":
                sums[endpoint] += value
                continue
            requests[(endpoint, outcome)] += value
            buckets[endpoint][bucket] += value
        total = CounterMetricFamily(
            "acr_agora_requests",
            "requests sent to Agora (each host attempt) by endpoint and outcome",
            labels=["endpoint", "outcome"],
        )
        for (endpoint, outcome), count in sorted(requests.items()):
            total.add_metric([endpoint, outcome], count)
        yield total
        durations = HistogramMetricFamily(
            "acr_agora_request_duration_seconds",
            "seconds from sending a request to Agora to its answer (or the transport failure)",
            labels=["endpoint"],
        )
        for endpoint in sorted(buckets):
            durations.add_metric(
                [endpoint],
                _cumulative(buckets[endpoint], measure.AGORA_BUCKETS_MS),
                sum_value=sums[endpoint] / 1_000_000,
            )
        yield durations


@bp.get("/metrics")
def metrics() -> Response:
    """The metrics, no token (restrict by network, as usual for /metrics)."""
    services = get_services()
    registry = CollectorRegistry(auto_describe=False)
    settings = services.settings
    slots = {"recorder": settings.agora_max_recorders, "web": settings.agora_max_web_recorders}
    registry.register(RedisCollector(services.redis, settings.agora_app_id, settings.agora_rate_limit, slots))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
