"""The emulator as a stand-in for Agora: task lifecycle, channel model, faults, and the NCS sender."""

from __future__ import annotations

import base64
import logging
import socket
import struct
import threading
import time

import pytest
import requests

from agora_emulator import FaultError, parse_cli_fault
from tests.support.emulated import (
    APP_ID,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    NCS_SECRET,
    Sink,
    advance,
    begin,
    control,
    make_client,
    start_body,
    start_emulator,
)
from tests.support.service import NCS_SECRET as RECEIVER_SECRET
from tests.support.wait import wait_until
from webhook_service.signature import verify_signature
from workers.agora import (
    AcquireClientRequest,
    AcquireRequest,
    AgoraApiError,
    AgoraClient,
    AgoraTransportError,
    Outcome,
    SnapshotConfig,
    StopRequest,
    StreamSubscribe,
    Timeout,
    UidLists,
    UpdateClientRequest,
    UpdateRequest,
)


def task(base: str, sid: str) -> dict:
    return control(base, "GET", f"tasks/{sid}")


def notifications(base: str, sid: str) -> list[dict]:
    """Every callback the emulator sent (or lost) for a session, with its state and attempts."""
    return control(base, "GET", f"notifications?sid={sid}")["notifications"]


def settled(base: str, sid: str) -> bool:
    """No callback of the session waits to be (re)sent: each is delivered, lost or given up."""
    return all(n["state"] != "pending" for n in notifications(base, sid))


def stop(agora: AgoraClient, resource_id: str, sid: str, mode: str = "mix", cname: str = "room1") -> None:
    agora.stop(resource_id, sid, mode, StopRequest(cname=cname, uid="527841"))  # type: ignore[arg-type]


def test_callbacks_verify_with_the_receivers_code(agora: AgoraClient, base: str, sink: Sink) -> None:
    """Every callback carries both signatures over the raw body; the receiver's own verifier accepts them."""
    resource_id, sid = begin(agora, "mix")
    wait_until(lambda: task(base, sid)["status"] == 5)
    stop(agora, resource_id, sid)
    wait_until(lambda: 11 in sink.event_types(sid))
    assert sink.received
    for headers, body in sink.received:
        assert verify_signature(body, headers["Agora-Signature-V2"], None, [NCS_SECRET.encode()]) == "v2"
        assert verify_signature(body, None, headers["Agora-Signature"], [NCS_SECRET.encode()]) == "v1"
        assert headers["Content-Type"] == "application/json"
    with pytest.raises(Exception, match="match"):
        headers, body = sink.received[0]
        verify_signature(body, headers["Agora-Signature-V2"], None, [RECEIVER_SECRET.encode()])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("individual", [30, 40, 43, 44, 42, 4, 41, 33, 31, 11]),
        ("mix", [30, 40, 43, 44, 42, 4, 41, 33, 31, 11]),
        ("web", [30, 70, 42, 4, 71, 33, 31, 11]),
    ],
)
def test_lifecycle_callbacks_in_order(
    agora: AgoraClient, base: str, sink: Sink, mode: str, expected: list[int]
) -> None:
    """A normal recording sends Agora's events in a realistic order with increasing sequence numbers."""
    resource_id, sid = begin(agora, mode)  # type: ignore[arg-type]
    wait_until(lambda: task(base, sid)["status"] == 5)
    stop(agora, resource_id, sid, mode)
    wait_until(lambda: set(expected) <= set(sink.event_types(sid)))
    sent = lambda: len(control(base, "GET", f"notifications?sid={sid}")["notifications"])  # noqa: E731
    wait_until(lambda: len(sink.envelopes(sid)) == sent())  # every callback sent has arrived
    envelopes = sorted(sink.envelopes(sid), key=lambda e: e["payload"]["sequence"])
    seen = []
    for event_type in (e["eventType"] for e in envelopes):
        if event_type not in seen:
            seen.append(event_type)
    assert seen == expected
    assert [e["payload"]["sequence"] for e in envelopes] == list(range(len(envelopes)))
    exit_event = next(e for e in envelopes if e["eventType"] == 11)
    assert exit_event["payload"]["details"] == {"msgName": "session_exit", "exitStatus": 0}
    uploaded = next(e for e in envelopes if e["eventType"] == 31)
    assert uploaded["payload"]["serviceType"] == 2 and uploaded["payload"]["details"]["fileList"]


