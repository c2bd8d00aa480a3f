"""The project's Agora client against the emulator over real HTTP: every mode, every endpoint, every error."""

from __future__ import annotations

import base64
import logging
import socket
import subprocess
import sys

import pytest
import requests

from tests.support.emulated import (
    ACCESS_KEY,
    APP_ID,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    SECRET_KEY,
    advance,
    begin,
    control,
    make_client,
    start_body,
    start_emulator,
)
from tests.support.wait import wait_until
from workers.agora import (
    AcquireRequest,
    AgoraApiError,
    AgoraClient,
    AgoraTransportError,
    HostPlan,
    Outcome,
    RtmpOutput,
    StopClientRequest,
    StopRequest,
    StreamSubscribe,
    Timeout,
    UidLists,
    UpdateClientRequest,
    UpdateLayoutClientRequest,
    UpdateLayoutRequest,
    UpdateRequest,
    WebRecordingConfig,
)
from workers.agora.bodies import RtmpPublishConfig, StorageConfig


def running(agora: AgoraClient, resource_id: str, sid: str, mode: str) -> bool:
    return agora.query(resource_id, sid, mode).status == 5  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["individual", "mix", "web"])
def test_each_mode_acquire_start_query_update_stop(agora: AgoraClient, base: str, mode: str) -> None:
    """The whole lifecycle in each mode: status reaches 5, files follow §3.11's naming, stop reports the upload."""
    resource_id, sid = begin(agora, mode, rtmp=(mode == "web"))  # type: ignore[arg-type]
    wait_until(lambda: running(agora, resource_id, sid, mode))
    report = agora.query(resource_id, sid, mode)  # type: ignore[arg-type]
    assert report.running and report.sid == sid
    names = [f.file_name for f in report.files]
    if mode == "individual":
        assert f"tests/{sid}_room1__uid_s_1001__uid_e_audio.m3u8" in names
        assert report.file_list_mode == "json"
        change = UpdateClientRequest(
            stream_subscribe=StreamSubscribe(audio_uid_list=UidLists(unsubscribe_audio_uids=["1002"]))
        )
    elif mode == "mix":
        assert names == [f"tests/{sid}_room1.m3u8"] and report.file_list_mode == "string"
        change = UpdateClientRequest(
            stream_subscribe=StreamSubscribe(video_uid_list=UidLists(subscribe_video_uids=["1001"]))
        )
        layout = UpdateLayoutClientRequest(mixed_video_layout=1, background_color="#112233")
        agora.update_layout(
            resource_id, sid, UpdateLayoutRequest(cname="room1", uid="527841", client_request=layout)
        )
    else:
        assert names == [f"tests/{sid}_room1.m3u8", f"tests/{sid}_room1_0.mp4"]
        assert [s.service_name for s in report.services] == ["web_recorder_service", "rtmp_publish_service"]
        change = UpdateClientRequest(
            web_recording_config=WebRecordingConfig(onhold=True),
            rtmp_publish_config=RtmpPublishConfig(
                outputs=[RtmpOutput(rtmp_url="rtmp://cdn.example.com/live/b")]
            ),
        )
    updated = agora.update(
        resource_id, sid, mode, UpdateRequest(cname="room1", uid="527841", client_request=change)
    )  # type: ignore[arg-type]
    assert updated.sid == sid and updated.request_id
    stopped = agora.stop(resource_id, sid, mode, StopRequest(cname="room1", uid="527841"))  # type: ignore[arg-type]
    assert stopped.uploading_status == "uploaded"
    assert [f.file_name for f in stopped.files] == names
    task = control(base, "GET", f"tasks/{sid}")
    assert task["exitReason"] == "stop"
    if mode == "web":
        assert task["onhold"] is True and task["rtmpUrls"] == ["rtmp://cdn.example.com/live/b"]


def test_storage_sts_refresh_update(agora: AgoraClient) -> None:
    """update can carry new storage credentials (STS refresh)."""
    resource_id, sid = begin(agora, "mix")
    fresh = StorageConfig(
        vendor=1,
        region=0,
        bucket="recordings",
        access_key="A2",
        secret_key="S2",
        sts_token="tok",
        sts_expiration=1_900_000_000,
    )
    answer = agora.update(
        resource_id,
        sid,
        "mix",
        UpdateRequest(cname="room1", uid="527841", client_request=UpdateClientRequest(storage_config=fresh)),
    )
    assert answer.sid == sid


