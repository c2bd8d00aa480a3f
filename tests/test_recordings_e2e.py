"""Recording orchestration end to end: real gunicorn and `rq worker --with-scheduler` processes, real Redis,
and the Agora emulator (REST + signed NCS callbacks), one scenario per test.

Agora's time runs 20x faster in the emulator and the service's own timers (confirm after 5 s, backoff 3/6/9 s,
HA window 90 s, ...) run 20x faster through RECORDING_TIME_SCALE, so the two stay in proportion.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agora_emulator import Emulator
from tests.emulated import (
    ACCESS_KEY,
    APP_ID,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    SECRET_KEY,
    control,
    start_emulator,
)
from tests.stack import Stack

pytestmark = pytest.mark.e2e

SCALE = 0.05
NCS_SECRET = "e2e-orchestration-secret"
TOKEN = "e2e-orchestration-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class World:
    """The service stack and the emulator it records against."""

    def __init__(self, stack: Stack, emulator: Emulator, emulator_url: str) -> None:
        self.stack = stack
        self.emulator = emulator
        self.agora = emulator_url

    def api(self, method: str, path: str, body: Any = None, **headers: str) -> requests.Response:
        return requests.request(method, self.stack.url + path, json=body, headers={**AUTH, **headers}, timeout=10)

    def create(self, **spec: Any) -> dict[str, Any]:
        response = self.api("POST", "/v1/recordings", {"cname": "class1", "mode": "mix", **spec})
        assert response.status_code == 202, response.text
        return response.json()

    def get(self, recording_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/v1/recordings/{recording_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, recording_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            recording = self.get(recording_id)
            if predicate(recording):
                return recording
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; recording is {recording}\n--- worker log ---\n{self.stack.log('worker-0.log')}")
            time.sleep(0.1)

    def wait_state(self, recording_id: str, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait(recording_id, lambda r: r["state"] in states, timeout)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    stack = Stack(tmp_path, {})
    emulator, url = start_emulator(f"{stack.url}/webhooks/agora", time_scale=SCALE, ncs_secret=NCS_SECRET, rate_limit=10)
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
        }
    )
    try:
        stack.start()
        yield World(stack, emulator, url)
    finally:
        stack.stop()
        emulator.close()


def no_secrets(world: World, *texts: str) -> None:
    for text in texts:
        for secret in (ACCESS_KEY, SECRET_KEY, CUSTOMER_SECRET):
            assert secret not in text


@pytest.mark.parametrize(
    ("mode", "extra", "expected_suffixes"),
    [
        ("individual", {}, ["__uid_e_audio.m3u8", "__uid_e_video.m3u8"]),
        ("mix", {"recordingFileConfig": {"avFileType": ["hls", "mp4"]}}, [".m3u8", "_0.mp4"]),
        ("web", {"web": {"url": "https://example.com/class", "maxRecordingHour": 2}, "recordingFileConfig": {"avFileType": ["hls", "mp4"]}}, [".m3u8", "_0.mp4"]),
        ("web", {"web": {"url": "https://example.com/class", "rtmpUrls": ["rtmp://cdn.example.com/live/k"]}}, [".m3u8"]),
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
    events = world.api("GET", f"/v1/recordings/{created['id']}/events").json()["events"]
    kinds = {e["kind"] for e in events}
    assert {"api", "agora", "transition", "callback"} <= kinds
    callbacks = [e["eventType"] for e in events if e["kind"] == "callback"]
    assert 11 in callbacks
    files = world.api("GET", f"/v1/recordings/{created['id']}/files").json()
    assert files["state"] == "completed" and files["files"] == done["files"]
    task = control(world.agora, "GET", f"tasks/{sid}")
    assert task["exitReason"] == "stop"
    if mode == "web" and "rtmpUrls" in extra["web"]:
        assert task["rtmpUrls"] == ["rtmp://cdn.example.com/live/k"]
    no_secrets(world, str(done), str(events), world.api("GET", "/v1/recordings").text)
