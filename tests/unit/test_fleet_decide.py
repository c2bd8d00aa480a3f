"""Fleet rules in-process (fake clock, scripted Agora): admission, 406, pause and resume, maxRestarts, poll
stretching. The Redis side of admission (order, priority, slots given back) is in tests/integration/test_admission.py."""

from __future__ import annotations

from typing import Any

from tests.support.fake_agora import Driver, FakeAgora, new_recording, request_for
from workers.agora.ratelimit import MARGIN_MS
from workers.recordings.admission import admission_mark
from workers.recordings.decide import CAPACITY_BACKOFF, MAX_START_ATTEMPTS
from workers.recordings.machine import State
from workers.recordings.model import Recording, encode
from workers.recordings.polling import POLL_EVERY, POLL_EVERY_MAX, POLL_JITTER, poll_interval

S = 1000  # ms


def world(mode: str = "mix", **spec: Any) -> tuple[FakeAgora, Driver]:
    agora = FakeAgora()
    max_restarts = spec.pop("max_restarts", None)
    rec = new_recording(mode, request=request_for(mode), **spec)
    if max_restarts is not None:
        rec.max_restarts = max_restarts
    return agora, Driver(agora, rec)


def recording(driver: Driver) -> Recording:
    rec = driver.run(lambda r: r.state == State.RECORDING and bool(r.files), within_ms=300 * S)
    assert rec.state == State.RECORDING, rec
    return rec


# -- admission ---------------------------------------------------------------------------------------------


def test_a_recording_over_the_quota_waits_queued_and_starts_when_admitted() -> None:
    agora, driver = world()
    driver.queue_place = 3
    rec = driver.wait(300 * S)
    assert rec.state == State.QUEUED and not driver.calls() and not rec.admitted
    assert rec.wake_at_ms is not None  # it looks again (a freed slot also wakes it at once)
    driver.queue_place = 0
    driver.woken = True
    rec = recording(driver)
    assert rec.admitted
    assert driver.transitions[:3] == [
        ("pending", "queued"),
        ("queued", "starting"),
        ("starting", "recording"),
    ]
    assert driver.notifications == ["recording.started"]


def test_a_queued_recording_stopped_never_calls_agora() -> None:
    agora, driver = world()
    driver.queue_place = 1
    driver.wait(10 * S)
    driver.command("stop")
    done = driver.run(within_ms=60 * S)
    assert done.state == State.COMPLETED and not driver.calls()
    assert driver.notifications == ["recording.completed"]


def test_406_from_acquire_waits_for_capacity_and_never_fails() -> None:
    """Agora's quota is taken (another app, tasks it still counts): queued again, asked after a backoff, more
    times than any start budget allows, then started."""
    agora, driver = world()
    refusals = MAX_START_ATTEMPTS + 3
    agora.script("acquire", 400, 406, "vendor_over_load", times=refusals)
    rec = driver.run(lambda r: r.state == State.RECORDING, within_ms=1200 * S)
    acquires = driver.calls("acquire")
    assert [c.code for c in acquires[:refusals]] == [406] * refusals and acquires[-1].status == 200
    gaps = [b.at - a.at for a, b in zip(acquires, acquires[1:], strict=False)]
    assert gaps[0] >= CAPACITY_BACKOFF[0] * S and max(gaps) >= CAPACITY_BACKOFF[-1] * S
    assert rec.restarts == 0 and rec.capacity_waits == 0 and rec.state == State.RECORDING
    assert ("starting", "queued") in driver.transitions and ("queued", "starting") in driver.transitions
    assert driver.notifications == ["recording.started"]


# -- pause and resume ------------------------------------------------------------------------------------


