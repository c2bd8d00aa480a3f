"""Recording orchestration end to end: real gunicorn, `rq worker --with-scheduler` and Agora emulator
(`python -m agora_emulator`: REST + signed NCS callbacks) processes, real Redis, one scenario per test.

These tests check the wiring (processes, HTTP, Redis, callbacks, notifications, process faults). Every
decision has a twin in ``tests/test_decide.py`` that runs in milliseconds against a fake Agora; the scenarios
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
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.emulated import (
    ACCESS_KEY,
    APP_ID,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    SECRET_KEY,
    Sink,
    control,
)
from tests.redis_server import free_port
from tests.stack import Stack

pytestmark = pytest.mark.e2e

SCALE = 0.05
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
            method, self.stack.url + path, json=body, headers={**AUTH, **headers}, timeout=10
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
        self, recording_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            recording = self.get(recording_id)
            if predicate(recording):
                return recording
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; recording is {recording}\n--- worker log ---\n{self.stack.log('worker-0.log')}"
                )
            time.sleep(0.1)

    def wait_state(self, recording_id: str, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait(recording_id, lambda r: r["state"] in states, timeout)


def start_emulator_process(directory: Path, notify_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """The emulator as its own process, exactly as `contract.md` runs it."""
    port = free_port()
    command = [
        sys.executable, "-m", "agora_emulator", "--port", str(port), "--notify-url", notify_url,
        "--ncs-secret", NCS_SECRET, "--app-id", APP_ID, "--customer-id", CUSTOMER_ID,
        "--customer-secret", CUSTOMER_SECRET, "--time-scale", str(SCALE), "--rate-limit", "10", "--ncs-timeout", "2",
    ]  # fmt: skip
    with open(directory / "emulator.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if requests.get(f"{url}/_emulator/state", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the emulator did not start: " + (directory / "emulator.log").read_text())
        time.sleep(0.1)


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    stack = Stack(tmp_path, {})
    extra = request.node.get_closest_marker("stack_env")
    app_server = Sink()
    emulator, url = start_emulator_process(tmp_path, f"{stack.url}/webhooks/agora")
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
    finally:
        stack.stop()
        emulator.terminate()
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
    world.wait(created["id"], lambda r: any(e.get("eventType") == 11 for e in timeline()), timeout=10)
    events = timeline()
    assert {"api", "agora", "transition", "callback"} <= {e["kind"] for e in events}
    files = world.api("GET", f"/v1/recordings/{created['id']}/files").json()
    assert files["state"] == "completed" and files["files"] == done["files"]
    task = control(world.agora, "GET", f"tasks/{sid}")
    assert task["exitReason"] == "stop"
    world.wait(
        created["id"], lambda r: "recording.completed" in world.notification_types(r["id"]), timeout=10
    )
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
    world.wait_state(created["id"], "uploading", "upload_unconfirmed", timeout=30)
    assert agora_calls(world, created["id"], "stop")[0]["code"] == 49
    done = world.wait_state(created["id"], "upload_unconfirmed", timeout=20)
    assert done["sessions"][0]["outcome"] == "stopped" and done["currentSession"] is None
    assert done["uploadStuck"] and done["filesInDoubt"] == sorted(f["fileName"] for f in done["files"])
    assert all(f["status"] == "recorded" for f in done["files"])
    world.wait(
        created["id"],
        lambda r: "recording.upload_unconfirmed" in world.notification_types(r["id"]),
        timeout=10,
    )


def test_agora_rate_limit_is_never_exceeded(world: World) -> None:
    """Eight recordings started and stopped at once: the emulator never sees more than 10 requests a second.

    (Checked to fail: with AGORA_RATE_LIMIT=0, i.e. no limit, the emulator refused 112 requests.)
    """
    ids = [world.create(cname=f"busy{i}")["id"] for i in range(8)]
    for recording_id in ids:
        world.wait_state(recording_id, "recording", timeout=60)
    for recording_id in ids:
        world.api("POST", f"/v1/recordings/{recording_id}/stop")
    for recording_id in ids:
        world.wait_state(recording_id, "completed", timeout=60)
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
    world.wait(created["id"], lambda r: len(agora_calls(world, r["id"], "update")) == 1, timeout=20)
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
        timeout=20,
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
    time.sleep(1)
    assert world.get(created["id"])["state"] == "recording"  # nobody is working on it
    world.stack.start_worker()
    done = world.wait_state(created["id"], "completed", timeout=60)
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
    world.wait(created["id"], lambda r: bool(channel_tasks(world, "slow")), timeout=20)
    time.sleep(6)  # both slow answers timed out and were retried while no callback got through
    assert len(channel_tasks(world, "slow")) == 1
    control(world.agora, "DELETE", "faults")
    recording = world.wait_state(created["id"], "recording", timeout=40)
    (task,) = channel_tasks(world, "slow")
    assert [s["sid"] for s in recording["sessions"]] == [task["sid"]] and recording["sessions"][0]["adopted"]
    starts = [r["status"] for r in control(world.agora, "GET", "requests?endpoint=start")["requests"]]
    assert starts[0] == 200 and set(starts[1:]) == {201}
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    world.wait_state(created["id"], "completed", timeout=30)
    assert not any(t["alive"] for t in channel_tasks(world, "slow"))


def test_stop_during_a_slow_start_leaves_no_task_running(world: World) -> None:
    """A stop requested while the start's answer is still on its way: the task that start created is found
    and stopped; no task is left running and every task created is one of the recording's sessions."""
    fault(world, kind="slow", endpoint="start", delay=3, times=2, cname="slowstop")
    created = world.create(cname="slowstop")
    world.wait(created["id"], lambda r: bool(channel_tasks(world, "slowstop")), timeout=20)
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    done = world.wait(created["id"], lambda r: r["state"] in TERMINAL, timeout=40)
    world.wait(
        created["id"], lambda r: not any(t["alive"] for t in channel_tasks(world, "slowstop")), timeout=20
    )
    tasks = channel_tasks(world, "slowstop")
    assert len(tasks) == 1
    assert {t["sid"] for t in tasks} <= {s["sid"] for s in world.get(created["id"])["sessions"]}
    assert done["state"] != "failed"


