"""Recording orchestration end to end: real gunicorn, `rq worker --with-scheduler` and Agora emulator
(`python -m agora_emulator`: REST + signed NCS callbacks) processes, real Redis, one scenario per test.

These tests check the wiring (processes, HTTP, Redis, callbacks, notifications, process faults). Every
decision has a twin in ``tests/unit/test_decide.py`` that runs in milliseconds against a fake Agora; the scenarios
that only exercise a decision (start 5xx/400, death, abnormal exit, HA failover, idle exit, max duration,
backup, stop 404/435, web capability limit) live there only.

Agora's time runs 20x faster in the emulator and the service's own timers (confirm after 5 s, backoff 3/6/9 s,
HA window 90 s, ...) run 20x faster through RECORDING_TIME_SCALE, so the two stay in proportion.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq import Worker

from tests.support.emulated import (
    ACCESS_KEY,
    APP_ID,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    SECRET_KEY,
    Sink,
    control,
)
from tests.support.redis_server import assert_known_keys
from tests.support.stack import Stack, start_emulator_process
from tests.support.wait import wait_until
from workers.recordings.liveness import RESTART_GRACE_MS

SCALE = 0.05
#: How long a test waits for a recording to get where it should before failing (a loaded machine is slow).
DEADLINE = 90.0
NCS_SECRET = "e2e-orchestration-secret"
TOKEN = "e2e-orchestration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


NOTIFY_SECRET = "whsec_" + base64.b64encode(b"e2e-notify-signing-key-32-bytes!").decode()


class World:
    """The service stack, the emulator it records against, and the app server receiving notifications."""

    def __init__(self, stack: Stack, emulator_url: str, app_server: Sink) -> None:
        self.stack = stack
        self.agora = emulator_url
        self.app_server = app_server

    def notifications(self, recording_id: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """(headers, body) of each notification received for a recording, in arrival order."""
        received = list(self.app_server.received)
        return [
            (h, b)
            for h, b in ((h, json.loads(raw)) for h, raw in received)
            if b["data"]["id"] == recording_id
        ]

    def notification_types(self, recording_id: str) -> list[str]:
        return [body["type"] for _, body in self.notifications(recording_id)]

    def api(self, method: str, path: str, body: Any = None, **headers: str) -> requests.Response:
        return requests.request(
            method, self.stack.url + path, json=body, headers={**AUTH, **headers}, timeout=30
        )

    def create(self, **spec: Any) -> dict[str, Any]:
        response = self.api("POST", "/v1/recordings", {"cname": "class1", "mode": "mix", **spec})
        assert response.status_code == 202, response.text
        return response.json()

    def get(self, recording_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/v1/recordings/{recording_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(
        self, recording_id: str, predicate: Callable[[dict[str, Any]], bool], what: str | None = None
    ) -> dict[str, Any]:
        """The recording once ``predicate`` holds for it (the deadline is only there to fail a stuck test)."""
        seen: list[dict[str, Any]] = []

        def holds() -> dict[str, Any] | None:
            recording = self.get(recording_id)
            seen[:] = [recording]
            return recording if predicate(recording) else None

        found = wait_until(holds, DEADLINE, 0.05, what=what, seen=lambda: self.diagnosis(seen))
        assert found is not None
        return found

    def wait_state(self, recording_id: str, *states: str) -> dict[str, Any]:
        return self.wait(recording_id, lambda r: r["state"] in states, f"state in {states}")

    def diagnosis(self, seen: list[dict[str, Any]]) -> str:
        logs = "\n".join(
            f"--- {name} ---\n{self.stack.log(name)}"
            for name in [f"worker-{n}.log" for n in range(len(self.stack.workers))]
        )
        return f"recording: {seen[-1] if seen else None}\n{logs}"

    def emulated_now(self) -> float:
        """The emulator's clock, in emulated seconds since it started."""
        return float(control(self.agora, "GET", "state")["emulatedSeconds"])

    def hold(self, emulated_seconds: float) -> None:
        """Let ``emulated_seconds`` of Agora's (and the service's) time pass: a scenario's duration, on the
        emulated clock."""
        until = self.emulated_now() + emulated_seconds
        wait_until(lambda: self.emulated_now() >= until, interval=0.05, what=f"{emulated_seconds} emulated s")


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    stack = Stack(tmp_path, {})
    extra = request.node.get_closest_marker("stack_env")
    app_server = Sink()
    emulator, url = start_emulator_process(
        tmp_path, "--notify-url", f"{stack.url}/webhooks/agora", "--ncs-secret", NCS_SECRET, "--app-id", APP_ID,
        "--customer-id", CUSTOMER_ID, "--customer-secret", CUSTOMER_SECRET, "--time-scale", str(SCALE),
        "--rate-limit", "10", "--ncs-timeout", "2",
    )  # fmt: skip
    stack.env.update(
        {
            "APP_ENV": "production",
            "AGORA_NCS_SECRETS": NCS_SECRET,
            "API_TOKENS": TOKEN,
            "AGORA_APP_ID": APP_ID,
            "AGORA_CUSTOMER_ID": CUSTOMER_ID,
            "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
            "AGORA_API_BASE_URL": url,
            "AGORA_STORAGE_VENDOR": "1",
            "AGORA_STORAGE_REGION": "0",
            "AGORA_STORAGE_BUCKET": "e2e-bucket",
            "AGORA_STORAGE_ACCESS_KEY": ACCESS_KEY,
            "AGORA_STORAGE_SECRET_KEY": SECRET_KEY,
            "RECORDING_TIME_SCALE": str(SCALE),
            "NOTIFY_URL": app_server.url,
            "NOTIFY_SECRET": NOTIFY_SECRET,
            "UPLOAD_STUCK_SECONDS": "60",
            "AGORA_READ_TIMEOUT_SECONDS": "1",
        }
    )
    if extra is not None:
        stack.env.update(extra.args[0])
    try:
        stack.start()
        yield World(stack, url, app_server)
        assert_known_keys(stack.redis)
    finally:
        stack.kill()
        emulator.kill()
        emulator.wait(10)
        app_server.close()