def api_error(call: object, *args: object) -> AgoraApiError:
    with pytest.raises(AgoraApiError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_wrong_credentials_and_app_id(base: str) -> None:
    """401 for bad Basic credentials; an unknown App ID is refused by acquire with invalid_appid."""
    bad = AgoraClient(
        app_id=APP_ID,
        customer_id=CUSTOMER_ID,
        customer_secret="wrong",
        hosts=HostPlan.single(base, retries=0),
    )
    error = api_error(bad.acquire, AcquireRequest(cname="room1", uid="1"))
    assert (error.status, error.reason, error.outcome) == (
        401,
        "Invalid authentication credentials",
        Outcome.REJECTED,
    )
    other_app = AgoraClient(
        app_id="other",
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        hosts=HostPlan.single(base, retries=0),
    )
    error = api_error(other_app.acquire, AcquireRequest(cname="room1", uid="1"))
    assert (error.status, error.code, error.reason) == (400, 400, "invalid_appid")


def test_start_twice_is_already_running_and_conflicts(agora: AgoraClient) -> None:
    """The same resource ID again: 201/7 without sid; the same cname+uid on a new resource: 53."""
    resource_id, _ = begin(agora, "mix")
    error = api_error(agora.start, resource_id, "mix", start_body("mix"))
    assert (error.status, error.code, error.outcome) == (201, 7, Outcome.ALREADY_RUNNING)
    fresh = agora.acquire(AcquireRequest(cname="room1", uid="527841")).resource_id
    error = api_error(agora.start, fresh, "mix", start_body("mix"))
    assert (error.status, error.code, error.reason, error.outcome) == (
        400,
        53,
        "task conflict",
        Outcome.ALREADY_RUNNING,
    )


def test_resource_id_rules(base: str) -> None:
    """Unreadable resource ID 1001, expired (5 emulated minutes) 433, someone else's sid 1003, unknown sid 404."""
    emulator, url = start_emulator()
    try:
        agora = make_client(url)
        error = api_error(agora.start, "not-a-resource-id", "mix", start_body("mix"))
        assert (error.code, error.outcome) == (1001, Outcome.REACQUIRE)
        stale = agora.acquire(AcquireRequest(cname="room1", uid="527841")).resource_id
        advance(emulator, 301)  # the resource ID is now older than its 5 minutes
        error = api_error(agora.start, stale, "mix", start_body("mix"))
        assert (error.code, error.outcome) == (433, Outcome.REACQUIRE)
    finally:
        emulator.close()
    agora = make_client(base)
    first, sid_a = begin(agora, "mix", uid="11")
    second, _ = begin(agora, "mix", uid="12")
    error = api_error(agora.query, second, sid_a, "mix")
    assert error.code == 1003
    error = api_error(agora.query, first, "0" * 32, "mix")
    assert (error.status, error.code, error.reason, error.outcome) == (
        404,
        404,
        "failed to find worker",
        Outcome.NOT_FOUND,
    )


def test_nobody_published_stop_is_435_then_49(agora: AgoraClient, base: str) -> None:
    """An empty channel records nothing: stop answers 206/435; a second stop answers 49."""
    control(base, "PUT", "channels/empty", {"users": []})
    resource_id, sid = begin(agora, "mix", cname="empty")
    error = api_error(agora.stop, resource_id, sid, "mix", StopRequest(cname="empty", uid="527841"))
    assert (error.status, error.code, error.outcome) == (206, 435, Outcome.NOTHING_RECORDED)
    error = api_error(agora.stop, resource_id, sid, "mix", StopRequest(cname="empty", uid="527841"))
    assert (error.status, error.code, error.outcome) == (400, 49, Outcome.ALREADY_STOPPED)


def test_stop_after_linger_is_404_already_stopped(agora: AgoraClient) -> None:
    """Once the exited task is cleaned up (60 emulated s), stop answers 404, which means already stopped."""
    resource_id, sid = begin(agora, "mix")
    wait_until(lambda: running(agora, resource_id, sid, "mix"))
    stopped = agora.stop(
        resource_id,
        sid,
        "mix",
        StopRequest(cname="room1", uid="527841", client_request=StopClientRequest(async_stop=True)),
    )
    assert stopped.uploading_status == "unknown"  # an asynchronous stop does not wait for the upload

    def gone() -> bool:
        try:
            agora.stop(resource_id, sid, "mix", StopRequest(cname="room1", uid="527841"))
        except AgoraApiError as exc:
            return exc.status == 404 and exc.outcome is Outcome.ALREADY_STOPPED
        return False

    wait_until(gone, interval=0.2)


@pytest.mark.parametrize(
    ("fault", "endpoint", "status", "code", "outcome"),
    [
        ({"status": 500, "code": 500}, "acquire", 500, 500, Outcome.RETRY),
        ({"status": 206, "code": 65}, "start", 206, 65, Outcome.RETRY),
        ({"status": 500, "code": 502}, "start", 500, 502, Outcome.REACQUIRE),
        ({"status": 504, "code": 62}, "query", 504, 62, Outcome.RETRY),
        ({"status": 429, "message": "API rate limit exceeded"}, "stop", 429, None, Outcome.RATE_LIMITED),
    ],
)
def test_scripted_answers(
    agora: AgoraClient,
    base: str,
    fault: dict[str, object],
    endpoint: str,
    status: int,
    code: int | None,
    outcome: Outcome,
) -> None:
    """5xx, 206/65, 504/62 and 429 answers switched on in the emulator reach the caller with their outcome, once."""
    calls = {
        "acquire": lambda: agora.acquire(AcquireRequest(cname="room1", uid="527841")),
        "start": lambda: agora.start(
            agora.acquire(AcquireRequest(cname="room1", uid="527841")).resource_id, "mix", start_body("mix")
        ),
    }
    if endpoint in calls:
        control(base, "POST", "faults", {"kind": "answer", "endpoint": endpoint, "times": 1, **fault})
        error = api_error(calls[endpoint])
        calls[endpoint]()  # the fault is used up: the same call now succeeds
    else:
        resource_id, sid = begin(agora, "mix")
        wait_until(lambda: running(agora, resource_id, sid, "mix"))
        call = {
            "query": lambda: agora.query(resource_id, sid, "mix"),
            "stop": lambda: agora.stop(resource_id, sid, "mix", StopRequest(cname="room1", uid="527841")),
        }[endpoint]
        control(base, "POST", "faults", {"kind": "answer", "endpoint": endpoint, "times": 1, **fault})
        error = api_error(call)
        call()
    assert (error.status, error.code, error.outcome, error.endpoint) == (status, code, outcome, endpoint)
    assert error.request_id


def test_rate_limit_answers_429(base: str) -> None:
    """Over the App ID's QPS the emulator answers 429 API rate limit exceeded, and counts it."""
    control(base, "PUT", "rate-limit", {"qps": 3})
    agora = make_client(base)
    outcomes = []
    for _ in range(6):
        try:
            agora.acquire(AcquireRequest(cname="room1", uid="1"))
            outcomes.append("ok")
        except AgoraApiError as exc:
            outcomes.append(exc.outcome.value)
    assert outcomes.count("ok") == 3 and outcomes.count("rate_limited") == 3
    state = control(base, "GET", "state")["rateLimit"]
    assert state == {"qps": 3, "maxInOneSecond": 3, "limited": 3}


def test_emulator_rejects_what_agora_rejects(base: str) -> None:
    """Raw requests: missing auth 401, wrong path 404, wrong content type code 8, invalid parameters code 2, bad cname 1013."""
    prefix = f"{base}/v1/apps/{APP_ID}/cloud_recording"
    auth = (CUSTOMER_ID, CUSTOMER_SECRET)
    answer = requests.post(f"{prefix}/acquire", json={"cname": "a", "uid": "1"}, timeout=5)
    assert (answer.status_code, answer.json()) == (401, {"message": "Unauthorized"})
    answer = requests.get(f"{prefix}/acquire", auth=auth, timeout=5)
    assert (answer.status_code, answer.json()) == (404, {"message": "no Route matched with those values"})
    answer = requests.post(
        f"{prefix}/acquire", data="cname=a", auth=auth, headers={"Content-Type": "text/plain"}, timeout=5
    )
    assert (answer.status_code, answer.json()["code"]) == (400, 8)
    answer = requests.post(f"{prefix}/acquire", json={"cname": "a", "uid": 1}, auth=auth, timeout=5)
    assert (answer.status_code, answer.json()["code"]) == (400, 2)
    answer = requests.post(
        f"{prefix}/acquire",
        json={"cname": "a", "uid": "1", "clientRequest": {"resourceExpiredHour": 0}},
        auth=auth,
        timeout=5,
    )
    assert answer.json() == {"code": 2, "reason": "Acquire: invalid resourceExpiredHour value!"}
    answer = requests.post(f"{prefix}/acquire", json={"cname": "bad/näme", "uid": "1"}, auth=auth, timeout=5)
    assert answer.json()["code"] == 1013
    resource = requests.post(
        f"{prefix}/acquire", json={"cname": "a", "uid": "1"}, auth=auth, timeout=5
    ).json()["resourceId"]
    body = start_body("individual", cname="a", uid="1").to_json()
    body["clientRequest"]["recordingFileConfig"] = {"avFileType": ["hls", "mp4"]}
    answer = requests.post(
        f"{prefix}/resourceid/{resource}/mode/individual/start", json=body, auth=auth, timeout=5
    )
    assert (answer.status_code, answer.json()["code"]) == (400, 2)
    body["uid"] = "2"
    del body["clientRequest"]["recordingFileConfig"]
    answer = requests.post(
        f"{prefix}/resourceid/{resource}/mode/individual/start", json=body, auth=auth, timeout=5
    )
    assert (answer.status_code, answer.json()["code"]) == (400, 432)


def test_errors_and_logs_never_hold_secrets(
    agora: AgoraClient, base: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither error objects nor the client's logs contain the customer secret, storage keys or the Basic header."""
    caplog.set_level(logging.DEBUG)
    control(
        base,
        "POST",
        "faults",
        {
            "kind": "answer",
            "endpoint": "start",
            "status": 400,
            "code": 2,
            "reason": "Start: invalid storageConfig",
            "times": 1,
        },
    )
    resource_id = agora.acquire(AcquireRequest(cname="room1", uid="527841")).resource_id
    error = api_error(agora.start, resource_id, "mix", start_body("mix"))
    basic = base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
    texts = [str(error), repr(error), str(error.as_dict()), repr(agora), caplog.text]
    for secret in (CUSTOMER_SECRET, ACCESS_KEY, SECRET_KEY, basic):
        for text in texts:
            assert secret not in text
    assert error.as_dict()["reason"] == "Start: invalid storageConfig"
    captured = control(base, "GET", "requests?endpoint=start")["requests"][-1]["body"]
    assert captured["clientRequest"]["storageConfig"]["secretKey"].startswith("<redacted:")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_transport_failover_to_the_next_host(base: str) -> None:
    """A refused connection moves on to the next host after the documented backoff; the call succeeds there."""
    pauses: list[float] = []
    plan = HostPlan(
        primary=f"http://127.0.0.1:{closed_port()}",
        fallbacks=(f"http://127.0.0.1:{closed_port()}", base),
        backoff=(1.0, 3.0, 6.0),
    )
    agora = AgoraClient(
        app_id=APP_ID,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        hosts=plan,
        sleep=pauses.append,
    )
    assert agora.acquire(AcquireRequest(cname="room1", uid="1")).resource_id
    assert pauses == [1.0, 3.0]


def test_dns_failure_adds_the_other_primary_domain() -> None:
    """Name resolution failures try the alternate primary domain (step 2 of §3.1); all failing raises a transport error."""
    pauses: list[float] = []
    plan = HostPlan(
        primary="http://primary.invalid",
        dns_fallbacks=("http://alternate.invalid",),
        fallbacks=("http://primary.invalid", "http://regional.invalid"),
    )
    agora = AgoraClient(
        app_id=APP_ID,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        hosts=plan,
        sleep=pauses.append,
        timeout=Timeout(1, 1),
    )
    with pytest.raises(AgoraTransportError) as caught:
        agora.acquire(AcquireRequest(cname="room1", uid="1"))
    assert caught.value.hosts == (
        "http://primary.invalid",
        "http://primary.invalid",
        "http://alternate.invalid",
        "http://regional.invalid",
    )
    assert caught.value.outcome is Outcome.RETRY
    assert pauses == [1.0, 3.0, 6.0]


def test_region_ladder_and_base_url() -> None:
    """Regional plans follow §3.1 (cn prefers sd-rtn.com); AGORA_API_BASE_URL replaces the ladder."""
    us = HostPlan.for_region("us")
    assert us.primary == "https://api.agora.io"
    assert us.attempts(dns_failure=True) == [
        "https://api.agora.io",
        "https://api.sd-rtn.com",
        "https://api-us-west-1.agora.io",
        "https://api-us-east-1.agora.io",
    ]
    assert us.attempts(dns_failure=False) == [
        "https://api.agora.io",
        "https://api-us-west-1.agora.io",
        "https://api-us-east-1.agora.io",
    ]
    cn = HostPlan.for_region("cn")
    assert cn.primary == "https://api.sd-rtn.com" and cn.dns_fallbacks == ("https://api.agora.io",)
    assert HostPlan.single("http://127.0.0.1:8090/").primary == "http://127.0.0.1:8090"


FORK_CHECK = """
import os
from workers.agora.transport import process_session
first = process_session()
assert process_session() is first
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, b"1" if process_session() is not first else b"0")
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(read, 1).decode())
"""


def test_session_is_per_process_and_renewed_after_fork() -> None:
    """One shared requests.Session per process; a forked child gets its own (checked in a fresh process)."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_CHECK], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "1"
