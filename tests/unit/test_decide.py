"""The orchestration's decisions in-process: a fake clock and a scripted Agora (tests/support/fake_agora.py).

One twin for every scenario of tests/e2e/test_recordings.py, and the rules about ambiguous starts, strays,
settling and wake-ups. Each runs in milliseconds.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fake_agora import START_MS, Driver, FakeAgora, new_recording, request_for
from workers.agora import AgoraApiError
from workers.recordings.decide import (
    EARLY_MS,
    MISSING_WINDOW,
    POLL_EVERY,
    POLL_JITTER,
    RATE_LIMITED_BACKOFF,
    SETTLE,
    SID_WAIT_LIMIT,
    START_BACKOFF,
    Evidence,
    Step,
)
from workers.recordings.machine import State
from workers.recordings.model import Recording

S = 1000  # ms


def world(mode: str = "mix", *, auto_deliver: bool = True, **spec: Any) -> tuple[FakeAgora, Driver]:
    request = spec.pop("request", None)
    agora = FakeAgora(auto_deliver=auto_deliver)
    return agora, Driver(agora, new_recording(mode, request=request, **spec))


def recording(driver: Driver, files: bool = True) -> Recording:
    """Run until the recording is confirmed (and has files)."""
    rec = driver.run(lambda r: r.state == State.RECORDING and (bool(r.files) or not files), within_ms=300 * S)
    assert rec.state == State.RECORDING, rec
    return rec


def outcomes(rec: Recording) -> list[str | None]:
    return [s.outcome.value if s.outcome else None for s in rec.sessions]


def assert_one_session_per_task(driver: Driver) -> None:
    """Every task the recording created is known to exactly one session, or is dead."""
    rec = driver.rec
    for task in driver.agora.tasks.values():
        if task.foreign:
            continue
        holders = [s for s in rec.sessions if s.sid == task.sid]
        assert len(holders) <= 1, (task.sid, rec.sessions)
        assert holders or not task.alive, f"task {task.sid} runs and no session knows it"


# -- twins of the end-to-end scenarios ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "cdn", "suffixes"),
    [
        ("individual", False, ["__uid_e_audio.m3u8", "__uid_e_video.m3u8"]),
        ("mix", False, [".m3u8", "_0.mp4"]),
        ("web", False, [".m3u8", "_0.mp4"]),
        ("web", True, [".m3u8"]),
    ],
    ids=["individual", "mix", "web", "web-cdn"],
)
def test_happy_path(mode: str, cdn: bool, suffixes: list[str]) -> None:
    """pending → recording (confirmed by query) → stop → completed, every file uploaded, two notifications."""
    agora, driver = world(mode, request=request_for(mode, cdn=cdn, mp4=not cdn))
    rec = recording(driver)
    session = rec.sessions[0]
    assert session.outcome == "running" and session.confirmed_ms is not None
    assert [c.endpoint for c in driver.calls()][:3] == ["acquire", "start", "query"]
    assert driver.calls("query")[0].at - driver.calls("start")[0].at == 5 * S  # confirm 5 s after start
    driver.command("stop")
    done = driver.run()
    assert done.state == State.COMPLETED and done.desired == "stopped"
    assert done.files and all(f.status == "uploaded" for f in done.files.values())
    for suffix in suffixes:
        assert any(name.endswith(suffix) for name in done.files), (suffix, list(done.files))
    assert agora.tasks[session.sid or ""].exit_reason == "stop"
    assert driver.transitions == [
        ("pending", "starting"),
        ("starting", "recording"),
        ("recording", "stopping"),
        ("stopping", "completed"),
    ]
    assert driver.notifications == ["recording.started", "recording.completed"]
    assert not driver.live_tasks()


@pytest.mark.parametrize("failures", [2, 3])
def test_start_5xx_is_retried_with_backoff_3_6_9_then_succeeds(failures: int) -> None:
    """500s on start are retried with the same resourceId after 3, 6 (and 9) s; then the start succeeds."""
    agora, driver = world()
    agora.script("start", 500, 500, times=failures)
    rec = recording(driver, files=False)
    starts = driver.calls("start")
    assert [s.status for s in starts] == [500] * failures + [200]
    gaps = [b.at - a.at for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps == [int(s * S) for s in START_BACKOFF[:failures]]
    assert {s.resource_id for s in starts} == {rec.sessions[0].resource_id} and len(rec.sessions) == 1
    assert rec.sessions[0].outcome == "running" and len(driver.calls("acquire")) == 1


def test_start_400_is_fatal_with_agoras_reason() -> None:
    """A 400 from the first start fails the recording with Agora's reason; no task runs."""
    agora, driver = world()
    agora.script("start", 400, 2, "Start: invalid token")
    done = driver.run()
    assert done.state == State.FAILED and "Start: invalid token" in (done.reason or "")
    assert done.last_error and (done.last_error["status"], done.last_error["code"]) == (400, 2)
    assert driver.notifications == ["recording.failed"]
    assert len(driver.calls("start")) == 1 and not driver.live_tasks()