def test_idle_channel_exits_after_max_idle_time(agora: AgoraClient, base: str, sink: Sink) -> None:
    """Everyone leaves: after maxIdleTime the task leaves (41 leaveCode 4), uploads and exits; stop then says 49."""
    resource_id, sid = begin(agora, "mix", max_idle_time=10)
    wait_until(lambda: task(base, sid)["status"] == 5)
    control(base, "PUT", "channels/room1", {"users": []})
    wait_until(lambda: {41, 11} <= set(sink.event_types(sid)))
    leave = next(e for e in sink.envelopes(sid) if e["eventType"] == 41)
    assert leave["payload"]["details"]["leaveCode"] == 4
    assert task(base, sid)["exitReason"] == "idle"
    with pytest.raises(AgoraApiError) as caught:
        stop(agora, resource_id, sid)
    assert caught.value.outcome is Outcome.ALREADY_STOPPED


def test_live_channel_with_only_audience_is_idle_and_records_nothing(
    agora: AgoraClient, base: str, sink: Sink
) -> None:
    """In a live channel only hosts count; audience members alone make the task idle, and nothing is recorded."""
    control(
        base, "PUT", "channels/talk", {"users": [{"uid": "7", "host": False, "audio": False, "video": False}]}
    )
    _, sid = begin(agora, "mix", cname="talk", channel_type=1, max_idle_time=5)
    wait_until(lambda: 11 in sink.event_types(sid))
    assert 31 not in sink.event_types(sid) and task(base, sid)["recorded"] is False


def test_subscriptions_decide_what_is_recorded(agora: AgoraClient, base: str) -> None:
    """Individual mode records only subscribed uids; an update changes the subscription for later files."""
    control(base, "PUT", "channels/room1", {"users": [{"uid": "1001"}, {"uid": "1002"}, {"uid": "1003"}]})
    resource_id, sid = begin(
        agora, "individual", subscribe_audio_uids=["1001"], subscribe_video_uids=["1001"]
    )
    wait_until(lambda: task(base, sid)["status"] == 5)
    names = [f["fileName"] for f in task(base, sid)["files"]]
    assert names and all("__uid_s_1001__" in name for name in names)
    lists = UidLists(subscribe_audio_uids=["1001", "1003"])
    change = UpdateClientRequest(stream_subscribe=StreamSubscribe(audio_uid_list=lists))
    agora.update(
        resource_id, sid, "individual", UpdateRequest(cname="room1", uid="527841", client_request=change)
    )
    wait_until(
        lambda: any("__uid_s_1003__uid_e_audio" in f["fileName"] for f in task(base, sid)["files"]),
    )
    assert not any(
        "1002" in f["fileName"] or "__uid_s_1003__uid_e_video" in f["fileName"]
        for f in task(base, sid)["files"]
    )


def test_start_accepted_then_dying(agora: AgoraClient, base: str, sink: Sink) -> None:
    """The die fault: start succeeds, then query answers 404 and no exit callback ever comes."""
    control(base, "POST", "faults", {"kind": "die", "after": 3, "times": 1})
    resource_id, sid = begin(agora, "mix")

    def vanished() -> bool:
        try:
            agora.query(resource_id, sid, "mix")
        except AgoraApiError as exc:
            return exc.outcome is Outcome.NOT_FOUND
        return False

    wait_until(vanished)
    wait_until(lambda: task(base, sid)["state"] == "gone")  # died: none of its timers acts any more
    wait_until(lambda: settled(base, sid), what="every callback of the session delivered")
    assert 11 not in sink.event_types(sid) and 11 not in [n["eventType"] for n in notifications(base, sid)]
    _, second = begin(agora, "mix", uid="527842")  # times=1: the next session is healthy
    wait_until(lambda: task(base, second)["status"] == 5)


def test_ha_failover(agora: AgoraClient, base: str, sink: Sink) -> None:
    """Event 12 with newUid; 404s during the migration window; then the new uid and bak0_ files."""
    control(base, "POST", "faults", {"kind": "failover", "after": 20, "window": 30})
    resource_id, sid = begin(agora, "mix")
    wait_until(lambda: 12 in sink.event_types(sid))
    new_uid = str(
        next(e for e in sink.envelopes(sid) if e["eventType"] == 12)["payload"]["details"]["newUid"]
    )
    with pytest.raises(AgoraApiError) as caught:
        agora.query(resource_id, sid, "mix")
    assert caught.value.status == 404
    wait_until(
        lambda: task(base, sid)["state"] == "running" and task(base, sid)["uid"] == new_uid,
    )
    wait_until(
        lambda: any(f["fileName"].startswith(f"tests/bak0_{sid}") for f in task(base, sid)["files"]),
    )
    report = agora.query(resource_id, sid, "mix")
    assert report.running and report.uid == "527841"  # answers keep the uid the session was started with
    later = [e for e in sink.envelopes(sid) if e["eventType"] == 40]
    assert {e["payload"]["uid"] for e in later} == {"527841", new_uid}
    stop(agora, resource_id, sid)


