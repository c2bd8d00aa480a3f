"""The operator's CLI (``flask --app 'webhook_service:create_app()' acr ...``), through Flask's CLI runner on a
real Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient

from tests.support.emulated import Sink
from tests.support.factories import event
from tests.support.notifications import create_recording, exhaust, run_worker, send, whats
from workers import deadletters
from workers.core import schema
from workers.jobs import drain_batch
from workers.ncs.reducer import SessionState, encode_state


def acr(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["acr", *args])


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def live_session(client: FlaskClient, redis_client: redis.Redis, sid: str = "sid-1") -> bytes:
    """A session's callbacks as Agora sends them, applied by the live drains (in several batches); its state."""
    envelopes = [
        event(40, sid=sid, sequence=1, details={"msgName": "recorder_started"}),
        event(3, sid=sid, sequence=2, details={"status": 5}),
        event(30, sid=sid, sequence=3, details={"fileList": [{"fileName": "a.m3u8"}]}),
        event(
            1, sid=sid, sequence=4, details={"module": 0, "errorLevel": 2, "errorCode": 7, "errorMsg": "x"}
        ),
        event(31, sid=sid, sequence=6, details={"status": 0}),
        event(41, sid=sid, sequence=5),
        event(11, sid=sid, sequence=7, details={"exitStatus": 0}),
    ]
    partition = schema.partition_of("room1")
    for index, envelope in enumerate(envelopes):
        send(client, envelope)
        if index % 3 == 2:
            drain_batch(redis_client, partition, max_events=100, retention_seconds=3600)
    drain_batch(redis_client, partition, max_events=100, retention_seconds=3600)
    state = redis_client.hget(schema.session(sid), "state")
    assert isinstance(state, bytes)
    return state


def test_rebuild_sessions_gives_the_state_the_live_drains_gave(
    app: Flask, client: FlaskClient, redis_client: redis.Redis, auth: dict[str, str]
) -> None:
    recording_id = create_recording(client, auth, cname="elsewhere")
    live = live_session(client, redis_client)
    redis_client.set(schema.recording_of_sid("sid-1"), recording_id)

    result = acr(app, "rebuild-sessions", "--sid", "sid-1")
    assert result.exit_code == 0, result.output
    assert lines(result.output) == [
        {"sid": "sid-1", "events": 7, "changed": False, "recordingId": recording_id, "status": "exited"}
    ]
    assert redis_client.hget(schema.session("sid-1"), "state") == live

    # A bug wrote a wrong state: the rebuild restores what the drains had computed, once.
    redis_client.hset(schema.session("sid-1"), "state", encode_state(SessionState(sid="sid-1")))
    result = acr(app, "rebuild-sessions", "--sid", "sid-1")
    assert result.exit_code == 0, result.output
    assert lines(result.output)[0]["changed"] is True
    assert redis_client.hget(schema.session("sid-1"), "state") == live
    again = acr(app, "rebuild-sessions", "--sid", "sid-1")
    assert lines(again.output)[0]["changed"] is False  # idempotent
    assert redis_client.hget(schema.session("sid-1"), "state") == live
    assert whats(redis_client, recording_id).count("session rebuilt") == 3


def test_rebuild_sessions_since_a_time_and_all(
    app: Flask, client: FlaskClient, redis_client: redis.Redis
) -> None:
    states = {sid: live_session(client, redis_client, sid) for sid in ("sid-a", "sid-b")}
    for sid in states:
        redis_client.hset(schema.session(sid), "state", encode_state(SessionState(sid=sid)))
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert lines(acr(app, "rebuild-sessions", "--since", future).output) == []
    past = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert {r["sid"] for r in lines(acr(app, "rebuild-sessions", "--since", past).output)} == set(states)
    assert all(redis_client.hget(schema.session(sid), "state") == state for sid, state in states.items())
    assert [r["changed"] for r in lines(acr(app, "rebuild-sessions").output)] == [False, False]


def test_rebuild_sessions_refuses_bad_input(app: Flask, redis_client: redis.Redis) -> None:
    assert acr(app, "rebuild-sessions", "--sid", "unknown").exit_code == 1
    assert acr(app, "rebuild-sessions", "--sid", "a:b").exit_code == 1
    assert acr(app, "rebuild-sessions", "--sid", "x", "--since", "2025-01-01").exit_code == 2
    assert acr(app, "rebuild-sessions", "--since", "yesterday").exit_code == 2
    assert redis_client.dbsize() == 0 or not redis_client.keys("acr:session:*")


def test_dead_letters_and_retry(
    app: Flask, client: FlaskClient, redis_client: redis.Redis, auth: dict[str, str]
) -> None:
    recording_id = create_recording(client, auth)
    step = deadletters.add(redis_client, "step_job", "job failed: boom", recording=recording_id, job="j1")
    deadletters.add(redis_client, "drain_job", "job failed: bang", partition=3, job="j2")
    listed = lines(acr(app, "dead-letters").output)
    assert [e["kind"] for e in listed] == ["drain_job", "step_job"]
    assert [e["id"] for e in lines(acr(app, "dead-letters", "--kind", "step_job").output)] == [step]
    assert acr(app, "dead-letters", "--kind", "nope").exit_code == 2

    result = acr(app, "retry", step)
    assert result.exit_code == 0, result.output
    assert lines(result.output)[0]["retried"]["times"] == 1
    assert "dead letter retried" in whats(redis_client, recording_id)
    missing = acr(app, "retry", "1-0")
    assert missing.exit_code == 1 and "no dead letter" in missing.output
    assert acr(app, "retry", "rec:lock").exit_code == 1


def test_redeliver_since_sends_what_failed_once(
    app: Flask,
    client: FlaskClient,
    redis_client: redis.Redis,
    auth: dict[str, str],
    sink: Sink,
    worker_env: Any,
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    recording_id = create_recording(client, auth)
    sink.answer = lambda _body: 500
    webhook_id, _ = exhaust(redis_client, recording_id)
    failed = len(sink.received)
    sink.answer = lambda _body: 200
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert lines(acr(app, "redeliver", "--since", later).output) == []
    result = acr(app, "redeliver", "--since", started.isoformat())
    assert result.exit_code == 0, result.output
    assert [r["webhookId"] for r in lines(result.output)] == [webhook_id]
    run_worker(redis_client, schema.NOTIFY_QUEUE)
    assert len(sink.received) == failed + 1 and sink.received[-1][0]["Webhook-Id"] == webhook_id
    # Delivered now: a second sweep over the same period sends nothing.
    assert (
        lines(acr(app, "redeliver", "--since", started.isoformat()).output)[0]["skipped"] == "delivered since"
    )
    run_worker(redis_client, schema.NOTIFY_QUEUE)
    assert len(sink.received) == failed + 1