def test_session_that_dies_is_restarted_with_a_new_uid_after_the_ha_window() -> None:
    """query 404 beyond the 90 s window: the session died; a new session with another uid starts."""
    agora, driver = world()
    first = recording(driver).sessions[0]
    agora.die(first.sid or "")
    died_at = agora.now
    rec = driver.run(lambda r: r.restarts == 1 and r.state == State.RECORDING, within_ms=600 * S)
    assert outcomes(rec) == ["died", "running"]
    assert rec.sessions[1].uid != first.uid and rec.sessions[1].sid != first.sid
    first_404 = next(c.at for c in driver.calls("query") if c.status == 404)
    second_acquire = driver.calls("acquire")[1].at
    assert second_acquire - first_404 >= MISSING_WINDOW * S and first_404 - died_at <= POLL_EVERY * S
    assert driver.notifications == ["recording.started", "recording.restarted"]


def test_abnormal_exit_is_restarted() -> None:
    """11 with exitStatus 1 while recording is wanted: a new session, same recording."""
    agora, driver = world()
    first = recording(driver).sessions[0]
    agora.exit(first.sid or "", exit_status=1)
    rec = driver.run(lambda r: r.restarts == 1 and r.state == State.RECORDING, within_ms=120 * S)
    assert outcomes(rec) == ["exited_abnormally", "running"]
    assert rec.sessions[1].uid != first.uid
    assert driver.notifications == ["recording.started", "recording.restarted"]


def test_ha_failover_keeps_the_session_and_its_new_uid() -> None:
    """12 with newUid, then 404s inside the window: no restart; the failover uid is kept; bak0_ files follow."""
    agora, driver = world()
    first = recording(driver).sessions[0]
    sid = first.sid or ""
    driver.run(lambda r: r.sessions[0].next_query_ms is not None, within_ms=1)
    agora.advance_to((driver.rec.sessions[0].next_query_ms or 0) - 2 * S)
    new_uid = agora.failover(sid, window_ms=60 * S)
    rec = driver.run(
        lambda r: any(name.startswith(f"bak0_{sid}") for name in r.files) and len(driver.calls("query")) > 4,
        within_ms=600 * S,
    )
    assert any(c.status == 404 for c in driver.calls("query"))
    assert rec.restarts == 0 and len(rec.sessions) == 1 and rec.state == State.RECORDING
    assert rec.sessions[0].failover_uid == new_uid == agora.tasks[sid].uid
    assert rec.public()["currentSession"]["uid"] == new_uid
    assert driver.notifications == ["recording.started"]


def test_idle_exit_completes_the_recording_after_the_settle_window() -> None:
    """Everyone leaves: Agora exits after maxIdleTime; the recording completes once the settle window passed."""
    agora, driver = world(request=request_for("mix", idle=10))
    recording(driver)
    agora.set_publishers("class1", False)
    done = driver.run(within_ms=300 * S)
    exit_at = next(e["notifyMs"] for e in agora.inbox if e["eventType"] == 11)
    assert done.state == State.COMPLETED and done.desired == "stopped" and done.restarts == 0
    assert outcomes(done) == ["exited"]
    assert (done.ended_ms or 0) - exit_at >= SETTLE * S
    assert done.files and all(f.status == "uploaded" for f in done.files.values())
    assert driver.notifications == ["recording.started", "recording.completed"]
    assert not driver.calls("stop")


def test_max_duration_stops_by_itself() -> None:
    """maxDurationSeconds: the recording is stopped when the time is up, and completes."""
    agora, driver = world(max_duration_s=60)
    done = driver.run(within_ms=300 * S)
    assert done.state == State.COMPLETED and done.desired == "stopped" and done.files
    stops = driver.calls("stop")
    assert len(stops) == 1 and stops[0].status == 200 and stops[0].at == START_MS + 60 * S


def test_backed_up_upload() -> None:
    """Agora's backup holds the files (32 / backuped): backed_up, listed, notified once."""
    agora, driver = world()
    agora.backup("class1")
    recording(driver)
    driver.command("stop")
    done = driver.run()
    assert done.state == State.BACKED_UP
    backed = done.public()["backedUpFiles"]
    assert backed and set(backed) == set(done.files)
    assert driver.notifications == ["recording.started", "recording.backed_up"]


def test_stop_answered_49_ends_upload_unconfirmed_after_the_stuck_time() -> None:
    """stop answered 49 and no upload callback: upload_unconfirmed after UPLOAD_STUCK_SECONDS, every file in doubt."""
    agora, driver = world()
    recording(driver)
    agora.auto_deliver = False
    agora.script("stop", 400, 49, "invalid operation", act=True)
    driver.command("stop")
    rec = driver.run(lambda r: r.state == State.UPLOADING, within_ms=60 * S)
    stopped_at = agora.now
    agora.lose(*agora.pending())
    done = driver.run(within_ms=3600 * S)
    assert done.state == State.UPLOAD_UNCONFIRMED and rec.sessions[0].outcome == "stopped"
    assert (done.ended_ms or 0) - stopped_at >= driver.timing.upload_stuck_seconds * S
    assert done.files_in_doubt == sorted(done.files) and done.public()["uploadStuck"]
    assert all(f.status == "recorded" for f in done.files.values())
    assert done.public()["currentSession"] is None
    assert driver.notifications == ["recording.started", "recording.upload_unconfirmed"]