def test_mix_pause_ends_the_session_and_resume_starts_another() -> None:
    agora, driver = world("mix")
    first = recording(driver)
    driver.command("pause")
    paused = driver.run(lambda r: r.state == State.PAUSED, within_ms=60 * S)
    assert not driver.live_tasks() and [c.status for c in driver.calls("stop")] == [200]
    files_before = set(paused.files)
    driver.wait(600 * S)  # nothing is asked of Agora while paused, and nothing runs
    assert not driver.live_tasks() and driver.rec.state == State.PAUSED
    assert not [c for c in driver.calls() if c.at > paused.updated_ms + 1]
    driver.command("resume")
    resumed = driver.run(
        lambda r: r.state == State.RECORDING and len(r.files) > len(files_before), within_ms=300 * S
    )
    assert len(resumed.sessions) == 2 and resumed.sessions[1].uid != first.sessions[0].uid
    assert resumed.restarts == 0 and files_before < set(resumed.files)
    driver.command("stop")
    done = driver.run()
    assert done.state == State.COMPLETED
    names = [f["fileName"] for f in done.public()["files"]]
    first_sid, second_sid = (s.sid or "" for s in done.sessions)
    # the manifest spans both sessions in order: every file of the first before every file of the second
    assert [first_sid in n for n in names] == sorted((first_sid in n for n in names), reverse=True)
    assert any(second_sid in n for n in names) and all(
        f["status"] == "uploaded" for f in done.public()["files"]
    )
    assert driver.notifications == [
        "recording.started",
        "recording.paused",
        "recording.resumed",
        "recording.completed",
    ]


def test_web_pause_holds_the_page_through_update_and_resume_releases_it() -> None:
    agora, driver = world("web")
    rec = recording(driver)
    task = agora.tasks[rec.sessions[0].sid or ""]
    driver.command("pause")
    driver.command("pause")  # idempotent
    paused = driver.run(lambda r: r.state == State.PAUSED, within_ms=60 * S)
    assert task.onhold and task.alive and len(paused.sessions) == 1
    assert [c.endpoint for c in driver.calls() if c.endpoint == "update"] == ["update"]
    driver.wait(300 * S)  # still watched while on hold
    assert driver.rec.state == State.PAUSED and driver.calls("query")[-1].at > paused.updated_ms
    driver.command("resume")
    resumed = driver.run(lambda r: r.state == State.RECORDING, within_ms=60 * S)
    assert not task.onhold and len(resumed.sessions) == 1
    assert [body for _, body in task.changes] == [
        {"webRecordingConfig": {"onhold": True}},
        {"webRecordingConfig": {"onhold": False}},
    ]
    assert driver.notifications == ["recording.started", "recording.paused", "recording.resumed"]


def test_a_paused_web_page_that_dies_restarts_on_hold() -> None:
    agora, driver = world("web")
    recording(driver)
    driver.command("pause")
    paused = driver.run(lambda r: r.state == State.PAUSED, within_ms=60 * S)
    agora.exit(paused.sessions[0].sid or "", exit_status=1)
    again = driver.run(lambda r: r.restarts == 1 and r.state == State.PAUSED, within_ms=300 * S)
    new_task = agora.tasks[again.sessions[-1].sid or ""]
    assert new_task.alive and new_task.onhold and len(driver.live_tasks()) == 1
    assert driver.notifications == ["recording.started", "recording.paused"]


def test_max_duration_still_stops_a_paused_recording() -> None:
    agora, driver = world("individual", max_duration_s=200)
    recording(driver)
    driver.command("pause")
    driver.run(lambda r: r.state == State.PAUSED, within_ms=60 * S)
    done = driver.run(within_ms=600 * S)
    assert done.state == State.COMPLETED and done.ended_ms is not None
    assert done.ended_ms - done.created_ms < 260 * S and not driver.live_tasks()


def test_pause_while_starting_leaves_no_task() -> None:
    agora, driver = world("individual")
    driver.run(lambda r: bool(r.sessions and r.sessions[0].sid), within_ms=60 * S)
    driver.command("pause")
    paused = driver.run(lambda r: r.state == State.PAUSED, within_ms=120 * S)
    assert not driver.live_tasks() and paused.state == State.PAUSED
    assert "recording.started" not in driver.notifications


# -- per-recording restart budget --------------------------------------------------------------------------


def test_max_restarts_bounds_restarts_per_recording() -> None:
    agora, driver = world(max_restarts=1)
    for expected in (1, 2):
        rec = recording(driver)
        agora.exit(rec.sessions[-1].sid or "", exit_status=1)
        rec = driver.run(lambda r, n=expected: r.restarts == n, within_ms=120 * S)
    done = driver.run(within_ms=120 * S)
    assert done.state == State.FAILED and done.restarts == 2 and "maxRestarts 1" in (done.reason or "")
    assert not driver.live_tasks()


