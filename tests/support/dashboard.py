"""The dashboard's test data and sign-in, shared by its Flask-client tests, its browser tests and
``bench/dashboard.py``: a recording that ran (sessions, files, Agora calls, transitions, callbacks)."""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import redis
from flask.testing import FlaskClient

from tests.support.factories import body_of, event, signed_headers
from tests.support.service import API_TOKEN, NCS_SECRET
from workers.core import schema
from workers.core.config import Settings
from workers.jobs import drain_batch
from workers.ncs.files import FileEntry
from workers.recordings.machine import Desired, SessionOutcome, State
from workers.recordings.model import AgoraSession, encode
from workers.recordings.store import RecordingSpec, create_recording

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
STORAGE_SECRET = "dashboard-storage-secret-key"


def seed_recording(
    connection: redis.Redis, settings: Settings, cname: str = "class-7b", *, client: FlaskClient | None = None
) -> str:
    """A recording that ran: one session that died and a live one, files, Agora calls with answers, state
    changes, and (given a test client to post them through) callbacks applied to its sessions."""
    spec = msgspec.convert({"cname": cname, "mode": "mix"}, RecordingSpec)
    recording, _ = create_recording(connection, settings, spec)
    rid = recording.id
    now = int(time.time() * 1000)
    t0 = now - 120_000
    first = AgoraSession(
        resource_id="res-" + "a" * 40, uid="527841", acquired_ms=t0 + 1000, sid="sid-first-" + rid[-6:],
        started_ms=t0 + 1500, confirmed_ms=t0 + 4000, ended_ms=t0 + 60_000,
        outcome=SessionOutcome.EXITED_ABNORMALLY,
    )  # fmt: skip
    second = AgoraSession(
        resource_id="res-" + "b" * 40, uid="535760", acquired_ms=t0 + 63_000, sid="sid-second-" + rid[-6:],
        started_ms=t0 + 63_500, confirmed_ms=t0 + 66_000, outcome=SessionOutcome.RUNNING,
    )  # fmt: skip
    recording.sessions = [first, second]
    recording.state = State.RECORDING
    recording.desired = Desired.RECORDING
    recording.restarts = 1
    recording.start_attempts = 2
    recording.created_ms = t0
    recording.files = {
        "a.m3u8": FileEntry(name=f"{rid}/a.m3u8", sid=first.sid or "", status="uploaded", source="31"),
        "a_0.ts": FileEntry(name=f"{rid}/a_0.ts", sid=first.sid or "", status="backed_up", source="32"),
        "b.m3u8": FileEntry(name=f"{rid}/b.m3u8", sid=second.sid or "", status="recorded", source="4"),
    }
    connection.set(schema.recording(rid), encode(recording))
    connection.hset(schema.RECORDING_STATES, rid, f"recording {t0 + 66_000}")
    connection.delete(schema.recording_timeline(rid))
    entries: list[dict[str, Any]] = [
        {"ts": t0, "kind": "api", "what": "created", "mode": "mix", "cname": cname},
        {"ts": t0 + 900, "kind": "transition", "from": "pending", "to": "starting", "cause": "start requested"},
        {"ts": t0 + 1000, "kind": "agora", "endpoint": "acquire", "outcome": "ok", "resourceId": first.resource_id},
        {"ts": t0 + 1500, "kind": "agora", "endpoint": "start", "outcome": "ok", "sid": first.sid},
        {"ts": t0 + 4000, "kind": "agora", "endpoint": "query", "outcome": "ok", "status": 5},
        {"ts": t0 + 4001, "kind": "transition", "from": "starting", "to": "recording", "cause": "query confirmed the session"},
        {"ts": t0 + 58_000, "kind": "agora", "endpoint": "query", "outcome": "rejected", "status": 404, "code": 404},
        {"ts": t0 + 60_000, "kind": "transition", "from": "recording", "to": "starting", "cause": "restarting after the session ended abnormally"},
        {"ts": t0 + 63_000, "kind": "agora", "endpoint": "acquire", "outcome": "ok", "resourceId": second.resource_id},
        {"ts": t0 + 63_500, "kind": "agora", "endpoint": "start", "outcome": "ok", "sid": second.sid,
         "storageConfig": {"secretKey": STORAGE_SECRET}},
        {"ts": t0 + 66_000, "kind": "transition", "from": "starting", "to": "recording", "cause": "query confirmed the session"},
    ]  # fmt: skip
    connection.rpush(schema.recording_timeline(rid), *[msgspec.json.encode(e) for e in entries])
    if client is not None:
        for sid, uid, base in ((first.sid, first.uid, t0 + 2000), (second.sid, second.uid, t0 + 64_000)):
            for offset, (kind, name) in enumerate(((40, "recorder_started"), (41, "recorder_joined"))):
                envelope = event(
                    kind, sid=sid, cname=cname, uid=uid, sequence=offset, sendts=base + offset,
                    details={"msgName": name},
                )  # fmt: skip
                body = body_of(envelope)
                answer = client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET))
                assert answer.status_code == 200, answer.data
        while drain_batch(connection, schema.partition_of(cname), max_events=50, retention_seconds=3600):
            pass
    return rid


def csrf_of(page: bytes) -> str:
    found = CSRF.search(page.decode())
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: FlaskClient, token: str = API_TOKEN) -> Any:
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    return client.post("/dashboard/login", data={"token": token, "csrf": csrf_of(page.data)})
