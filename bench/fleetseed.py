"""Live recordings for the worker and latency benches: a fleet that is recording, seeded without Agora.

``BENCH_RECORDINGS`` (1,000; 0 = none) recordings are created with the store, as ``POST /v1/recordings`` does
(one channel each), then saved as the runner saves one whose start a query has just confirmed: state
``recording``, admitted (a holder of its capacity class), one session with its ``sid``, started and confirmed
now, its next query an hour away (:data:`QUERY_AFTER_MS`) and its one timer then, the sid mapped to the
recording (``acr:sid:<sid>:recording``) and its recorder uid claimed on its channel. The save goes through
:meth:`Runner.save` itself (``workers.core.scripts.SAVE_RECORDING``, under the recording's lock), so the keys are exactly those a worker
writes. Every callback of one of these sids then wakes its recording's orchestration step, as in production;
a step finds nothing due and calls no one.

The service processes get an App ID, credentials and a default storage (:func:`service_env`), and Agora's
address is an unused loopback port: a step that did call Agora would fail to connect, and the call is counted
all the same (``acr:hist:agora``) and logged ("agora call ..."). :func:`audit` reads those and how many steps
ran (each step without a call saves once: ``version`` counts saves) after the run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import redis

from tests.support.redis_server import free_port
from workers.core import schema, scripts
from workers.core.config import Settings
from workers.core.schema import AGORA_HISTOGRAM
from workers.recordings.admission import admit, slots_for
from workers.recordings.decide import Plan
from workers.recordings.machine import Cause, State
from workers.recordings.model import AgoraSession, decode
from workers.recordings.runner import Runner
from workers.recordings.store import RecordingSpec, create_recording

RECORDINGS = int(os.environ.get("BENCH_RECORDINGS", "1000"))
#: The seeded sessions' next query: far enough that no step of a bench calls Agora.
QUERY_AFTER_MS = 3600 * 1000
#: Event types of a recording session in its steady state (started, streams, slices, files, upload progress):
#: none ends the session or reports an error, so a step has nothing to do but look.
STEADY_EVENTS = (40, 43, 44, 42, 4, 30, 33)
#: What a seeded recording's version is after its seeding save (create: 0, then one save).
SEEDED_VERSION = 1


@dataclass(frozen=True)
class Live:
    """One seeded recording and the session its callbacks belong to."""

    id: str
    cname: str
    uid: str
    sid: str


def service_env(count: int) -> dict[str, str]:
    """Environment for web and workers: an App ID, credentials and a default storage (so a recording can be
    created and a step can build its Agora client), Agora at an unused loopback port, and the concurrency
    quota raised to fit the fleet (as Agora does on request)."""
    return {
        "AGORA_APP_ID": "bench-fleet-app",
        "AGORA_CUSTOMER_ID": "bench-customer",
        "AGORA_CUSTOMER_SECRET": "bench-customer-secret",
        "AGORA_API_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "AGORA_STORAGE_VENDOR": "1",
        "AGORA_STORAGE_REGION": "0",
        "AGORA_STORAGE_BUCKET": "bench-bucket",
        "AGORA_STORAGE_ACCESS_KEY": "bench-storage-access-key",
        "AGORA_STORAGE_SECRET_KEY": "bench-storage-secret-key",
        "AGORA_MAX_RECORDERS": str(max(2000, count)),
        "AGORA_MAX_WEB_RECORDERS": str(max(2000, count)),
    }


def _uid(n: int) -> str:
    return str(100_000 + n)


def _sid(n: int) -> str:
    return f"fleet-sid-{n:05d}"


class _NoAgora:
    """The seeding runner's client: seeding never calls Agora."""


