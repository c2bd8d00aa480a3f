"""Helpers of the dead-letter and replay tests (``tests/integration/deadletters/``: the API and the CLI): post a
signed callback, create a recording, run every attempt of a notification against a failing endpoint, run an
in-process RQ worker in burst mode, read a recording's timeline."""

from __future__ import annotations

from typing import Any

import redis
from flask.testing import FlaskClient
from rq import Queue

import workers.recordings.notify as notify
from tests.support.factories import body_of, signed_headers
from tests.support.service import NCS_SECRET
from workers.core import schema
from workers.recordings.store import load, timeline
from workers.worker import RecordingWorker

NOTIFY_SECRET = "test-notify-secret-0123456789"


def run_worker(connection: redis.Redis, *queues: str) -> None:
    RecordingWorker(list(queues) or [schema.NCS_QUEUE, schema.DEFAULT_QUEUE], connection=connection).work(
        burst=True
    )


def send(client: FlaskClient, envelope: dict[str, Any]) -> None:
    body = body_of(envelope)
    assert (
        client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET)).status_code == 200
    )


def create_recording(client: FlaskClient, auth: dict[str, str], cname: str = "room1") -> str:
    response = client.post("/v1/recordings", json={"cname": cname, "mode": "mix"}, headers=auth)
    assert response.status_code == 202, response.json
    return str(response.get_json()["id"])


def whats(connection: redis.Redis, recording_id: str) -> list[str]:
    return [str(e.get("what")) for e in timeline(connection, recording_id)]


def exhaust(connection: redis.Redis, recording_id: str) -> tuple[str, str]:
    """Queue a notification for the recording and run every attempt against the failing endpoint."""
    recording = load(connection, recording_id)
    assert recording is not None
    webhook_id = notify.queue_notification(connection, "recording.failed", recording.public())
    [job] = Queue(schema.NOTIFY_QUEUE, connection=connection).jobs
    body = job.args[1]
    for attempt in range(len(notify.BACKOFF_SECONDS) + 1):  # the first try and every retry, back to back
        assert notify.send_notification(webhook_id, body, attempt) is False
    return webhook_id, body