def no_secrets(world: World, *texts: str) -> None:
    for text in texts:
        for secret in (ACCESS_KEY, SECRET_KEY, CUSTOMER_SECRET):
            assert secret not in text


@pytest.mark.parametrize(
    ("mode", "extra", "expected_suffixes"),
    [
        ("individual", {}, ["__uid_e_audio.m3u8", "__uid_e_video.m3u8"]),
        ("mix", {"recordingFileConfig": {"avFileType": ["hls", "mp4"]}}, [".m3u8", "_0.mp4"]),
        (
            "web",
            {
                "web": {"url": "https://example.com/class", "maxRecordingHour": 2},
                "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
            },
            [".m3u8", "_0.mp4"],
        ),
        (
            "web",
            {"web": {"url": "https://example.com/class", "rtmpUrls": ["rtmp://cdn.example.com/live/k"]}},
            [".m3u8"],
        ),
    ],
    ids=["individual", "mix", "web", "web-cdn"],
)
def test_happy_path(world: World, mode: str, extra: dict[str, Any], expected_suffixes: list[str]) -> None:
    """pending → recording (confirmed by query) → stop → completed, every file uploaded, no secret shown."""
    created = world.create(mode=mode, **extra)
    assert created["state"] == "pending" and created["desiredState"] == "recording"
    recording = world.wait(created["id"], lambda r: r["state"] == "recording" and r["files"])
    sid = recording["currentSession"]["sid"]
    assert sid and recording["currentSession"]["outcome"] == "running"
    stop = world.api("POST", f"/v1/recordings/{created['id']}/stop")
    assert stop.status_code == 202 and stop.json()["desiredState"] == "stopped"
    done = world.wait_state(created["id"], "completed")
    assert done["files"] and all(f["status"] == "uploaded" for f in done["files"])
    for suffix in expected_suffixes:
        assert any(f["fileName"].endswith(suffix) for f in done["files"]), (suffix, done["files"])

    def timeline() -> list[dict[str, Any]]:
        return world.api("GET", f"/v1/recordings/{created['id']}/events").json()["events"]

    # The exit callback is delivered and applied asynchronously, possibly after the stop's answer.
    wait_until(lambda: any(e.get("eventType") == 11 for e in timeline()), what="the exit callback applied")
    events = timeline()
    assert {"api", "agora", "transition", "callback"} <= {e["kind"] for e in events}
    files = world.api("GET", f"/v1/recordings/{created['id']}/files").json()
    assert files["state"] == "completed" and files["files"] == done["files"]
    task = control(world.agora, "GET", f"tasks/{sid}")
    assert task["exitReason"] == "stop"
    world.wait(created["id"], lambda r: "recording.completed" in world.notification_types(r["id"]))
    assert world.notification_types(created["id"]) == ["recording.started", "recording.completed"]
    if mode == "web" and "rtmpUrls" in extra["web"]:
        assert task["rtmpUrls"] == ["rtmp://cdn.example.com/live/k"]
    no_secrets(world, str(done), str(events), world.api("GET", "/v1/recordings").text)