def test_backed_up_upload(agora: AgoraClient, base: str, sink: Sink) -> None:
    """The backup fault: stop reports backuped and the callback is 32 backuped with the files."""
    control(base, "POST", "faults", {"kind": "backup", "cname": "room1"})
    resource_id, sid = begin(agora, "mix")
    wait_until(lambda: task(base, sid)["status"] == 5)
    assert (
        agora.stop(resource_id, sid, "mix", StopRequest(cname="room1", uid="527841")).uploading_status
        == "backuped"
    )
    wait_until(lambda: {32, 11} <= set(sink.event_types(sid)))
    assert 32 in sink.event_types(sid) and 31 not in sink.event_types(sid)


def test_abnormal_exit(agora: AgoraClient, base: str, sink: Sink) -> None:
    """A fatal error event, then session exit with exitStatus 1; files recorded so far are uploaded."""
    control(base, "POST", "faults", {"kind": "abnormal_exit", "after": 25})
    _, sid = begin(agora, "mix")
    wait_until(lambda: {1, 11, 31} <= set(sink.event_types(sid)))
    envelopes = {e["eventType"]: e for e in sink.envelopes(sid)}
    assert envelopes[1]["payload"]["details"]["errorLevel"] == 5
    assert envelopes[11]["payload"]["details"]["exitStatus"] == 1
    assert 31 in envelopes


def test_web_capability_limit(agora: AgoraClient, base: str, sink: Sink) -> None:
    """Web mode: event 72 with limitType, then 71 with code 2 capability_limit, then exit."""
    _, sid = begin(agora, "web")
    control(
        base,
        "POST",
        f"tasks/{sid}/faults",
        {"kind": "capability_limit", "after": 12, "limitType": "resolution"},
    )
    wait_until(lambda: {72, 71, 11} <= set(sink.event_types(sid)))
    envelopes = {e["eventType"]: e for e in sink.envelopes(sid)}
    assert envelopes[72]["payload"]["details"]["limitType"] == "resolution"
    assert envelopes[71]["payload"]["details"]["code"] == 2


def test_web_max_recording_hour(sink: Sink) -> None:
    """A web recording stops by itself at maxRecordingHour with 71 code 1."""
    emulator, url = start_emulator(sink.url, time_scale=0.0002)  # 2 emulated hours = 1.4 real s
    try:
        _, sid = begin(make_client(url), "web")
        wait_until(lambda: {71, 11} <= set(sink.event_types(sid)))
        stopped = next(e for e in sink.envelopes(sid) if e["eventType"] == 71)
        assert (stopped["payload"]["details"]["code"], stopped["payload"]["details"]["message"]) == (
            1,
            "max_recording_hour",
        )
    finally:
        emulator.close()


def test_redelivery_until_200_at_most_three_resends(agora: AgoraClient, base: str, sink: Sink) -> None:
    """A receiver answering 503 gets each callback 4 times in all, with a new notifyMs each time and the same noticeId."""
    sink.answer = lambda _body: 503
    _, sid = begin(agora, "mix")
    first = wait_until(
        lambda: next(
            (n for n in notifications(base, sid) if n["eventType"] == 30 and n["state"] != "pending"), None
        )
    )  # given up: no copy comes after
    copies = [e for e in sink.envelopes(sid) if e["eventType"] == 30]
    assert len(copies) == 4 and len({e["noticeId"] for e in copies}) == 1
    assert len({e["notifyMs"] for e in copies}) == 4
    assert first["state"] == "failed" and [a["status"] for a in first["attempts"]] == [503] * 4