def test_stop_answered_404_is_retried_then_succeeds() -> None:
    """stop answered 404 may be an HA migration: sent again 10 s later, it stops the task; completed."""
    agora, driver = world()
    sid = recording(driver).sessions[0].sid or ""
    agora.script("stop", 404, 404, "failed to find worker")
    driver.command("stop")
    done = driver.run()
    stops = driver.calls("stop")
    assert [s.code for s in stops] == [404, None] and stops[1].at - stops[0].at == 10 * S
    assert done.state == State.COMPLETED and agora.tasks[sid].exit_reason == "stop"


def test_stop_answered_435_nothing_recorded() -> None:
    """Nobody published: stop answers 435 and the recording completes with no files."""
    agora, driver = world()
    agora.set_publishers("class1", False)
    recording(driver, files=False)
    driver.command("stop")
    done = driver.run()
    assert done.state == State.COMPLETED and not done.files
    assert "nothing was recorded" in (done.reason or "")
    assert [s.code for s in driver.calls("stop")] == [435]
    assert outcomes(done) == ["nothing_recorded"]


def test_update_and_layout_are_applied_in_order_once_confirmed() -> None:
    """Changes asked before the session is confirmed wait for it, then reach Agora once each, in order."""
    agora, driver = world()
    layout = {"mixedVideoLayout": 3}
    update = {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1002"]}}}
    driver.command("layout", layout)
    driver.command("update", update)
    rec = driver.run(lambda r: not r.pending_changes and r.state == State.RECORDING, within_ms=60 * S)
    task = agora.tasks[rec.sessions[0].sid or ""]
    assert task.changes == [("updateLayout", layout), ("update", update)]
    endpoints = [c.endpoint for c in driver.calls()]
    assert endpoints.index("query") < endpoints.index("updateLayout") < endpoints.index("update")
    driver.wait(300 * S)
    assert len(task.changes) == 2


def test_update_during_ha_migration_is_retried() -> None:
    """An update answered 404 (migrating) is sent again later and applied once."""
    agora, driver = world()
    sid = recording(driver).sessions[0].sid or ""
    agora.failover(sid, window_ms=20 * S)
    driver.command("update", {"streamSubscribe": {}})
    rec = driver.run(lambda r: not r.pending_changes, within_ms=120 * S)
    assert [c.status for c in driver.calls("update")][-1] == 200 and 404 in [
        c.status for c in driver.calls("update")
    ]
    assert len(agora.tasks[sid].changes) == 1 and rec.restarts == 0


def test_web_capability_limit_restarts_the_page_recording() -> None:
    """Web: 72 (capability limit) then 71 with code 2 is an abnormal end; a new session starts."""
    agora, driver = world("web")
    sid = recording(driver).sessions[0].sid or ""
    agora.capability_limit(sid)
    rec = driver.run(lambda r: r.restarts == 1 and r.state == State.RECORDING, within_ms=120 * S)
    assert outcomes(rec) == ["exited_abnormally", "running"]
    assert driver.notifications == ["recording.started", "recording.restarted"]


def test_every_notification_is_sent_once_whatever_the_duplicates() -> None:
    """Duplicated callbacks and extra wake-ups never repeat a notification."""
    agora, driver = world()
    sid = recording(driver).sessions[0].sid or ""
    agora.deliver(*[e for e in agora.inbox if e["payload"]["sid"] == sid])  # every callback twice
    for _ in range(3):
        driver.step()
    agora.exit(sid, exit_status=1)
    agora.deliver(*[e for e in agora.inbox if e["payload"]["sid"] == sid and e["eventType"] == 11])
    rec = driver.run(lambda r: r.state == State.RECORDING and r.restarts == 1, within_ms=120 * S)
    driver.step()
    driver.command("stop")
    driver.run()
    driver.step()
    assert driver.notifications == ["recording.started", "recording.restarted", "recording.completed"]
    assert rec.notified == ["recording.started", "recording.restarted:1"]


# -- ambiguous starts --------------------------------------------------------------------------------------


def test_slow_start_waits_for_callbacks_then_adopts_the_task() -> None:
    """A start that acts but times out: the retry answers 201/7, the recording waits, and a callback naming the sid makes it adopt the task."""
    agora, driver = world(auto_deliver=False)
    agora.slow("start")
    rec = driver.run(lambda r: bool(r.sessions) and r.sessions[0].sid_unknown, within_ms=60 * S)
    starts = driver.calls("start")
    assert [s.status for s in starts] == [None, 201] and starts[1].code == 7
    assert starts[0].resource_id == starts[1].resource_id
    driver.wait(20 * S)
    assert driver.rec.state == State.STARTING and len(driver.calls("acquire")) == 1
    agora.flow()
    rec = recording(driver, files=False)
    assert len(rec.sessions) == 1 and rec.sessions[0].adopted and rec.sessions[0].sid == starts[0].sid
    assert len(agora.tasks) == 1 and driver.notifications == ["recording.started"]
    assert_one_session_per_task(driver)


def test_slow_start_whose_callbacks_come_first_is_adopted_without_asking_again() -> None:
    """start acts but times out and its task calls back before the retry: adopted, no second start."""
    agora, driver = world()
    agora.slow("start")
    rec = recording(driver, files=False)
    assert len(driver.calls("start")) == 1 and rec.sessions[0].adopted and len(agora.tasks) == 1


def test_stop_during_a_slow_start_leaves_no_task_running() -> None:
    """A stop during a slow start: once its callbacks name the task it is stopped; one session per task, none left running."""
    agora, driver = world(auto_deliver=False)
    agora.slow("start")
    driver.step()
    driver.command("stop")
    driver.run(lambda r: bool(r.sessions) and r.sessions[0].sid_unknown, within_ms=60 * S)
    assert len(agora.tasks) == 1 and driver.live_tasks()
    agora.flow()
    done = driver.run()
    assert done.state in (State.COMPLETED, State.UPLOAD_UNCONFIRMED, State.BACKED_UP)
    assert not driver.live_tasks() and len(done.sessions) == 1 and done.sessions[0].outcome == "stopped"
    assert_one_session_per_task(driver)


def test_53_after_our_own_ambiguous_start_waits_and_keeps_the_uid() -> None:
    """start timed out (it acted), the retry answers 53: that task is ours; wait for it, never a new uid."""
    agora, driver = world(auto_deliver=False)
    agora.slow("start")
    agora.script("start", 400, 53, "task conflict")
    driver.run(lambda r: bool(r.sessions) and r.sessions[0].sid_unknown, within_ms=60 * S)
    driver.wait(60 * S)
    assert len(driver.calls("acquire")) == 1 and driver.rec.uid_index == 0
    agora.flow()
    rec = recording(driver, files=False)
    assert len(rec.sessions) == 1 and rec.sessions[0].uid == "527841" and len(agora.tasks) == 1


def test_53_after_a_step_killed_mid_start_waits_and_keeps_the_uid() -> None:
    """A step killed after sending start (it acted); the next start answers 53: ours, so wait; no new uid."""
    agora, driver = world(auto_deliver=False)
    driver.kill = lambda call: call.endpoint == "start"
    driver.step()
    driver.kill = None
    assert driver.rec.sessions[0].start_in_flight and len(agora.tasks) == 1
    agora.script("start", 400, 53, "task conflict")
    driver.wait(60 * S)
    assert len(driver.calls("acquire")) == 1 and driver.rec.uid_index == 0
    agora.flow()
    rec = recording(driver, files=False)
    assert len(rec.sessions) == 1 and len(agora.tasks) == 1 and rec.sessions[0].adopted


def test_53_on_a_fresh_recording_takes_another_uid() -> None:
    """53 on a fresh recording (somebody else's uid): another uid; their task is left alone and asked about at most once (1003)."""
    agora, driver = world()
    theirs = agora.foreign_task("class1", "527841")
    rec = recording(driver)
    assert [s.code for s in driver.calls("start")] == [53, None]
    assert outcomes(rec) == ["not_started", "running"] and rec.sessions[1].uid != "527841"
    driver.wait(600 * S)
    assert theirs.alive and len(driver.calls()) < 20, driver.calls()
    assert [c.code for c in driver.calls() if c.sid == theirs.sid] == [1003]
    assert driver.rec.foreign_sids == [theirs.sid] and driver.rec.state == State.RECORDING


def test_step_killed_after_sending_start_resends_it_with_the_same_resource() -> None:
    """A step killed after sending start (start_in_flight saved): the next step re-sends start with the same resourceId, then adopts."""
    agora, driver = world(auto_deliver=False)
    driver.kill = lambda call: call.endpoint == "start"
    driver.step()
    driver.kill = None
    saved = driver.rec.sessions[0]
    assert saved.start_in_flight and saved.start_sent == 1
    driver.run(lambda _rec: len(driver.calls("start")) == 2, within_ms=60 * S)
    first, second = driver.calls("start")
    assert second.resource_id == first.resource_id == saved.resource_id and second.code == 7
    agora.flow()
    rec = recording(driver, files=False)
    assert rec.sessions[0].sid == first.sid and len(agora.tasks) == 1 and len(driver.calls("acquire")) == 1


def test_step_killed_before_agora_answered_acquire_starts_afresh() -> None:
    """A step killed after acquire (its resource never saved) acquires again; one task in the end."""
    agora, driver = world()
    driver.kill = lambda call: call.endpoint == "acquire"
    driver.step()
    driver.kill = None
    assert not driver.rec.sessions
    rec = recording(driver, files=False)
    assert len(driver.calls("acquire")) == 2 and len(agora.tasks) == 1 and len(rec.sessions) == 1


def test_start_refused_after_an_ambiguous_start_stops_what_it_made_then_fails() -> None:
    """A start refused (400) after a slow one: no hot loop of refused starts; the task made is stopped, then failed with Agora's reason."""
    agora, driver = world(auto_deliver=False)
    agora.slow("start")
    agora.script("start", 400, 2, "Start: token expired", times=100)
    driver.wait(120 * S)
    assert len(driver.calls("start")) <= 6, [c.status for c in driver.calls("start")]
    agora.flow()
    done = driver.run(within_ms=600 * S)
    assert done.state == State.FAILED and "Start: token expired" in (done.reason or "")
    assert not driver.live_tasks() and driver.notifications == ["recording.failed"]
    assert_one_session_per_task(driver)


def test_task_whose_callbacks_never_come_is_given_up_with_a_wake_up() -> None:
    """A task said to run (7) whose sid no callback names is given up after SID_WAIT_LIMIT, and the recording keeps a wake-up."""
    agora, driver = world(auto_deliver=False)
    agora.slow("start")
    driver.run(
        lambda r: r.sessions[0].outcome == "not_started" if r.sessions else False, within_ms=2 * 3600 * S
    )
    rec = driver.rec
    assert rec.sessions[0].ended_ms is not None
    assert (rec.sessions[0].ended_ms or 0) - START_MS >= SID_WAIT_LIMIT * S
    assert rec.wake_at_ms is not None and rec.wake_at_ms <= agora.now + 1


# -- strays, settling, dead sessions -----------------------------------------------------------------------


def test_stray_task_on_our_uid_is_stopped_while_another_session_records() -> None:
    """A stray task on our uid (a start that acted though reported spent) is adopted as unwanted and stopped while another session records."""
    agora, driver = world(auto_deliver=False)
    agora.slow("start")
    agora.script("start", 500, 500, times=2)
    agora.script("start", 500, 502, "Failed to allocate worker")
    driver.run(lambda r: len(r.sessions) == 2 and r.sessions[1].sid is not None, within_ms=120 * S)
    stray = driver.calls("start")[0].sid or ""
    assert len([t for t in agora.tasks.values() if t.alive]) == 2
    agora.flow()
    rec = driver.run(lambda r: r.state == State.RECORDING and not agora.tasks[stray].alive, within_ms=120 * S)
    assert (
        rec.sessions[0].sid == stray and rec.sessions[0].stop_wanted and rec.sessions[0].outcome == "stopped"
    )
    assert agora.tasks[stray].exit_reason == "stop"
    assert [t.sid for t in driver.live_tasks()] == [rec.sessions[1].sid]
    assert_one_session_per_task(driver)


def test_reordered_exit_in_web_mode_restarts_rather_than_completes() -> None:
    """Web: 11 exitStatus 0 before 72/71 code 2: the settle window holds the end back and the late callbacks make it a restart."""
    agora, driver = world("web")
    sid = recording(driver).sessions[0].sid or ""
    agora.auto_deliver = False
    agora.capability_limit(sid)
    early = agora.pending(sid, 11, 31, 33)
    agora.deliver(*early)
    driver.run(lambda r: r.sessions[0].exit_seen_ms is not None, within_ms=5 * S)
    driver.wait(int(SETTLE * S) - 2 * S)
    assert driver.rec.state == State.RECORDING and driver.rec.sessions[0].live
    agora.flow()
    rec = driver.run(lambda r: r.restarts == 1 and r.state == State.RECORDING, within_ms=120 * S)
    assert outcomes(rec) == ["exited_abnormally", "running"] and rec.desired == "recording"
    assert "recording.completed" not in driver.notifications


def test_normal_exit_alone_completes_only_after_the_settle_window() -> None:
    """Web: 71 code 0 and 11 exitStatus 0 (max hours): nothing ends before the settle window; then completed."""
    agora, driver = world("web")
    sid = recording(driver).sessions[0].sid or ""
    agora.exit(sid, exit_status=0)
    exit_at = agora.now
    driver.wait(int(SETTLE * S) - S)
    assert driver.rec.state == State.RECORDING
    done = driver.run(within_ms=60 * S)
    assert done.state == State.COMPLETED and (done.ended_ms or 0) >= exit_at + SETTLE * S


def test_session_dead_while_recording_leaves_its_files_in_doubt_at_once() -> None:
    """Files of a session that died silently are in doubt at once: upload_unconfirmed right after the stop, no stuck-time wait."""
    agora, driver = world()
    first = recording(driver).sessions[0]
    agora.die(first.sid or "")
    driver.run(
        lambda r: r.restarts == 1 and r.state == State.RECORDING and len(r.files) > 2, within_ms=600 * S
    )
    driver.command("stop")
    stop_at = agora.now
    done = driver.run(within_ms=3600 * S)
    assert done.state == State.UPLOAD_UNCONFIRMED and (done.ended_ms or 0) - stop_at < 10 * S
    assert done.files_in_doubt and all(n.startswith(first.sid or "") for n in done.files_in_doubt)


def test_session_dead_when_stopped_ends_upload_unconfirmed_without_waiting() -> None:
    """A session that died silently (stop 404 through the HA window) ends upload_unconfirmed right after the window."""
    agora, driver = world()
    sid = recording(driver).sessions[0].sid or ""
    agora.die(sid)
    driver.command("stop")
    stop_at = agora.now
    done = driver.run(within_ms=3600 * S)
    assert done.state == State.UPLOAD_UNCONFIRMED and done.files_in_doubt == sorted(done.files)
    assert (done.ended_ms or 0) - stop_at <= (MISSING_WINDOW + 15) * S


# -- wake-ups and polling ----------------------------------------------------------------------------------


def test_a_step_that_runs_early_rearms_its_wake_up() -> None:
    """A step a few hundred ms before the query is due re-arms the wake-up at the due time; within EARLY_MS it queries."""
    agora, driver = world()
    rec = recording(driver)
    due = rec.sessions[0].next_query_ms or 0
    early = Step(rec, Evidence(), due - EARLY_MS - 200, driver.timing).decide()
    assert early.call is None and early.wake_at == due
    close = Step(driver.rec, Evidence(), due - EARLY_MS + 50, driver.timing).decide()
    assert close.call is not None and close.call.endpoint == "query"


def test_recording_is_queried_at_least_every_poll_interval() -> None:
    """While recording, the session is queried at least every POLL_EVERY (and not much more often)."""
    agora, driver = world()
    recording(driver)
    driver.wait(1800 * S)
    queries = [c.at for c in driver.calls("query")]
    gaps = [b - a for a, b in zip(queries, queries[1:], strict=False)]
    shortest = POLL_EVERY * (1 - POLL_JITTER) * S - EARLY_MS  # spread so that a fleet does not poll at once
    assert len(queries) > 10 and max(gaps) <= POLL_EVERY * S and min(gaps[2:]) >= shortest
    assert len(set(gaps[2:])) > 3  # spread indeed


def test_fake_agora_answers_with_the_clients_types() -> None:
    """The fake raises AgoraApiError with the table's outcome (201/7 already running, 433 reacquire)."""
    agora = FakeAgora()
    resource = agora.acquire("c", "1").resource_id or ""
    started = agora.start(resource, "mix", "c", "1", {})
    assert started.sid
    with pytest.raises(AgoraApiError) as again:
        agora.start(resource, "mix", "c", "1", {})
    assert (again.value.status, again.value.code, again.value.outcome.value) == (201, 7, "already_running")
    agora.advance(30 * S)
    assert agora.stop(resource, started.sid, "mix", "c", "1").uploading_status == "uploaded"
    agora.advance(61 * S)
    with pytest.raises(AgoraApiError) as spent:
        agora.start(resource, "mix", "c", "1", {})
    assert (spent.value.code, spent.value.outcome.value) == (433, "reacquire")


def test_first_confirmed_session_is_announced_as_started_even_after_a_restart() -> None:
    """A session replacing one that ended before it was confirmed is announced recording.started, not restarted."""
    agora, driver = world()
    driver.run(lambda r: bool(r.sessions) and r.sessions[0].sid is not None, within_ms=S)
    agora.advance(2 * S)
    agora.exit(driver.rec.sessions[0].sid or "", exit_status=1)
    rec = recording(driver, files=False)
    assert rec.restarts == 1 and outcomes(rec) == ["exited_abnormally", "running"]
    assert driver.notifications == ["recording.started"]


def make_stray(agora: FakeAgora, driver: Driver) -> str:
    """A slow start (it acted), two 500s and a 502 on its retries: after the uid rotation a second session
    records while the first start's task still runs unknown; returns that task's sid."""
    agora.slow("start")
    agora.script("start", 500, 500, times=2)
    agora.script("start", 500, 502, "Failed to allocate worker")
    driver.run(lambda r: r.state == State.RECORDING, within_ms=120 * S)
    return driver.calls("start")[0].sid or ""


def test_a_stray_whose_stop_keeps_failing_does_not_starve_the_recording() -> None:
    """While a stray's stop is retried, the recording's session is still queried every POLL_EVERY and an API stop still stops it."""
    agora, driver = world(auto_deliver=False)
    stray = make_stray(agora, driver)
    agora.script("stop", 500, 500, sid=stray, times=1000)
    agora.flow()
    before = len(driver.calls("query"))
    driver.wait(600 * S)
    assert driver.rec.sessions[0].stop_wanted and agora.tasks[stray].alive
    queries = [c.at for c in driver.calls("query")[before - 1 :]]
    assert (
        len(queries) >= 5 and max(b - a for a, b in zip(queries, queries[1:], strict=False)) <= POLL_EVERY * S
    )
    driver.command("stop")
    done = driver.run(lambda r: r.sessions[1].outcome is not None, within_ms=60 * S)
    assert done.sessions[1].outcome == "stopped"
    agora.faults.clear()
    done = driver.run(lambda r: r.terminal and not r.live_sessions, within_ms=600 * S)
    assert not driver.live_tasks() and done.sessions[0].outcome == "stopped"


def test_nothing_is_started_while_a_strays_stop_is_pending() -> None:
    """No new task is started while a stray's stop is still pending (never two tasks)."""
    agora, driver = world(auto_deliver=False)
    stray = make_stray(agora, driver)
    agora.script("stop", 500, 500, sid=stray, times=1000)
    agora.flow()
    driver.wait(10 * S)
    agora.die(driver.rec.sessions[1].sid or "")
    driver.run(lambda r: r.sessions[1].outcome == "died", within_ms=400 * S)
    acquires = len(driver.calls("acquire"))
    driver.wait(300 * S)
    assert len(driver.calls("acquire")) == acquires and len(driver.live_tasks()) == 1
    agora.faults.clear()
    rec = driver.run(lambda r: r.state == State.RECORDING and r.restarts == 1, within_ms=120 * S)
    assert not agora.tasks[stray].alive and len(driver.live_tasks()) == 1
    assert len(driver.calls("acquire")) == acquires + 1 and rec.sessions[-1].sid == driver.live_tasks()[0].sid


def test_an_ended_task_found_on_our_uid_is_not_taken_for_our_ambiguous_start() -> None:
    """An ended foreign task on our uid is not adopted for our ambiguous start; our own task is, and is stopped."""
    agora, driver = world(auto_deliver=False)
    agora.set_publishers("class1", False)
    theirs = agora.foreign_task("class1", "527841")
    agora.advance(31 * S)
    assert not theirs.alive
    agora.slow("start")
    driver.step()
    ours = driver.calls("start")[0].sid
    driver.command("stop")
    agora.flow()
    done = driver.run(lambda r: r.terminal and not r.live_sessions, within_ms=600 * S)
    assert [s.sid for s in done.sessions] == [ours] and not driver.live_tasks()
    assert agora.tasks[ours or ""].exit_reason == "stop"


def test_404s_seen_only_at_both_ends_of_a_lagging_window_are_not_a_death() -> None:
    """Two HA migrations and a lagging worker: 404s at both ends of an unwatched gap are not 90 s of 404s; no restart."""
    agora, driver = world()
    sid = recording(driver).sessions[0].sid or ""
    agora.auto_deliver = False
    agora.advance_to((driver.rec.sessions[0].next_query_ms or 0) - S)
    agora.failover(sid, window_ms=80 * S)
    first = agora.now
    agora.advance(2 * S)
    driver.step()  # 404: the run starts
    agora.advance_to(first + 85 * S)
    agora.failover(sid, window_ms=80 * S)
    agora.advance_to(first + 92 * S)  # no step meanwhile (a lagging worker)
    agora.lose(*agora.pending())
    rec = driver.run(lambda r: r.sessions[0].missing_since_ms is None, within_ms=120 * S)
    assert not any(e["eventType"] == 12 for e in agora.inbox)
    assert [c.status for c in driver.calls("query")].count(404) >= 3
    assert rec.restarts == 0 and len(rec.sessions) == 1 and rec.sessions[0].live
    assert len(agora.tasks) == 1 and agora.tasks[sid].alive


def test_worker_killed_mid_recording_resumes_and_completes() -> None:
    """A step dies mid-query and no worker runs for a while; the stop asked meanwhile is done once one does."""
    agora, driver = world()
    recording(driver)
    driver.kill = lambda call: call.endpoint == "query"
    driver.wait(130 * S)
    driver.kill = None
    assert driver.steps[-1].killed
    driver.command("stop")
    agora.advance(300 * S)  # nobody works on it
    assert driver.rec.state == State.RECORDING
    done = driver.run()
    assert done.state == State.COMPLETED and all(f.status == "uploaded" for f in done.files.values())


@pytest.mark.parametrize("endpoint", ["acquire", "start", "query", "stop"])
def test_rate_limited_answers_are_retried_without_counting_as_failures(endpoint: str) -> None:
    """429 on any call: sent again after the backoff (start: same resourceId), no failure counted, one task."""
    agora, driver = world()
    agora.script(endpoint, 429, None, "API rate limit exceeded", times=2)
    recording(driver)
    driver.command("stop")
    done = driver.run()
    assert done.state == State.COMPLETED and done.failures_in_row == 0 and len(agora.tasks) == 1
    calls = driver.calls(endpoint)
    assert [c.status for c in calls][:3] == [429, 429, 200]
    assert [c.status for c in driver.calls("acquire")].count(200) == 1
    if endpoint in ("start", "stop"):
        assert (
            len({c.resource_id for c in calls}) == 1 and calls[1].at - calls[0].at == RATE_LIMITED_BACKOFF * S
        )


def test_no_callbacks_at_all_never_leads_to_a_second_task() -> None:
    """No callback ever arrives (NCS down): a task given up on keeps its uid (53 guards it); no uid rotation, no second task."""
    agora, driver = world(auto_deliver=False)
    agora.slow("acquire", times=2)
    agora.slow("start")
    driver.wait(3600 * S)
    rec = driver.rec
    assert len(driver.live_tasks()) == 1 and rec.uid_index == 0
    assert rec.sessions[0].given_up and 53 in [c.code for c in driver.calls("start")]
    assert rec.state == State.FAILED and driver.notifications == ["recording.failed"]
    agora.flow()  # the callbacks come after all: the task is adopted and stopped
    driver.run(lambda _rec: not driver.live_tasks(), within_ms=600 * S)
    assert driver.rec.sessions[0].sid == driver.calls("start")[0].sid


def test_404s_answered_late_every_time_still_end_the_session_after_the_limit() -> None:
    """When every answer comes later than the 'watched' threshold (a saturated rate limit), the run of 404s
    keeps restarting, but after MISSING_LIMIT since the first 404 the session counts as gone anyway."""
    from workers.agora import AgoraApiError, Outcome
    from workers.recordings.decide import MISSING_LIMIT, Call, Evidence, Step, Timing
    from workers.recordings.machine import SessionOutcome, State
    from workers.recordings.model import AgoraSession, Recording

    timing = Timing()
    now = 1_000_000
    rec = Recording(id="rec_x", cname="c", mode="mix", uid="5", request={}, created_ms=0, updated_ms=0)
    rec.state = State.RECORDING
    rec.sessions.append(
        AgoraSession(resource_id="r", uid="5", acquired_ms=0, sid="s", started_ms=0, confirmed_ms=1)
    )
    not_found = AgoraApiError(
        endpoint="query", status=404, code=404, reason="failed to find worker", request_id=None,
        outcome=Outcome.NOT_FOUND,
    )  # fmt: skip
    session = rec.sessions[0]
    first = None
    while session.live:
        due = session.next_query_ms or now
        now = due + timing.ms(45)  # every answer 45 s late: never a watched run of 90 s
        first = first or now
        Step(rec, Evidence(), now, timing).absorb(Call("query", 0), None, not_found)
        assert now - first <= timing.ms(MISSING_LIMIT + 55)
    assert session.outcome == SessionOutcome.DIED and now - first >= timing.ms(MISSING_LIMIT)


def test_a_fatal_error_callback_brings_the_next_query_forward_once() -> None:
    """Agora says to query on a fatal error (event 1, errorLevel 5): its exit callback may be lost, so the
    poll two minutes away is brought forward to 5 s; the same error seen again moves nothing."""
    from workers.recordings.decide import CONFIRM_AFTER, Evidence, SessionFacts, Step, Timing
    from workers.recordings.machine import State
    from workers.recordings.model import AgoraSession, Recording

    timing, now = Timing(), 1_000_000
    rec = Recording(id="rec_x", cname="c", mode="mix", uid="5", request={}, created_ms=0, updated_ms=0)
    rec.state = State.RECORDING
    session = AgoraSession(resource_id="r", uid="5", acquired_ms=0, sid="s", started_ms=0, confirmed_ms=1)
    session.next_query_ms = now + timing.ms(100)
    rec.sessions.append(session)
    evidence = Evidence(sessions={"s": SessionFacts(sid="s", uids=frozenset({"5"}), fatal_error="3:1:1:x")})
    plan = Step(rec, evidence, now, timing).decide()
    assert session.next_query_ms == now + timing.ms(CONFIRM_AFTER) and plan.wake_at == session.next_query_ms
    session.next_query_ms = now + timing.ms(100)
    Step(rec, evidence, now + 1, timing).decide()
    assert session.next_query_ms == now + timing.ms(100)


def test_a_refused_stop_is_asked_again_and_leaves_no_task_running() -> None:
    """A stop refused once (401 while the Customer Secret rotates) is sent again later: the recording ends
    only once its task is stopped, never with its recorder left running."""
    from tests.support.fake_agora import Driver, FakeAgora, new_recording

    agora = FakeAgora()
    driver = Driver(agora, new_recording("mix"))
    driver.run(lambda r: r.state == State.RECORDING and bool(r.files), within_ms=300_000)
    agora.script("stop", 401, None, "Invalid authentication credentials")
    driver.command("stop")
    rec = driver.run(within_ms=4 * 3600_000)
    assert rec.terminal and not driver.live_tasks()
    assert [s.outcome for s in rec.sessions] == ["stopped"]
