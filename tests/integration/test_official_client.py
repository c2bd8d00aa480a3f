"""Agora's official Python client drives the emulator, and sends the same bodies as the project's client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agora_emulator import Emulator
from tests.support.emulated import (
    ACCESS_KEY,
    APP_ID,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    SECRET_KEY,
    control,
    make_client,
    start_emulator,
    storage,
)
from tests.support.wait import wait_until
from workers.agora import (
    AcquireClientRequest,
    AcquireRequest,
    AgoraClient,
    ExtensionService,
    ExtensionServiceConfig,
    LayoutConfig,
    RecordingConfig,
    RecordingFileConfig,
    RtmpOutput,
    ServiceParam,
    StartClientRequest,
    StartRequest,
    StopRequest,
    StreamSubscribe,
    TranscodingConfig,
    UidLists,
    UpdateClientRequest,
    UpdateLayoutClientRequest,
    UpdateLayoutRequest,
    UpdateRequest,
    WebRecordingConfig,
)
from workers.agora.bodies import RtmpPublishConfig

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "official_client_run.py"
CNAME, UID = "official", "527841"
MODES = ("individual", "mix", "web")


@pytest.fixture
def emulator() -> Iterator[tuple[Emulator, str]]:
    emulator, url = start_emulator()
    control(url, "PUT", f"channels/{CNAME}", {"users": [{"uid": "1001"}, {"uid": "1002"}]})
    yield emulator, url
    emulator.close()


def run_official_client(url: str) -> dict[str, Any]:
    """The official client in a subprocess (it leaves a non-daemon thread behind), with a timeout."""
    command = [sys.executable, str(SCRIPT), url, APP_ID, CUSTOMER_ID, CUSTOMER_SECRET, ACCESS_KEY, SECRET_KEY]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_request(mode: str) -> StartClientRequest:
    """The same configurations the official-client script sends, built with the project's typed bodies."""
    if mode == "individual":
        config = RecordingConfig(
            channel_type=0,
            stream_types=2,
            max_idle_time=30,
            subscribe_audio_uids=["1001"],
            subscribe_video_uids=["1001"],
            subscribe_uid_group=0,
        )
        return StartClientRequest(
            storage_config=storage(),
            recording_config=config,
            recording_file_config=RecordingFileConfig(av_file_type=["hls"]),
        )
    if mode == "mix":
        transcoding = TranscodingConfig(
            width=640, height=360, fps=15, bitrate=500, mixed_video_layout=1, background_color="#000000"
        )
        config = RecordingConfig(channel_type=0, audio_profile=1, transcoding_config=transcoding)
        return StartClientRequest(
            storage_config=storage(),
            recording_config=config,
            recording_file_config=RecordingFileConfig(av_file_type=["hls", "mp4"]),
        )
    services = [
        ExtensionService(
            service_name="web_recorder_service",
            error_handle_policy="error_abort",
            service_param=ServiceParam(
                url="https://example.com/class",
                audio_profile=0,
                video_width=1280,
                video_height=720,
                max_recording_hour=3,
            ),
        ),
        ExtensionService(
            service_name="rtmp_publish_service",
            error_handle_policy="error_ignore",
            service_param=ServiceParam(outputs=[RtmpOutput(rtmp_url="rtmp://cdn.example.com/live/a")]),
        ),
    ]
    return StartClientRequest(
        storage_config=storage(),
        extension_service_config=ExtensionServiceConfig(
            error_handle_policy="error_abort", extension_services=services
        ),
        recording_file_config=RecordingFileConfig(av_file_type=["hls", "mp4"]),
    )


def update_request(mode: str) -> UpdateClientRequest:
    if mode == "individual":
        return UpdateClientRequest(
            stream_subscribe=StreamSubscribe(audio_uid_list=UidLists(subscribe_audio_uids=["1001", "1002"]))
        )
    if mode == "mix":
        return UpdateClientRequest(
            stream_subscribe=StreamSubscribe(video_uid_list=UidLists(subscribe_video_uids=["#allstream#"]))
        )
    return UpdateClientRequest(
        web_recording_config=WebRecordingConfig(onhold=True),
        rtmp_publish_config=RtmpPublishConfig(outputs=[RtmpOutput(rtmp_url="rtmp://cdn.example.com/live/b")]),
    )