def test_timers_keep_firing_after_redis_is_killed_and_the_worker_too(world: World) -> None:
    """A recording waiting on timers (start answered 503, retried after backoff) survives `kill -9` of Redis
    (restarted from its append-only file) and a SIGKILLed worker replaced by a new one: it starts recording,
    and no timer fires more than a few seconds late (the service's own lateness figure)."""
    fault(world, kind="answer", endpoint="start", status=503, code=503, times=3, cname="phoenix")
    created = world.create(cname="phoenix")
    world.wait(created["id"], lambda r: len(agora_calls(world, r["id"], "start")) >= 1, timeout=20)
    world.stack.kill_redis()
    time.sleep(1)
    world.stack.start_redis()
    world.stack.kill_worker(world.stack.workers[0])
    world.stack.start_worker()
    assert world.stack.wait_ready()
    recording = world.wait_state(created["id"], "recording", timeout=40)
    assert [s.get("status") for s in agora_calls(world, created["id"], "start")][-1] is None
    assert recording["currentSession"]["outcome"] == "running"
    import redis as redis_py

    stats = redis_py.Redis.from_url(world.stack.redis.url).hgetall("acr:stats")
    late_ms = int(stats.get(b"timer_late_max_ms", 0))
    assert late_ms < 5000, late_ms
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    world.wait_state(created["id"], "completed", timeout=30)


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
    before = world.wait(created["id"], lambda r: r["state"] == "recording" and r["files"], timeout=60)
    first_sid = before["currentSession"]["sid"]
    assert world.api("POST", f"/v1/recordings/{created['id']}/pause").status_code == 202
    assert world.api("POST", f"/v1/recordings/{created['id']}/pause").status_code == 202  # idempotent
    paused = world.wait_state(created["id"], "paused", timeout=30)
    assert paused["desiredState"] == "paused"
    task = control(world.agora, "GET", f"tasks/{first_sid}")
    if mode == "web":
        assert task["alive"] and task["onhold"]
    else:
        assert not task["alive"] and paused["currentSession"] is None
    time.sleep(2)  # 40 emulated seconds on pause
    assert world.api("POST", f"/v1/recordings/{created['id']}/resume").status_code == 202
    resumed = world.wait_state(created["id"], "recording", timeout=60)
    resumed_sid = resumed["currentSession"]["sid"]
    assert (resumed_sid == first_sid) == (mode == "web")
    if mode == "web":
        assert not control(world.agora, "GET", f"tasks/{first_sid}")["onhold"]
    paused_names = {f["fileName"] for f in paused["files"]}
    if mode == "mix":  # a new session, new files (web: the page's playlist goes on in the same files)
        world.wait(
            created["id"],
            lambda r: any(f["fileName"] not in paused_names and f["sid"] == resumed_sid for f in r["files"]),
            timeout=60,
        )
    else:
        time.sleep(2)
    world.api("POST", f"/v1/recordings/{created['id']}/stop")
    done = world.wait_state(created["id"], "completed", timeout=60)
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
    world.wait_state(first["id"], "recording", timeout=30)
    second = world.create(cname="q2")
    world.wait(second["id"], lambda r: r["state"] == "queued" and r["lastError"], timeout=30)
    assert world.get(second["id"])["lastError"]["code"] == 406
    third = world.create(cname="q3")
    fourth = world.create(cname="q4", priority="high")
    queued = [world.wait_state(r["id"], "queued", timeout=30) for r in (third, fourth)]
    assert [r["queuePosition"] for r in queued] == [2, 1]
    metrics = requests.get(f"{world.stack.url}/metrics", timeout=5).text
    assert 'acr_admission_queue{class="recorder"} 2.0' in metrics
    assert 'acr_admission_slots_used{class="recorder"} 2.0' in metrics
    world.api("POST", f"/v1/recordings/{first['id']}/stop")
    # Agora's place freed: the recording waiting after a 406 gets it, not the head of the queue
    world.wait_state(second["id"], "recording", timeout=60)
    # the service's freed slot goes to the head of the queue (the high-priority fourth); Agora refuses it too
    world.wait(fourth["id"], lambda r: (r["lastError"] or {}).get("code") == 406, timeout=30)
    assert world.get(fourth["id"])["queuePosition"] is None  # admitted, waiting on Agora
    assert world.get(third["id"])["queuePosition"] == 1
    control(world.agora, "PUT", "quota", {"maxRecorders": 5})
    world.wait_state(fourth["id"], "recording", timeout=60)
    time.sleep(1)
    assert world.get(third["id"])["state"] == "queued"  # the service's 2 slots are both held
    world.api("POST", f"/v1/recordings/{second['id']}/stop")
    world.wait_state(third["id"], "recording", timeout=60)
    for recording in (first, second, third, fourth):
        world.api("POST", f"/v1/recordings/{recording['id']}/stop")
    states = [
        world.wait_state(r["id"], "completed", timeout=60)["state"] for r in (first, second, third, fourth)
    ]
    assert states == ["completed"] * 4
    assert not [t for t in control(world.agora, "GET", "state")["tasks"] if t["alive"]]
