"""/metrics: Prometheus text from Redis, and a clear signal when Redis is down."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.factories import body_of, event, signed_headers
from tests.support.redis_server import RedisServer
from tests.support.service import NCS_SECRET
from webhook_service import create_app
from workers.core.config import Settings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_callbacks_and_queues(client: FlaskClient) -> None:
    """Accepted and duplicate callbacks and the queued drain job show up in the scrape."""
    body = body_of(event(40, notice_id="m-1"))
    for _ in range(2):
        assert (
            client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET)).status_code
            == 200
        )
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    values = samples(response.get_data(as_text=True))
    assert values[("acr_redis_up", ())] == 1
    assert values[("acr_ncs_callbacks_total", (("outcome", "accepted"),))] == 1
    assert values[("acr_ncs_callbacks_total", (("outcome", "duplicate"),))] == 1
    assert values[("acr_queue_jobs", (("queue", "ncs"),))] == 1
    assert values[("acr_inbox_entries", ())] == 1


def test_metrics_show_timers_and_overdue_ones(client: FlaskClient, redis_client) -> None:
    """Pending wake-ups, those overdue by more than 5 s, and the worst lateness recorded by the steps."""
    seconds, _ = redis_client.time()
    now = seconds * 1000
    redis_client.zadd("acr:timers", {"rec_a": now + 60_000, "rec_b": now - 30_000, "rec_c": now - 1000})
    redis_client.hset("acr:stats", mapping={"timer_late_max_ms": 2500, "step_max_ms": 1200})
    values = samples(client.get("/metrics").get_data(as_text=True))
    assert values[("acr_timers", ())] == 3
    assert values[("acr_timers_overdue", ())] == 1
    assert values[("acr_timer_late_max_seconds", ())] == 2.5
    assert values[("acr_step_max_seconds", ())] == 1.2


def test_metrics_without_redis(private_redis: RedisServer, settings: Settings) -> None:
    """Redis down: still 200, with acr_redis_up 0."""
    import dataclasses

    app = create_app(dataclasses.replace(settings, redis_url=private_redis.url))
    private_redis.stop()
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    assert samples(response.get_data(as_text=True)) == {("acr_redis_up", ()): 0}


# -- what an on-call needs: latency, Agora, backlog age, states, dead letters, notifications, rate limit ----------


def by_name(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict[str, float]:
    """The samples of one metric name keyed by a compact label string (``le`` first, then the rest)."""
    return {
        ",".join(f"{k}={v}" for k, v in labels): value for (n, labels), value in values.items() if n == name
    }


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


def test_accepted_to_applied_histogram_and_oldest_unapplied_age(client: FlaskClient, redis_client) -> None:
    """Before the drain: the partition's oldest unapplied callback has its age; after: the drain's delays
    are in the histogram (count, cumulative buckets, sum) and the age is back to 0."""
    from workers.core import schema
    from workers.jobs import drain_batch

    body = body_of(event(40, notice_id="lat-1"))
    assert (
        client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET)).status_code == 200
    )
    (partition,) = [p for p in range(schema.PARTITIONS) if redis_client.xlen(schema.inbox(p))]
    seconds, _ = redis_client.time()
    # an older callback behind the cursor of another partition: 90 s old, never applied
    other = (partition + 1) % schema.PARTITIONS
    redis_client.xadd(schema.inbox(other), {"n": "old", "b": b"{}"}, id=f"{(seconds - 90) * 1000}-0")
    values = scrape(client)
    ages = by_name(values, "acr_inbox_oldest_age_seconds")
    assert len(ages) == schema.PARTITIONS
    assert 90 <= ages[f"partition={other}"] < 95
    assert 0 <= ages[f"partition={partition}"] < 5
    assert by_name(values, "acr_callback_apply_seconds_count") == {"": 0}

    assert drain_batch(redis_client, other, max_events=100, retention_seconds=60) == 1
    assert drain_batch(redis_client, partition, max_events=100, retention_seconds=60) == 1
    values = scrape(client)
    assert by_name(values, "acr_inbox_oldest_age_seconds")[f"partition={other}"] == 0
    assert values[("acr_callback_apply_seconds_count", ())] == 2
    buckets = by_name(values, "acr_callback_apply_seconds_bucket")
    assert buckets["le=60.0"] == 1 and buckets["le=300.0"] == 2 and buckets["le=+Inf"] == 2
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert 90 <= values[("acr_callback_apply_seconds_sum", ())] < 100


def test_a_metrics_write_failure_never_breaks_the_work(private_redis: RedisServer) -> None:
    """Redis gone: the measurements are dropped without an exception."""
    import redis

    from workers.core.measure import record_agora, record_applied, record_state

    connection = redis.Redis.from_url(private_redis.url, socket_timeout=0.5)
    private_redis.stop()
    record_applied(connection, [(b"1-0", {})])
    record_agora(connection, "query", "ok", 0.1)
    record_state(connection, "rec_x", "recording", terminal=False, entered=True)


def test_agora_requests_by_endpoint_outcome_and_duration(
    client: FlaskClient, redis_client, settings: Settings, base: str
) -> None:
    """A step's real calls to the emulator are counted by endpoint and outcome with their durations; a 503
    is a retry, a closed port a transport error."""

    from tests.support.emulated import control, make_client, pointed_at
    from workers.agora import AcquireClientRequest, AcquireRequest, AgoraError
    from workers.core.measure import record_agora
    from workers.recordings.runner import Runner
    from workers.recordings.store import RecordingSpec, create_recording, load

    settings = pointed_at(settings, base)
    recording, _ = create_recording(redis_client, settings, RecordingSpec(cname="metrics", mode="mix"))
    control(base, "POST", "faults", {"kind": "answer", "endpoint": "acquire", "times": 1, "status": 503})
    runner = Runner(redis_client, settings, make_client(base))
    runner.advance(recording.id)
    stored = load(redis_client, recording.id)
    assert stored is not None and stored.state != "pending"
    values = scrape(client)
    assert by_name(values, "acr_recordings_by_state")[f"state={stored.state}"] == 1
    assert by_name(values, "acr_recordings_entered_total")[f"state={stored.state}"] == 1
    requests = by_name(values, "acr_agora_requests_total")
    assert requests["endpoint=acquire,outcome=retry"] == 1
    assert requests.get("endpoint=acquire,outcome=ok", 0) <= 1
    assert sum(requests.values()) >= 1
    count = by_name(values, "acr_agora_request_duration_seconds_count")
    assert count["endpoint=acquire"] == sum(v for k, v in requests.items() if "acquire" in k)
    assert 0 < values[("acr_agora_request_duration_seconds_sum", (("endpoint", "acquire"),))] < 10

    closed = make_client("http://127.0.0.1:9")
    closed.observe = lambda endpoint, outcome, seconds: record_agora(redis_client, endpoint, outcome, seconds)
    body = AcquireRequest(cname="x", uid="1", client_request=AcquireClientRequest())
    try:
        closed.acquire(body)
    except AgoraError:
        pass
    requests = by_name(scrape(client), "acr_agora_requests_total")
    assert requests["endpoint=acquire,outcome=transport_error"] >= 1


def test_recordings_per_state_kept_by_the_steps(client: FlaskClient, redis_client) -> None:
    """States are noted on saves (non-terminal kept, terminal removed and counted); active recordings no step
    saved yet are pending; entries whose recording is no longer active are ignored and removed."""
    from workers.core import schema
    from workers.core.measure import record_state

    redis_client.zadd(schema.ACTIVE_RECORDINGS, {"rec_a": 1, "rec_b": 1, "rec_c": 1, "rec_new": 1})
    record_state(redis_client, "rec_a", "recording", terminal=False, entered=True)
    record_state(redis_client, "rec_b", "recording", terminal=False, entered=True)
    record_state(redis_client, "rec_c", "uploading", terminal=False, entered=True)
    seconds, _ = redis_client.time()
    redis_client.hset(schema.RECORDING_STATES, "rec_c", f"uploading {(seconds - 600) * 1000}")
    redis_client.hset(
        schema.RECORDING_STATES, "rec_gone", f"stopping {seconds * 1000}"
    )  # not active any more
    record_state(redis_client, "rec_a", "recording", terminal=False, entered=False)  # another save: no change
    record_state(redis_client, "rec_d", "failed", terminal=True, entered=True)
    values = scrape(client)
    states = by_name(values, "acr_recordings_by_state")
    assert states == {
        "state=pending": 1,
        "state=queued": 0,
        "state=starting": 0,
        "state=recording": 2,
        "state=paused": 0,
        "state=stopping": 0,
        "state=uploading": 1,
    }
    oldest = by_name(values, "acr_recordings_state_oldest_seconds")
    assert 600 <= oldest["state=uploading"] < 610 and oldest["state=stopping"] == 0
    entered = by_name(values, "acr_recordings_entered_total")
    assert (
        entered["state=recording"] == 2 and entered["state=failed"] == 1 and entered["state=completed"] == 0
    )
    assert not redis_client.hexists(schema.RECORDING_STATES, "rec_gone")
    record_state(redis_client, "rec_c", "completed", terminal=True, entered=True)
    redis_client.zrem(schema.ACTIVE_RECORDINGS, "rec_c")
    values = scrape(client)
    assert by_name(values, "acr_recordings_by_state")["state=uploading"] == 0
    assert by_name(values, "acr_recordings_entered_total")["state=completed"] == 1


def test_dead_letters_notifications_failed_jobs_and_rate_limit(redis_client, settings: Settings) -> None:
    """The dead-letter stream's length, notifications queued or scheduled, RQ's failed registries, and the
    rate-limit window's use against the limit."""
    import dataclasses
    from datetime import timedelta

    from rq import Queue
    from rq.registry import FailedJobRegistry

    from workers.agora.ratelimit import RateLimiter
    from workers.core import schema

    app = create_app(dataclasses.replace(settings, agora_app_id="app-1", agora_rate_limit=10))
    for _ in range(3):
        redis_client.xadd(schema.DEAD_LETTERS, {"reason": "test"})
    queue = Queue(schema.NOTIFY_QUEUE, connection=redis_client)
    queue.enqueue("workers.recordings.notify.send_notification", "msg_1", "{}", 0)
    queue.enqueue_in(timedelta(minutes=5), "workers.recordings.notify.send_notification", "msg_2", "{}", 1)
    failed = queue.enqueue("workers.recordings.notify.send_notification", "msg_3", "{}", 7)
    FailedJobRegistry(schema.NOTIFY_QUEUE, connection=redis_client).add(failed, ttl=60)
    redis_client.hset(schema.STATS, "notifications_exhausted", 2)
    limiter = RateLimiter(redis_client, "app-1", 10)
    for _ in range(4):
        assert limiter.try_take() == 0
    values = samples(app.test_client().get("/metrics").get_data(as_text=True))
    assert values[("acr_dead_letter_entries", ())] == 3
    assert values[("acr_notifications_pending", ())] == 3  # two queued, one scheduled
    assert values[("acr_notifications_failed", ())] == 1
    assert values[("acr_notifications_exhausted_total", ())] == 2
    assert values[("acr_jobs_failed", (("queue", "notify"),))] == 1
    assert values[("acr_jobs_failed", (("queue", "ncs"),))] == 0
    assert values[("acr_ratelimit_requests", (("app", "app-1"),))] == 4
    assert values[("acr_ratelimit_limit", (("app", "app-1"),))] == 10