def fault(world: World, **spec: Any) -> None:
    control(world.agora, "POST", "faults", spec)


def agora_calls(world: World, recording_id: str, endpoint: str) -> list[dict[str, Any]]:
    events = world.api("GET", f"/v1/recordings/{recording_id}/events").json()["events"]
    return [e for e in events if e["kind"] == "agora" and e.get("endpoint") == endpoint]


def test_stop_answered_49_leaves_the_upload_unconfirmed(world: World) -> None:
    """stop answered 49 means already stopped: the session ends without error; as no upload callback follows
    (the emulated task was not really stopped), after UPLOAD_STUCK_SECONDS the recording ends
    ``upload_unconfirmed`` with the files in doubt, and says so in a notification."""
    created = world.create(cname="gone49")
    world.wait(created["id"], lambda r: r["state"] == "recording" and r["files"])
    fault(world, kind="answer", endpoint="stop", status=400, code=49, reason="invalid operation", times=1)
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    world.wait_state(created["id"], "uploading", "upload_unconfirmed")
    assert agora_calls(world, created["id"], "stop")[0]["code"] == 49
    done = world.wait_state(created["id"], "upload_unconfirmed")
    assert done["sessions"][0]["outcome"] == "stopped" and done["currentSession"] is None
    assert done["uploadStuck"] and done["filesInDoubt"] == sorted(f["fileName"] for f in done["files"])
    assert all(f["status"] == "recorded" for f in done["files"])
    world.wait(
        created["id"],
        lambda r: "recording.upload_unconfirmed" in world.notification_types(r["id"]),
    )


def test_agora_rate_limit_is_never_exceeded(world: World) -> None:
    """Eight recordings started and stopped at once: the emulator never sees more than 10 requests a second.

    (Checked to fail: with AGORA_RATE_LIMIT=0, i.e. no limit, the emulator refused 112 requests.)
    """
    ids = [world.create(cname=f"busy{i}")["id"] for i in range(8)]
    for recording_id in ids:
        world.wait_state(recording_id, "recording")
    for recording_id in ids:
        world.api("POST", f"/v1/recordings/{recording_id}/stop")
    for recording_id in ids:
        world.wait_state(recording_id, "completed")
    counts = control(world.agora, "GET", "state")["rateLimit"]
    assert counts["limited"] == 0 and counts["maxInOneSecond"] <= 10