def seed(connection: redis.Redis, environ: Mapping[str, str], count: int) -> list[Live]:
    """Create ``count`` recordings and save each as recording with one confirmed session (see the module
    docstring); ``environ`` is the service's environment (its settings are the workers')."""
    settings = Settings.from_env(environ)
    fleet = []
    for n in range(count):
        spec = msgspec.convert({"cname": f"fleet-{n}", "mode": "individual", "uid": _uid(n)}, RecordingSpec)
        rec = create_recording(connection, settings, spec)[0]
        runner = Runner(connection, settings, client=_NoAgora())  # one per step, as in production
        now = runner.clock()
        sid = _sid(n)
        rec.sessions.append(
            AgoraSession(
                resource_id=f"bench-resource-{n:05d}",
                uid=rec.uid,  # recorder_uid(rec.uid, 0): the first rotation is the recording's own uid
                acquired_ms=now,
                sid=sid,
                start_sent=1,
                started_ms=now,
                confirmed_ms=now,
                status=5,
                next_query_ms=now + QUERY_AFTER_MS,
            )
        )
        rec.state, rec.admitted, rec.start_attempts = State.RECORDING, True, 0
        rec.notified.append("recording.started")
        plan = Plan(wake_at=now + QUERY_AFTER_MS, owned_sids=[sid], claims=[rec.uid])
        for source, target, cause in (
            (State.PENDING, State.STARTING, Cause.START_REQUESTED),
            (State.STARTING, State.RECORDING, Cause.CONFIRMED),
        ):
            plan.notes.append(
                {
                    "ts": now,
                    "kind": "transition",
                    "from": source.value,
                    "to": target.value,
                    "cause": cause.value,
                    "sid": sid,
                }
            )
        lock, token = schema.recording_lock(rec.id), f"{secrets.token_hex(8)}|bench-seed"
        connection.set(lock, token, px=60_000)
        admit(connection, rec, slots_for(settings, rec.mode))  # takes its slot, as its first step did
        runner.save(rec, plan, token, 0)
        scripts.RELEASE_LOCK(connection, keys=[lock], args=[token])
        fleet.append(Live(id=rec.id, cname=rec.cname, uid=rec.uid, sid=sid))
    return fleet


def unseeded(count: int) -> list[Live]:
    """The sessions (sid, channel, recorder uid) of a fleet :func:`seed` creates, belonging to no recording
    (yet): the baseline's, and the callbacks' addresses."""
    return [
        Live(id="", cname=f"fleet-{n}", uid=str(100_000 + n), sid=f"fleet-sid-{n:05d}") for n in range(count)
    ]


def callback(notice_id: str, live: Live, sequence: int, notify_ms: int) -> bytes:
    """A signed-able NCS body on a seeded recording's session: a steady-state event, ``sequence`` increasing
    per session (copies with the same uid, sequence and type would be dropped as redundant)."""
    body = {
        "noticeId": notice_id,
        "productId": 3,
        "eventType": STEADY_EVENTS[sequence % len(STEADY_EVENTS)],
        "notifyMs": notify_ms,
        "payload": {
            "cname": live.cname,
            "uid": live.uid,
            "sid": live.sid,
            "sequence": sequence,
            "sendts": notify_ms,
            "serviceType": 0,
            "details": {"msgName": "bench", "status": 0},
        },
    }
    return msgspec.json.encode(body)


def audit(connection: redis.Redis, fleet: list[Live], logs: str = "") -> dict[str, Any]:
    """After a run: how many steps ran (saves beyond the seeding one), the recordings' states, Agora requests
    (``acr:hist:agora``) and log lines about Agora calls (both must be 0), step dead letters, longest step."""
    raws = connection.mget([schema.recording(live.id) for live in fleet]) if fleet else []
    recordings = [decode(raw) for raw in raws if isinstance(raw, bytes)]
    histogram = cast(dict[bytes, bytes], connection.hgetall(AGORA_HISTOGRAM))
    step_max_ms = cast(bytes | None, connection.hget(schema.STATS, "step_max_ms"))
    return {
        "recordings": len(fleet),
        "recording": sum(rec.state == State.RECORDING for rec in recordings),
        "steps": sum(rec.version - SEEDED_VERSION for rec in recordings),
        "recordings_stepped": sum(rec.version > SEEDED_VERSION for rec in recordings),
        "agora_requests": sum(int(v) for k, v in histogram.items() if not k.endswith(b"sum_us")),
        "agora_log_lines": logs.count("agora call"),
        "dead_letters": int(connection.xlen(schema.DEAD_LETTERS)),
        "step_max_ms": int(step_max_ms or 0),
    }