def record_with_project_client(agora: AgoraClient, mode: Any) -> None:
    acquired = agora.acquire(
        AcquireRequest(
            cname=CNAME,
            uid=UID,
            client_request=AcquireClientRequest(scene=1 if mode == "web" else 0, resource_expired_hour=24),
        ),
        mode=mode,
    )
    resource_id = acquired.resource_id
    assert resource_id
    sid = agora.start(
        resource_id, mode, StartRequest(cname=CNAME, uid=UID, client_request=start_request(mode))
    ).sid
    assert sid
    wait_until(lambda: agora.query(resource_id, sid, mode).status == 5)
    agora.update(
        resource_id, sid, mode, UpdateRequest(cname=CNAME, uid=UID, client_request=update_request(mode))
    )
    if mode == "mix":
        window = LayoutConfig(uid="1001", x_axis=0, y_axis=0, width=0.5, height=0.5, alpha=1, render_mode=0)
        layout = UpdateLayoutClientRequest(
            mixed_video_layout=3, background_color="#000000", layout_config=[window]
        )
        agora.update_layout(
            resource_id, sid, UpdateLayoutRequest(cname=CNAME, uid=UID, client_request=layout)
        )
    agora.stop(resource_id, sid, mode, StopRequest(cname=CNAME, uid=UID))


def bodies(url: str) -> list[tuple[str, str | None, Any]]:
    """(endpoint, mode, body) of every non-query call the emulator saw, in order."""
    result = []
    for request in control(url, "GET", "requests")["requests"]:
        if request["endpoint"] == "query":
            continue
        mode = next(
            (part for part in ("individual", "mix", "web") if f"/mode/{part}/" in request["path"]), None
        )
        result.append((request["endpoint"], mode, request["body"]))
    return result


def test_official_client_completes_every_mode(emulator: tuple[Emulator, str]) -> None:
    """acquire → start → query → update → (updateLayout) → stop succeed for individual, mix and web."""
    _, url = emulator
    results = run_official_client(url)
    for mode in MODES:
        outcome = results[mode]
        assert outcome["sid"] and outcome["statuses"][-1] == 5
        task = control(url, "GET", f"tasks/{outcome['sid']}")
        assert task["exitReason"] == "stop" and task["mode"] == mode
    assert results["individual"]["stop"]["uploadingStatus"] == "uploaded"
    assert results["mix"]["stop"]["uploadingStatus"] == "uploaded"
    web_services = {s["serviceName"]: s["payload"] for s in results["web"]["stop"]["extensionServiceState"]}
    assert web_services["upload_service"] == {"uploadingStatus": "uploaded"}
    endpoints = [endpoint for endpoint, _, _ in bodies(url)]
    assert endpoints == ["acquire", "start", "update", "stop"] + [
        "acquire",
        "start",
        "update",
        "updateLayout",
        "stop",
    ] + ["acquire", "start", "update", "stop"]


def test_both_clients_send_equivalent_bodies(emulator: tuple[Emulator, str]) -> None:
    """For the same operations, the emulator captures the same JSON bodies from both clients."""
    _, url = emulator
    run_official_client(url)
    official = bodies(url)
    control(url, "POST", "reset")
    control(url, "PUT", f"channels/{CNAME}", {"users": [{"uid": "1001"}, {"uid": "1002"}]})
    agora = make_client(url)
    for mode in MODES:
        record_with_project_client(agora, mode)
    ours = bodies(url)
    assert len(ours) == len(official) == 13
    for (endpoint, mode, theirs), (our_endpoint, our_mode, mine) in zip(official, ours, strict=True):
        assert (endpoint, mode) == (our_endpoint, our_mode)
        assert mine == theirs, f"{endpoint} {mode}"