def test_max_restarts_zero_fails_at_the_first_abnormal_end() -> None:
    agora, driver = world(max_restarts=0)
    rec = recording(driver)
    agora.exit(rec.sessions[0].sid or "", exit_status=1)
    done = driver.run(within_ms=120 * S)
    assert done.state == State.FAILED and len(driver.calls("acquire")) == 1


# -- polls for a fleet -------------------------------------------------------------------------------------


def test_poll_interval_stretches_with_the_fleet_and_says_when_capped() -> None:
    assert poll_interval(10, 10) == (POLL_EVERY, False)
    interval, capped = poll_interval(1000, 10)
    # 1,000 sessions within 70% of 10 requests per window (1 s + the margin): at most 6.7 polls per second
    window = 1 + MARGIN_MS / 1000
    assert 140 < interval < 160 and not capped and 1000 / interval <= 10 * 0.7 / window + 1e-9
    assert poll_interval(5000, 10) == (POLL_EVERY_MAX, True)
    assert poll_interval(5000, 0) == (POLL_EVERY, False)  # no limit


def test_a_stretched_poll_interval_is_kept_and_spread() -> None:
    agora, driver = world()
    recording(driver)
    driver.poll_every = 200.0  # what the runner passes for a fleet of about 1,250 recordings
    driver.wait(300 * S)
    queries_before = len(driver.calls("query"))
    driver.wait(3600 * S)
    queries = [c.at for c in driver.calls("query")[queries_before:]]
    gaps = [b - a for a, b in zip(queries, queries[1:], strict=False)]
    assert max(gaps) <= 200 * S and min(gaps) >= 200 * (1 - POLL_JITTER) * S - 300
    assert len(set(gaps)) > 3 and 3600 / 200 <= len(queries) <= 3600 / 180 + 1


# -- found in review -----------------------------------------------------------------------------------------


def test_a_resume_refused_406_can_still_be_stopped_and_gives_its_slot_back() -> None:
    agora, driver = world("mix")
    recording(driver)
    driver.command("pause")
    driver.run(lambda r: r.state == State.PAUSED, within_ms=60 * S)
    agora.script("acquire", 400, 406, "vendor_over_load", times=3)
    driver.command("resume")
    waiting = driver.run(lambda r: r.state == State.QUEUED, within_ms=60 * S)
    assert admission_mark(waiting) == 2  # waits for Agora's capacity: the queue holds meanwhile
    driver.command("stop")
    done = driver.run(within_ms=120 * S)
    assert done.state == State.COMPLETED and admission_mark(done) == 1
    assert all(f.status == "uploaded" for f in done.files.values())


def test_a_pause_during_a_406_wait_does_not_hold_the_queue() -> None:
    agora, driver = world("mix")
    agora.script("acquire", 400, 406, "vendor_over_load", times=5)
    waiting = driver.run(lambda r: r.state == State.QUEUED and r.capacity_waits > 0, within_ms=60 * S)
    assert admission_mark(waiting) == 2
    driver.command("pause")
    paused = driver.run(lambda r: r.state == State.PAUSED, within_ms=60 * S)
    assert admission_mark(paused) == 0 and paused.capacity_waits == 0


def test_a_web_page_started_on_hold_stays_so_until_paused_or_resumed() -> None:
    agora, driver = world("web")
    rec = driver.rec
    rec.request["extensionServiceConfig"]["extensionServices"][0]["serviceParam"]["onhold"] = True
    driver.stored = encode(rec)
    started = driver.run(lambda r: r.state == State.RECORDING, within_ms=60 * S)
    task = agora.tasks[started.sessions[0].sid or ""]
    driver.wait(300 * S)
    assert task.onhold and not task.changes  # not released behind the app's back
    driver.command("update", {"webRecordingConfig": {"onhold": False}})
    driver.wait(60 * S)
    assert not task.onhold and len(task.changes) == 1  # the app's own update is not reverted


def test_paused_before_it_ever_recorded_its_first_session_is_announced_as_started() -> None:
    agora, driver = world("individual")
    driver.command("pause")
    driver.run(lambda r: r.state == State.PAUSED, within_ms=60 * S)
    assert not driver.calls("acquire")
    driver.command("resume")
    driver.run(lambda r: r.state == State.RECORDING, within_ms=120 * S)
    assert driver.notifications == ["recording.paused", "recording.started"]