def test_redelivery_after_a_timeout(sink: Sink) -> None:
    """A receiver slower than the NCS timeout gets the callback again; once it answers in time, no more copies."""
    emulator, url = start_emulator(sink.url, ncs_timeout=0.3)
    try:
        sink.delay = 0.5
        _, sid = begin(make_client(url), "mix")
        wait_until(lambda: sink.event_types(sid).count(30) >= 2)
        sink.delay = 0
        # delivered once a copy is answered in time (or given up after the last resend): no copy after that
        wait_until(
            lambda: [n["state"] for n in notifications(url, sid) if n["eventType"] == 30] != ["pending"]
        )
        assert 2 <= sink.event_types(sid).count(30) <= 4
        attempts = next(n for n in notifications(url, sid) if n["eventType"] == 30)["attempts"]
        assert attempts[0]["error"] == "ReadTimeout"
    finally:
        emulator.close()


def test_ncs_loss_duplicates_and_reordering(agora: AgoraClient, base: str, sink: Sink) -> None:
    """The ncs fault loses, duplicates and reorders callbacks, and the control API says which."""
    control(base, "POST", "faults", {"kind": "ncs", "loss": 0.2, "duplicate": 0.5, "reorder": 20})
    resource_id, sid = begin(agora, "individual")
    wait_until(lambda: task(base, sid)["status"] == 5)
    stop(agora, resource_id, sid, "individual")
    # the session's last callback (exit) sent, and every callback delivered, lost or given up
    wait_until(lambda: 11 in [n["eventType"] for n in notifications(base, sid)] and settled(base, sid))
    notes = notifications(base, sid)
    lost = {n["noticeId"] for n in notes if n["state"] == "lost"}
    duplicated = {n["noticeId"] for n in notes if n["duplicate"]}
    received = [e["noticeId"] for e in sink.envelopes(sid)]
    assert lost and duplicated
    assert not lost & set(received)
    assert any(received.count(notice) == 2 for notice in duplicated)
    sequences = [e["payload"]["sequence"] for e in sink.envelopes(sid)]
    assert sequences != sorted(sequences)


def test_same_seed_same_ids(sink: Sink) -> None:
    """A seed makes resource ids, sids and notice ids repeatable."""
    runs = []
    for _ in range(2):
        emulator, url = start_emulator(None, seed=42)
        try:
            client = make_client(url)
            runs.append(begin(client, "mix")[1])
        finally:
            emulator.close()
    assert runs[0] == runs[1]


def test_control_api_rejects_bad_fault_specs(base: str) -> None:
    """Unknown fault kinds and bad values are a 400 with a reason; the CLI form parses the same specs."""
    answer = requests.post(f"{base}/_emulator/faults", json={"kind": "meteor"}, timeout=5)
    assert answer.status_code == 400 and "kind" in answer.json()["error"]
    answer = requests.post(
        f"{base}/_emulator/faults", json={"kind": "answer", "endpoint": "start", "status": "x"}, timeout=5
    )
    assert answer.status_code == 400
    fault = parse_cli_fault("answer:endpoint=start,status=500,code=502,times=2")
    assert (fault.kind, fault.params, fault.times) == (
        "answer",
        {"endpoint": "start", "status": 500, "code": 502},
        2,
    )
    with pytest.raises(FaultError):
        parse_cli_fault("ncs:loss")


def test_individual_snapshots_send_event_45(agora: AgoraClient, base: str, sink: Sink) -> None:
    """With snapshotConfig, each video uid's screenshots are announced by event 45 as "<prefix>/<file>.jpg"."""
    control(
        base,
        "PUT",
        "channels/room1",
        {"users": [{"uid": "1001", "audio": True, "video": True}, {"uid": "1002", "video": False}]},
    )
    body = start_body("individual")
    body.client_request.snapshot_config = SnapshotConfig(capture_interval=5, file_type=["jpg"])
    resource = agora.acquire(AcquireRequest(cname="room1", uid="527841")).resource_id
    assert resource
    sid = agora.start(resource, "individual", body).sid
    wait_until(lambda: sink.event_types(sid).count(45) >= 2)
    names = [e["payload"]["details"]["fileName"] for e in sink.envelopes(sid) if e["eventType"] == 45]
    assert all(
        n.startswith(f"tests/{sid}_room1__uid_s_1001__uid_e_video_") and n.endswith(".jpg") for n in names
    )


def impatient(base: str) -> AgoraClient:
    """The project's client with a read timeout far shorter than the slow faults below."""
    return make_client(base, timeout=Timeout(connect=1, read=0.5))


