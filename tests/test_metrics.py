"""/metrics: Prometheus text from Redis, and a clear signal when Redis is down."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import NCS_SECRET
from tests.factories import body_of, event, signed_headers
from tests.redis_server import RedisServer
from webhook_service import create_app
from workers.config import Settings


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
