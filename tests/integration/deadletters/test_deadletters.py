"""Dead letters and replay on a real Redis, real RQ workers (in-process, burst) and, for notifications, a real
HTTP endpoint (tests.support.emulated.Sink) that fails until told otherwise."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue

import workers.jobs
import workers.ncs.drain
import workers.recordings.notify as notify
from tests.support.emulated import Sink
from tests.support.factories import event
from tests.support.notifications import NOTIFY_SECRET, create_recording, exhaust, run_worker, send, whats
from workers import deadletters
from workers.core import schema
from workers.core.config import Settings
from workers.core.errors import EventError
from workers.ncs.store import read_session


def dead(client: FlaskClient, auth: dict[str, str], kind: str | None = None) -> list[dict[str, Any]]:
    response = client.get("/v1/dead-letters" + (f"?kind={kind}" if kind else ""), headers=auth)
    assert response.status_code == 200, response.json
    return list(response.get_json()["deadLetters"])


@pytest.mark.parametrize("how", ["redeliver", "retry"])
def test_a_notification_out_of_retries_is_a_dead_letter_and_is_redelivered_once(
    client: FlaskClient,
    redis_client: redis.Redis,
    auth: dict[str, str],
    sink: Sink,
    worker_env: Any,
    how: str,
) -> None:
    recording_id = create_recording(client, auth)
    sink.answer = lambda _body: 500
    webhook_id, body = exhaust(redis_client, recording_id)
    attempts = len(notify.BACKOFF_SECONDS) + 1
    assert len(sink.received) == attempts
    assert {headers["Webhook-Id"] for headers, _ in sink.received} == {webhook_id}

    [letter] = dead(client, auth, "notification")
    assert letter["webhookId"] == webhook_id and letter["recordingId"] == recording_id
    assert letter["type"] == "recording.failed" and letter["retried"] is None
    assert "out of retries" in letter["reason"] and "500" in letter["reason"]
    shown = client.get(f"/v1/recordings/{recording_id}/notifications", headers=auth).get_json()
    [delivery] = shown["notifications"]
    assert delivery["exhausted"] is True and delivery["delivered"] is False and delivery["pending"] is False
    assert [a["status"] for a in delivery["attempts"]] == [500] * attempts
    assert "out of retries" in whats(redis_client, recording_id)

    sink.answer = lambda _body: 200  # the app server recovered
    if how == "redeliver":
        response = client.post(f"/v1/notifications/{webhook_id}/redeliver", headers=auth)
        assert response.status_code == 202, response.json
        assert response.get_json()["webhookId"] == webhook_id and response.get_json()["pending"] is True
    else:
        response = client.post(f"/v1/dead-letters/{letter['id']}/retry", headers=auth)
        assert response.status_code == 202, response.json
        assert response.get_json()["retried"]["times"] == 1
    run_worker(redis_client, schema.NOTIFY_QUEUE)  # also runs the first series' queued job: it stands down

    assert len(sink.received) == attempts + 1  # delivered once
    headers, delivered_body = sink.received[-1]
    assert headers["Webhook-Id"] == webhook_id and delivered_body == body.encode()
    assert headers["Webhook-Signature"] == notify.signature(
        NOTIFY_SECRET, webhook_id, int(headers["Webhook-Timestamp"]), delivered_body
    )
    [delivery] = client.get(f"/v1/recordings/{recording_id}/notifications", headers=auth).get_json()[
        "notifications"
    ]
    assert delivery["delivered"] is True and delivery["exhausted"] is False and delivery["redeliveries"] == 1
    assert delivery["attempts"][-1] == {
        **delivery["attempts"][-1],
        "status": 200,
        "series": 1,
        "delivered": True,
    }
    history = whats(redis_client, recording_id)
    assert "notification redelivery queued" in history and history[-1] == "delivered"
    run_worker(redis_client, schema.NOTIFY_QUEUE)
    assert len(sink.received) == attempts + 1


def test_a_failed_drain_job_is_a_dead_letter_and_retry_applies_its_callbacks_once(
    client: FlaskClient,
    redis_client: redis.Redis,
    auth: dict[str, str],
    worker_env: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recording_id = create_recording(client, auth, cname="other")
    redis_client.set(schema.recording_of_sid("sid-1"), recording_id)
    for sequence in range(3):
        send(client, event(43, notice_id=f"n-{sequence}", sequence=sequence))
    real = workers.ncs.drain.write_updates

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(workers.ncs.drain, "write_updates", broken)
    run_worker(redis_client, schema.NCS_QUEUE)
    assert read_session(redis_client, "sid-1") is None
    [letter] = dead(client, auth, "drain_job")
    assert letter["partition"] == schema.partition_of("room1")
    assert "RuntimeError: disk on fire" in letter["reason"] and letter["jobId"]

    monkeypatch.setattr(workers.ncs.drain, "write_updates", real)  # the bug is fixed
    for times in (1, 2):
        response = client.post(f"/v1/dead-letters/{letter['id']}/retry", headers=auth)
        assert response.status_code == 202, response.json
        assert response.get_json()["retried"]["times"] == times
        run_worker(redis_client, schema.NCS_QUEUE)
        view = read_session(redis_client, "sid-1")
        assert view is not None
        assert [e["noticeId"] for e in view.events] == ["n-0", "n-1", "n-2"]
        assert redis_client.hget(schema.STATS, "applied") == b"3"  # exactly once, however often retried
    [kept] = dead(client, auth, "drain_job")
    assert kept["id"] == letter["id"] and kept["retried"]["times"] == 2
    # the first retry re-applied this recording's callbacks; the second found none of them pending
    assert whats(redis_client, recording_id).count("dead letter retried") == 1


def test_a_callback_that_could_not_be_parsed_is_accepted_again_after_the_fix(
    client: FlaskClient,
    redis_client: redis.Redis,
    auth: dict[str, str],
    worker_env: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = workers.ncs.drain.parse_event

    def picky(raw: bytes, received_ms: int) -> Any:
        if b"n-bad" in raw:
            raise EventError("cannot read this one")
        return real(raw, received_ms)

    monkeypatch.setattr(workers.ncs.drain, "parse_event", picky)
    send(client, event(40, notice_id="n-bad", sequence=1, details={"rtmpUrl": "rtmp://cdn/live/STREAMKEY"}))
    send(client, event(43, notice_id="n-good", sequence=2))
    run_worker(redis_client, schema.NCS_QUEUE)
    [letter] = dead(client, auth, "callback")
    assert letter["noticeId"] == "n-bad" and letter["reason"] == "cannot read this one"
    assert "STREAMKEY" not in str(letter)  # shown redacted
    view = read_session(redis_client, "sid-1")
    assert view is not None and [e["noticeId"] for e in view.events] == ["n-good"]

    monkeypatch.setattr(workers.ncs.drain, "parse_event", real)
    assert client.post(f"/v1/dead-letters/{letter['id']}/retry", headers=auth).status_code == 202
    run_worker(redis_client, schema.NCS_QUEUE)
    view = read_session(redis_client, "sid-1")
    assert view is not None and [e["noticeId"] for e in view.events] == ["n-bad", "n-good"]
    assert len(dead(client, auth, "callback")) == 1


def test_a_failed_step_job_is_a_dead_letter_and_retry_wakes_the_recording(
    client: FlaskClient,
    redis_client: redis.Redis,
    auth: dict[str, str],
    worker_env: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recording_id = create_recording(client, auth)

    def broken(recording_id: str) -> str:
        raise RuntimeError("step bug")

    monkeypatch.setattr(workers.jobs.runner, "advance", broken)
    run_worker(redis_client, schema.DEFAULT_QUEUE)
    [letter] = dead(client, auth, "step_job")
    assert letter["recordingId"] == recording_id and "step bug" in letter["reason"]
    assert "step job failed" in whats(redis_client, recording_id)
    redis_client.delete(schema.recording_queued(recording_id))
    queue = Queue(schema.DEFAULT_QUEUE, connection=redis_client)
    assert queue.count == 0
    assert client.post(f"/v1/dead-letters/{letter['id']}/retry", headers=auth).status_code == 202
    assert [job.args for job in queue.jobs] == [(recording_id,)]
    assert "dead letter retried" in whats(redis_client, recording_id)


def test_listing_is_newest_first_by_kind_with_a_cursor(
    client: FlaskClient, redis_client: redis.Redis, auth: dict[str, str]
) -> None:
    ids = [
        deadletters.add(redis_client, "drain_job" if i % 2 else "step_job", f"r{i}", partition=i)
        for i in range(5)
    ]
    page = client.get("/v1/dead-letters?limit=2", headers=auth).get_json()
    assert [e["id"] for e in page["deadLetters"]] == [ids[4], ids[3]]
    rest = client.get(f"/v1/dead-letters?limit=200&cursor={page['nextCursor']}", headers=auth).get_json()
    assert [e["id"] for e in rest["deadLetters"]] == [ids[2], ids[1], ids[0]] and rest["nextCursor"] is None
    assert [e["reason"] for e in dead(client, auth, "drain_job")] == ["r3", "r1"]
    last = client.get("/v1/dead-letters?cursor=0-0", headers=auth)
    assert last.status_code == 200 and last.get_json() == {"deadLetters": [], "nextCursor": None}
    assert redis_client.hget(schema.STATS, "dead_lettered") == b"5"
    assert redis_client.hget(schema.STATS, "dead_lettered:drain_job") == b"2"


@pytest.mark.parametrize(
    ("method", "path", "status", "field"),
    [
        ("post", "/v1/dead-letters/nope/retry", 404, "id"),
        ("post", "/v1/dead-letters/1-0/retry", 404, "id"),
        ("post", "/v1/dead-letters/1-0:x/retry", 404, "id"),
        ("post", "/v1/notifications/msg_1/redeliver", 404, "webhookId"),
        ("post", "/v1/notifications/msg_0123456789abcdef01234567/redeliver", 404, "webhookId"),
        ("get", "/v1/recordings/rec_0123456789abcdef0123/notifications", 404, "id"),
        ("get", "/v1/recordings/rec_0123456789abcdef0123:lock/notifications", 404, "id"),
        ("get", "/v1/dead-letters?kind=other", 400, "kind"),
        ("get", "/v1/dead-letters?limit=0", 400, "limit"),
        ("get", "/v1/dead-letters?cursor=abc", 400, "cursor"),
    ],
)
def test_bad_ids_and_parameters(
    client: FlaskClient,
    redis_client: redis.Redis,
    auth: dict[str, str],
    method: str,
    path: str,
    status: int,
    field: str,
) -> None:
    deadletters.add(redis_client, "drain_job", "kept", partition=1)
    before = redis_client.dbsize()
    response = getattr(client, method)(path, headers=auth)
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field
    assert redis_client.dbsize() == before  # nothing written under a made-up key
    assert getattr(client, method)(path).status_code == 401


def test_a_notification_cannot_be_redelivered_when_notifications_are_off(
    client: FlaskClient, redis_client: redis.Redis, auth: dict[str, str], settings: Settings
) -> None:
    from webhook_service import create_app

    off = create_app(dataclasses.replace(settings, notify_url="", notify_secret="")).test_client()
    webhook_id = notify.queue_notification(redis_client, "recording.failed", {"id": "x"})
    response = off.post(f"/v1/notifications/{webhook_id}/redeliver", headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_retryable"


def test_delivery_records_are_bounded_per_recording(redis_client: redis.Redis) -> None:
    recording_id = "rec_0123456789abcdef0123"
    made = [
        notify.queue_notification(
            redis_client, "recording.started", {"id": recording_id}, retention_seconds=60
        )
        for _ in range(notify.MAX_PER_RECORDING + 5)
    ]
    listing = schema.recording_notifications(recording_id)
    assert redis_client.zcard(listing) == notify.MAX_PER_RECORDING
    assert 0 < redis_client.ttl(listing) <= 60 and 0 < redis_client.ttl(schema.notification(made[-1])) <= 60
    record = msgspec.json.decode(redis_client.get(schema.notification(made[-1])))
    assert record["recordingId"] == recording_id and record["pending"] is True


def test_a_timeline_written_outside_a_step_keeps_the_same_cap(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dead letters and notifications write on timelines too, and trim to the one cap the steps' saves use."""
    from workers.recordings import store

    recording_id = "rec_0123456789abcdef0123"
    redis_client.set(schema.recording(recording_id), b"{}")
    monkeypatch.setattr(store, "TIMELINE_CAP", 3)
    for n in range(5):
        assert deadletters.append_timeline(redis_client, recording_id, {"kind": "test", "n": n})
    assert [e["n"] for e in store.timeline(redis_client, recording_id)] == [2, 3, 4]
    assert not deadletters.append_timeline(redis_client, "rec_" + "f" * 20, {"kind": "test"})  # unknown