def test_slow_start_is_served_though_the_client_times_out(base: str, sink: Sink) -> None:
    """A slow start creates the task (callbacks flow) while the client times out; the lock is free meanwhile,
    and a retried start on the same resource ID answers 201/7 at once, as Agora does."""
    # held back far longer than the bounds below, so that a busy machine does not blur them (the answer is
    # released when the emulator closes)
    control(base, "POST", "faults", {"kind": "slow", "endpoint": "start", "delay": 30, "times": 1})
    client = impatient(base)
    resource_id = client.acquire(
        AcquireRequest(cname="room1", uid="527841", client_request=AcquireClientRequest(scene=0)), mode="mix"
    ).resource_id
    assert resource_id
    sent = time.monotonic()
    with pytest.raises(AgoraTransportError):
        client.start(resource_id, "mix", start_body("mix"))
    assert time.monotonic() - sent < 10  # the client's read timeout, not the held-back answer
    state = control(base, "GET", "state")
    assert state["liveTasks"] == 1
    (summary,) = state["tasks"]
    assert summary["alive"] is True and summary["resourceId"] == resource_id
    sid = summary["sid"]
    wait_until(lambda: {30, 40} <= set(sink.event_types(sid)))
    (logged,) = control(base, "GET", "requests?endpoint=start")["requests"]
    assert (logged["status"], logged["answer"]["sid"], logged["slowSeconds"]) == (200, sid, 30)
    with pytest.raises(AgoraApiError) as caught:
        client.start(resource_id, "mix", start_body("mix"))  # the slow answer is still held back
    assert time.monotonic() - sent < 20  # not queued behind the held-back answer
    assert (caught.value.status, caught.value.code, caught.value.outcome) == (201, 7, Outcome.ALREADY_RUNNING)
    assert control(base, "GET", "state")["liveTasks"] == 1


def test_slow_stop_stops_the_task_though_the_client_times_out(
    agora: AgoraClient, base: str, sink: Sink
) -> None:
    """A task's slow stop: the client times out, yet the task stopped; the retried stop says 49 at once."""
    resource_id, sid = begin(agora, "mix")
    wait_until(lambda: task(base, sid)["status"] == 5)
    control(base, "POST", f"tasks/{sid}/faults", {"kind": "slow", "endpoint": "stop", "delay": 2, "times": 1})
    client = impatient(base)
    with pytest.raises(AgoraTransportError):
        stop(client, resource_id, sid)
    assert task(base, sid)["alive"] is False and control(base, "GET", "state")["liveTasks"] == 0
    wait_until(lambda: {41, 31, 11} <= set(sink.event_types(sid)))
    with pytest.raises(AgoraApiError) as caught:
        stop(client, resource_id, sid)
    assert caught.value.outcome is Outcome.ALREADY_STOPPED and caught.value.code == 49
    assert [r.get("slowSeconds") for r in control(base, "GET", "requests?endpoint=stop")["requests"]] == [
        2,
        None,
    ]


def test_slow_fault_times_and_what_it_does_not_slow(base: str) -> None:
    """``times`` is honoured (the next call is fast); calls the gateway refuses are answered at once and
    leave the fault unused; bad slow specs are refused."""
    control(base, "POST", "faults", {"kind": "slow", "endpoint": "*", "delay": 10, "times": 1})
    url = f"{base}/v1/apps/{APP_ID}/cloud_recording/acquire"
    body = {"cname": "room1", "uid": "527841", "clientRequest": {}}
    sent = time.monotonic()
    refused = requests.post(url, json=body, auth=(CUSTOMER_ID, "wrong"), timeout=5)
    assert refused.status_code == 401 and time.monotonic() - sent < 5
    with pytest.raises(requests.ReadTimeout):
        requests.post(url, json=body, auth=(CUSTOMER_ID, CUSTOMER_SECRET), timeout=0.5)
    sent = time.monotonic()
    fast = requests.post(url, json=body, auth=(CUSTOMER_ID, CUSTOMER_SECRET), timeout=5)
    assert fast.status_code == 200 and fast.json()["resourceId"] and time.monotonic() - sent < 5
    logged = control(base, "GET", "requests")["requests"]
    assert [(r["status"], r.get("slowSeconds")) for r in logged] == [(401, None), (200, 10), (200, None)]
    assert control(base, "GET", "faults")["faults"][0]["used"] == 1
    for bad in ({"endpoint": "nowhere"}, {"delay": "soon"}, {"delay": -1}):
        answer = requests.post(f"{base}/_emulator/faults", json={"kind": "slow", **bad}, timeout=5)
        assert answer.status_code == 400, bad
    fault = parse_cli_fault("slow:endpoint=start,delay=3,times=1")
    assert (fault.kind, fault.params, fault.times) == ("slow", {"endpoint": "start", "delay": 3}, 1)