def test_update_and_layout_reach_agora_in_order(world: World) -> None:
    """Subscription updates and layouts asked through the API are sent to Agora one at a time, in order."""
    control(world.agora, "PUT", "channels/changes", {"users": [{"uid": "1001"}, {"uid": "1002"}]})
    created = world.create(cname="changes")
    sid = world.wait_state(created["id"], "recording")["currentSession"]["sid"]
    layout = {
        "mixedVideoLayout": 3,
        "layoutConfig": [{"uid": "1001", "x_axis": 0, "y_axis": 0, "width": 1, "height": 1}],
    }
    assert world.api("POST", f"/v1/recordings/{created['id']}/layout", layout).status_code == 202
    update = {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1002"]}}}
    assert world.api("POST", f"/v1/recordings/{created['id']}/update", update).status_code == 202
    world.wait(created["id"], lambda r: len(agora_calls(world, r["id"], "update")) == 1)
    calls = [
        e["endpoint"]
        for e in world.api("GET", f"/v1/recordings/{created['id']}/events").json()["events"]
        if e["kind"] == "agora"
    ]
    assert calls.index("updateLayout") < calls.index("update")
    task = control(world.agora, "GET", f"tasks/{sid}")
    assert task["subscriptions"]["subscribeAudio"] == ["1002"]
    sent = [
        r["body"]["clientRequest"]
        for r in control(world.agora, "GET", "requests?endpoint=updateLayout")["requests"]
    ]
    assert sent == [
        {
            "mixedVideoLayout": 3,
            "layoutConfig": [{"uid": "1001", "x_axis": 0, "y_axis": 0, "width": 1, "height": 1}],
        }
    ]


def test_notifications_are_signed_and_retried(world: World) -> None:
    """Standard Webhooks headers and signature; a 500 from the app server is retried with the same webhook-id."""
    refused: set[str] = set()

    def first_attempt_fails(body: bytes) -> int:
        message = json.loads(body)
        key = message["type"] + message["data"]["id"]
        if key in refused:
            return 200
        refused.add(key)
        return 500

    world.app_server.answer = first_attempt_fails
    created = world.create(cname="notify")
    world.wait(
        created["id"],
        lambda r: world.notification_types(r["id"]) == ["recording.started", "recording.started"],
    )
    (first, body), (second, _) = world.notifications(created["id"])
    assert first["Webhook-Id"] == second["Webhook-Id"] and first["Webhook-Id"].startswith("msg_")
    for headers, _ in world.notifications(created["id"]):
        raw = next(raw for h, raw in world.app_server.received if h is headers)
        key = base64.b64decode(NOTIFY_SECRET.removeprefix("whsec_"))
        signed = f"{headers['Webhook-Id']}.{headers['Webhook-Timestamp']}.".encode() + raw
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert headers["Webhook-Signature"] == expected
        assert abs(int(headers["Webhook-Timestamp"]) - time.time()) < 60
    assert body["data"]["state"] == "recording" and body["data"]["id"] == created["id"]
    no_secrets(world, str(world.app_server.received))


def test_worker_killed_mid_recording(world: World) -> None:
    """SIGKILL of the worker while recording: a new worker picks up the timers and the stop; nothing is lost."""
    created = world.create(cname="survivor")
    world.wait(created["id"], lambda r: r["state"] == "recording" and r["files"])
    world.stack.kill_worker(world.stack.workers[0])
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    world.hold(20)  # four of its confirm periods
    assert world.get(created["id"])["state"] == "recording"  # nobody is working on it
    world.stack.start_worker()
    done = world.wait_state(created["id"], "completed")
    assert done["files"] and all(f["status"] == "uploaded" for f in done["files"])


TERMINAL = ("completed", "backed_up", "upload_unconfirmed", "failed")


def channel_tasks(world: World, cname: str) -> list[dict[str, Any]]:
    return [t for t in control(world.agora, "GET", "state")["tasks"] if t["cname"] == cname]


def test_slow_start_is_adopted_not_duplicated(world: World) -> None:
    """Agora acts on start but answers after the client's read timeout (twice), and the task's first
    callbacks are lost: the service asks again with the same resource and uid (201/7), never starts a second
    task, learns the sid from the task's later callbacks and records with that one task."""
    fault(world, kind="slow", endpoint="start", delay=3, times=2, cname="slow")
    fault(world, kind="ncs", loss=1.0, cname="slow")
    created = world.create(cname="slow")
    wait_until(lambda: channel_tasks(world, "slow"), what="a task started")
    # both slow answers timed out and were retried while no callback got through: a third start, answered
    wait_until(
        lambda: [r["status"] for r in control(world.agora, "GET", "requests?endpoint=start")["requests"]][2:],
        what="a third start",
    )
    assert len(channel_tasks(world, "slow")) == 1
    control(world.agora, "DELETE", "faults")
    recording = world.wait_state(created["id"], "recording")
    (task,) = channel_tasks(world, "slow")
    assert [s["sid"] for s in recording["sessions"]] == [task["sid"]] and recording["sessions"][0]["adopted"]
    starts = [r["status"] for r in control(world.agora, "GET", "requests?endpoint=start")["requests"]]
    assert starts[0] == 200 and set(starts[1:]) == {201}
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    world.wait_state(created["id"], "completed")
    assert not any(t["alive"] for t in channel_tasks(world, "slow"))


def test_stop_during_a_slow_start_leaves_no_task_running(world: World) -> None:
    """A stop requested while the start's answer is still on its way: the task that start created is found
    and stopped; no task is left running and every task created is one of the recording's sessions."""
    fault(world, kind="slow", endpoint="start", delay=3, times=2, cname="slowstop")
    created = world.create(cname="slowstop")
    wait_until(lambda: channel_tasks(world, "slowstop"), what="a task started")
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    done = world.wait(created["id"], lambda r: r["state"] in TERMINAL)
    wait_until(lambda: not any(t["alive"] for t in channel_tasks(world, "slowstop")), what="no task alive")
    tasks = channel_tasks(world, "slowstop")
    assert len(tasks) == 1
    assert {t["sid"] for t in tasks} <= {s["sid"] for s in world.get(created["id"])["sessions"]}
    assert done["state"] != "failed"


def test_timers_keep_firing_after_redis_is_killed_and_the_worker_too(world: World) -> None:
    """A recording waiting on timers (start answered 503, retried after backoff) survives `kill -9` of Redis
    (restarted from its append-only file) and a SIGKILLed worker replaced by a new one: it starts recording,
    and no timer fires more than a few seconds later than the outage, the new worker's start and the restart
    grace for a dead worker's lock allow (the service's own lateness figure)."""
    fault(world, kind="answer", endpoint="start", status=503, code=503, times=3, cname="phoenix")
    created = world.create(cname="phoenix")
    world.wait(created["id"], lambda r: len(agora_calls(world, r["id"], "start")) >= 1)
    down = time.monotonic()
    world.stack.kill_redis()
    world.hold(20)  # Redis away for 20 emulated seconds
    world.stack.start_redis()
    redis_up = time.monotonic()
    world.stack.kill_worker(world.stack.workers[0])
    worker = world.stack.start_worker()
    connection = redis.Redis.from_url(world.stack.redis.url)
    wait_until(
        lambda: any(w.pid == worker.pid for w in Worker.all(connection=connection)),
        what="the new worker registered with RQ",
    )
    # No timer can fire from the kill until the new worker is there (longer on a busy machine), and a lock the
    # killed worker held is taken over only once Redis has been up for the restart grace (liveness.py): the
    # lateness the service may add is what comes after both.
    waited_ms = (max(time.monotonic(), redis_up + (RESTART_GRACE_MS + 1000) / 1000) - down) * 1000
    assert world.stack.wait_ready()
    recording = world.wait_state(created["id"], "recording")
    assert [s.get("status") for s in agora_calls(world, created["id"], "start")][-1] is None
    assert recording["currentSession"]["outcome"] == "running"
    stats = connection.hgetall("acr:stats")
    late_ms = int(stats.get(b"timer_late_max_ms", 0))
    assert late_ms < waited_ms + 3000, (late_ms, waited_ms)
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    world.wait_state(created["id"], "completed")


# -- the fleet: pause and resume, admission ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        ("mix", {"recordingFileConfig": {"avFileType": ["hls", "mp4"]}}),
        (
            "web",
            {"web": {"url": "https://example.com/class"}, "recordingFileConfig": {"avFileType": ["hls"]}},
        ),
    ],
    ids=["mix", "web"],
)
def test_pause_and_resume_keep_every_file_in_order(world: World, mode: str, extra: dict[str, Any]) -> None:
    """Pause, resume, stop: the files recorded before the pause and after the resume are all in the manifest,
    uploaded, in order. Mix ends its session on pause and starts another; web holds the page (onhold)."""
    created = world.create(cname=f"pause{mode}", mode=mode, **extra)
    before = world.wait(created["id"], lambda r: r["state"] == "recording" and r["files"])
    first_sid = before["currentSession"]["sid"]
    assert world.api("POST", f"/v1/recordings/{created['id']}/pause").status_code == 202
    assert world.api("POST", f"/v1/recordings/{created['id']}/pause").status_code == 202  # idempotent
    paused = world.wait_state(created["id"], "paused")
    assert paused["desiredState"] == "paused"
    task = control(world.agora, "GET", f"tasks/{first_sid}")
    if mode == "web":
        assert task["alive"] and task["onhold"]
    else:
        assert not task["alive"] and paused["currentSession"] is None
    world.hold(40)  # on pause
    assert world.api("POST", f"/v1/recordings/{created['id']}/resume").status_code == 202
    resumed = world.wait_state(created["id"], "recording")
    resumed_sid = resumed["currentSession"]["sid"]
    assert (resumed_sid == first_sid) == (mode == "web")
    if mode == "web":
        assert not control(world.agora, "GET", f"tasks/{first_sid}")["onhold"]
    paused_names = {f["fileName"] for f in paused["files"]}
    if mode == "mix":  # a new session, new files (web: the page's playlist goes on in the same files)
        world.wait(
            created["id"],
            lambda r: any(f["fileName"] not in paused_names and f["sid"] == resumed_sid for f in r["files"]),
        )
    else:
        world.hold(40)  # the page records on
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    done = world.wait_state(created["id"], "completed")
    files = done["files"]
    assert paused_names <= {f["fileName"] for f in files} and len(files) >= len(paused_names) + (
        mode == "mix"
    )
    assert all(f["status"] == "uploaded" for f in files)
    starts = [f["sliceStartTime"] or 0 for f in files]
    assert starts == sorted(starts)
    if mode == "mix":  # every file of the first session before every file of the second
        sids = [f["sid"] for f in files]
        assert sids == sorted(sids, key=lambda sid: sid != first_sid)
    # notifications leave after the state they announce, on their own queue
    wait_until(lambda: "recording.completed" in world.notification_types(created["id"]))
    assert world.notification_types(created["id"]) == [
        "recording.started",
        "recording.paused",
        "recording.resumed",
        "recording.completed",
    ]
    assert len(control(world.agora, "GET", "state")["tasks"]) == (1 if mode == "web" else 2)