def test_slow_answer_to_a_vanished_client_breaks_nothing(
    base: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The caller resets the connection while its answer is held back: no traceback, the server goes on."""
    control(base, "POST", "faults", {"kind": "slow", "endpoint": "acquire", "delay": 0.5, "times": 1})
    payload = b'{"cname":"room1","uid":"527841","clientRequest":{}}'
    credentials = base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
    head = (
        f"POST /v1/apps/{APP_ID}/cloud_recording/acquire HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Basic {credentials}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    host, port = base.removeprefix("http://").split(":")
    before = set(threading.enumerate())
    with caplog.at_level(logging.DEBUG):
        connection = socket.create_connection((host, int(port)), timeout=2)
        connection.sendall(head.encode() + payload)
        wait_until(lambda: control(base, "GET", "requests")["requests"])
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()  # RST: writing the answer fails
        wait_until(
            lambda: not [t for t in set(threading.enumerate()) - before if "process_request" in t.name],
            what="the emulator's threads serving this test's requests to end (the held answer written)",
        )
        answer = requests.post(
            f"{base}/v1/apps/{APP_ID}/cloud_recording/acquire",
            data=payload,
            headers={"Content-Type": "application/json"},
            auth=(CUSTOMER_ID, CUSTOMER_SECRET),
            timeout=2,
        )
    assert answer.status_code == 200
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- concurrency quota (docs/agora.md §2 Limits: 50 recorders, 200 web recorders per App ID, then 400/406) ----

OVER_LOAD = {"code": 406, "reason": "vendor_over_load"}


def raw_acquire(base: str, cname: str, scene: int = 0) -> requests.Response:
    """An acquire as it goes over the wire (status and body not parsed by the project's client)."""
    return requests.post(
        f"{base}/v1/apps/{APP_ID}/cloud_recording/acquire",
        json={"cname": cname, "uid": "527841", "clientRequest": {"scene": scene}},
        auth=(CUSTOMER_ID, CUSTOMER_SECRET),
        timeout=5,
    )


def quota(base: str) -> dict:
    return control(base, "GET", "quota")


def test_quota_refuses_acquire_over_the_limit_and_a_stop_frees_a_place(sink: Sink) -> None:
    """max_recorders=2: two recordings run, the third acquire is 400 {"code": 406, "reason": "vendor_over_load"},
    counted as refused; stopping one frees its place at once."""
    emulator, base = start_emulator(sink.url, max_recorders=2)
    try:
        agora = make_client(base)
        first = begin(agora, "mix", cname="q1")
        begin(agora, "individual", cname="q2")
        refused = raw_acquire(base, "q3")
        assert (refused.status_code, refused.json()) == (400, OVER_LOAD)
        with pytest.raises(AgoraApiError) as caught:
            agora.acquire(AcquireRequest(cname="q3", uid="527841"))
        error = caught.value  # parsed like any Agora error (its outcome is the client's business)
        assert (error.status, error.code, error.reason) == (400, 406, "vendor_over_load")
        expected = {
            "maxRecorders": 2,
            "maxWebRecorders": 200,
            "recorders": 2,
            "webRecorders": 0,
            "refused": 2,
        }
        assert quota(base) == expected
        assert control(base, "GET", "state")["quota"] == expected
        wait_until(lambda: task(base, first[1])["status"] == 5)
        stop(agora, *first, "mix", "q1")
        assert quota(base)["recorders"] == 1
        begin(agora, "mix", cname="q3")  # at once: no wait for the exit callbacks or the linger
        assert raw_acquire(base, "q4").json() == OVER_LOAD
        assert quota(base) == dict(expected, refused=3)
    finally:
        emulator.close()


def test_quota_frees_the_place_of_a_task_that_ends_by_itself(sink: Sink) -> None:
    """A task that dies (die fault) or exits on its own (idle) no longer counts."""
    emulator, base = start_emulator(sink.url, max_recorders=1)
    try:
        agora = make_client(base)
        control(base, "POST", "faults", {"kind": "die", "after": 3, "times": 1})
        _, sid = begin(agora, "mix", cname="q1")
        assert raw_acquire(base, "q2").status_code == 400
        wait_until(lambda: task(base, sid)["state"] == "gone")
        assert quota(base)["recorders"] == 0
        control(base, "PUT", "channels/q2", {"users": []})
        _, sid = begin(agora, "mix", cname="q2", max_idle_time=5)
        assert raw_acquire(base, "q3").status_code == 400
        wait_until(lambda: task(base, sid)["exitReason"] == "idle")
        assert raw_acquire(base, "q3").status_code == 200
    finally:
        emulator.close()


def test_quota_counts_acquired_resources_until_started_or_expired(sink: Sink) -> None:
    """An acquired, unstarted resource holds a place for its 5 minutes of validity; started, it counts once."""
    emulator, base = start_emulator(sink.url, max_recorders=2, time_scale=1.0)  # nothing expires by itself
    try:
        agora = make_client(base)
        resource_id = agora.acquire(AcquireRequest(cname="q1", uid="527841")).resource_id
        assert resource_id and quota(base)["recorders"] == 1
        assert raw_acquire(base, "q2").status_code == 200
        assert raw_acquire(base, "q3").json() == OVER_LOAD  # two reserved, none started
        assert agora.start(resource_id, "mix", start_body("mix", "q1")).sid
        assert quota(base)["recorders"] == 2  # the started resource is a task now, not also a reservation
        advance(emulator, 301)  # q2's reservation expires
        assert raw_acquire(base, "q3").status_code == 200
        assert quota(base)["recorders"] == 2 and quota(base)["refused"] == 1
    finally:
        emulator.close()


def test_quota_web_recorders_have_their_own_limit(sink: Sink) -> None:
    """scene 1 (web page recording) counts against maxWebRecorders only, and the other classes not against it."""
    emulator, base = start_emulator(sink.url, max_recorders=1, max_web_recorders=2)
    try:
        agora = make_client(base)
        begin(agora, "mix", cname="q1")
        assert raw_acquire(base, "q2").json() == OVER_LOAD
        begin(agora, "web", cname="w1")
        begin(agora, "web", cname="w2")
        assert raw_acquire(base, "w3", scene=1).json() == OVER_LOAD
        assert raw_acquire(base, "q3", scene=2).json() == OVER_LOAD  # scene 2 is a recorder, not web
        assert quota(base) == {
            "maxRecorders": 1,
            "maxWebRecorders": 2,
            "recorders": 1,
            "webRecorders": 2,
            "refused": 3,
        }
    finally:
        emulator.close()


def test_quota_default_limit_is_50_and_changes_at_run_time() -> None:
    """Default config: the 51st recorder is refused. PUT /_emulator/quota changes a limit at once (kept over a
    reset); 0 means no limit; bad values are refused with 400. (Real time: no reservation expires meanwhile.)"""
    emulator, base = start_emulator(time_scale=1.0)
    try:
        _default_limit_and_changes(base)
    finally:
        emulator.close()


def _default_limit_and_changes(base: str) -> None:
    for n in range(50):
        assert raw_acquire(base, f"q{n}").status_code == 200, n
    assert raw_acquire(base, "q50").json() == OVER_LOAD
    assert raw_acquire(base, "w0", scene=1).status_code == 200
    assert control(base, "PUT", "quota", {"maxRecorders": 0}) == {
        "maxRecorders": 0,
        "maxWebRecorders": 200,
        "recorders": 50,
        "webRecorders": 1,
        "refused": 1,
    }
    for n in range(50, 60):
        assert raw_acquire(base, f"q{n}").status_code == 200, n
    assert control(base, "PUT", "quota", {"maxRecorders": 61, "maxWebRecorders": 1})["recorders"] == 60
    assert raw_acquire(base, "w1", scene=1).json() == OVER_LOAD
    assert raw_acquire(base, "q60").status_code == 200
    assert raw_acquire(base, "q61").json() == OVER_LOAD
    control(base, "POST", "reset")
    assert quota(base) == {
        "maxRecorders": 61,
        "maxWebRecorders": 1,
        "recorders": 0,
        "webRecorders": 0,
        "refused": 0,
    }
    for bad in ({}, {"maxRecorders": -1}, {"maxRecorders": "5"}, {"maxRecorders": True}, {"max": 5}, [5]):
        answer = requests.put(f"{base}/_emulator/quota", json=bad, timeout=5)
        assert answer.status_code == 400 and answer.json()["error"], bad
    assert quota(base)["maxRecorders"] == 61