@pytest.mark.stack_env({"AGORA_MAX_RECORDERS": "2"})
def test_recordings_beyond_the_quota_queue_and_start_in_order(world: World) -> None:
    """The service admits 2 recorders; Agora (the emulator) runs only 1: the second recording gets 406 and
    waits for capacity (queued, no failure), the third and fourth queue for the service's quota, and the
    fourth (high priority, created last) starts before the third. Nothing fails for lack of capacity."""
    control(world.agora, "PUT", "quota", {"maxRecorders": 1})
    first = world.create(cname="q1")
    world.wait_state(first["id"], "recording")
    second = world.create(cname="q2")
    world.wait(second["id"], lambda r: r["state"] == "queued" and r["lastError"])
    assert world.get(second["id"])["lastError"]["code"] == 406
    third = world.create(cname="q3")
    fourth = world.create(cname="q4", priority="high")
    queued = [world.wait_state(r["id"], "queued") for r in (third, fourth)]
    assert [r["queuePosition"] for r in queued] == [2, 1]
    metrics = requests.get(f"{world.stack.url}/metrics", timeout=30).text
    assert 'acr_admission_queue{class="recorder"} 2.0' in metrics
    assert 'acr_admission_slots_used{class="recorder"} 2.0' in metrics
    world.api("POST", f"/v1/recordings/{first['id']}/stop")
    # Agora's place freed: the recording waiting after a 406 gets it, not the head of the queue
    world.wait_state(second["id"], "recording")
    # the service's freed slot goes to the head of the queue (the high-priority fourth); Agora refuses it too
    world.wait(fourth["id"], lambda r: (r["lastError"] or {}).get("code") == 406)
    assert world.get(fourth["id"])["queuePosition"] is None  # admitted, waiting on Agora
    assert world.get(third["id"])["queuePosition"] == 1
    control(world.agora, "PUT", "quota", {"maxRecorders": 5})
    world.wait_state(fourth["id"], "recording")
    world.hold(20)
    assert world.get(third["id"])["state"] == "queued"  # the service's 2 slots are both held
    world.api("POST", f"/v1/recordings/{second['id']}/stop")
    world.wait_state(third["id"], "recording")
    for recording in (first, second, third, fourth):
        world.api("POST", f"/v1/recordings/{recording['id']}/stop")
    states = [world.wait_state(r["id"], "completed")["state"] for r in (first, second, third, fourth)]
    assert states == ["completed"] * 4
    assert not [t for t in control(world.agora, "GET", "state")["tasks"] if t["alive"]]
