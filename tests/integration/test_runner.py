"""The step runner against real Redis and the in-process emulator: fenced saves, write-ahead of Agora's
answers, adoption and stopping of tasks found in callbacks, the timer index, and idempotent creation."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis
import requests
from werkzeug.serving import make_server

from tests.support.emulated import (
    APP_ID,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    POLL,
    Sink,
    control,
    make_client,
    pointed_at,
)
from tests.support.wait import wait_until
from webhook_service import create_app
from workers.agora import (
    AcquireClientRequest,
    AcquireRequest,
    AgoraClient,
    StartClientRequest,
    StartRequest,
    from_json_dict,
)
from workers.core import schema
from workers.core.config import Settings
from workers.jobs import drain_batch
from workers.ncs.inbox import Inbox
from workers.recordings import liveness
from workers.recordings.machine import SessionOutcome
from workers.recordings.model import AgoraSession, encode, recorder_uid
from workers.recordings.runner import Runner
from workers.recordings.store import RecordingSpec, create_recording, load, timeline
from workers.recordings.timers import LEASE_MS, fire_due

TOKEN = "runner-test-token"


@pytest.fixture
def settings(settings: Settings, base: str) -> Settings:
    return pointed_at(settings, base, api_tokens=(TOKEN, "other-token"))


class Killed(BaseException):
    """The worker died right after the call went out (nothing below the call runs)."""


class Client:
    """The real client, with a hook that runs after one endpoint's call reached Agora."""

    def __init__(self, real: AgoraClient, endpoint: str, after: Any) -> None:
        self.real, self.endpoint, self.after = real, endpoint, after

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)
        if name != self.endpoint:
            return method

        def hooked(*args: Any, **kwargs: Any) -> Any:
            answer = method(*args, **kwargs)
            self.after()
            return answer

        return hooked


def die() -> None:
    raise Killed()


def deliver(connection: redis.Redis, sink: Sink, *, skip: set[str] | None = None) -> int:
    """Accept every callback the emulator posted (as the receiver would) and apply them (as a drain would)."""
    inbox = Inbox(connection, 3600)
    partitions = set()
    for envelope in sink.envelopes():
        if skip and envelope["payload"].get("sid") in skip:
            continue
        cname = envelope["payload"].get("cname") or ""
        inbox.accept(envelope["noticeId"], cname, msgspec.json.encode(envelope))
        partitions.add(schema.partition_of(cname))
    return sum(drain_batch(connection, p, max_events=1000, retention_seconds=3600) for p in partitions)


def create(connection: redis.Redis, settings: Settings, cname: str) -> str:
    recording, created = create_recording(connection, settings, RecordingSpec(cname=cname, mode="mix"))
    assert created
    return recording.id


def tasks(base: str, cname: str) -> list[dict[str, Any]]:
    return [t for t in control(base, "GET", "state")["tasks"] if t["cname"] == cname]


def test_a_step_killed_after_start_never_forgets_its_task(
    redis_client: redis.Redis, settings: Settings, base: str, sink: Sink
) -> None:
    """Killed right after start reached Agora: the resourceId and the sent start were saved before; the next
    step asks again with the same resource (201/7, no second task) and adopts the task its callbacks name."""
    recording_id = create(redis_client, settings, "killed")
    dying = Runner(redis_client, settings, Client(make_client(base), "start", die))
    with pytest.raises(Killed):
        dying.advance(recording_id)
    stored = load(redis_client, recording_id)
    assert stored is not None and len(stored.sessions) == 1
    assert (
        stored.sessions[0].resource_id
        and stored.sessions[0].start_in_flight
        and stored.sessions[0].sid is None
    )
    assert len(tasks(base, "killed")) == 1

    runner = Runner(redis_client, settings, make_client(base))
    runner.advance(recording_id)
    waiting = load(redis_client, recording_id)
    assert waiting is not None and waiting.sessions[0].sid_unknown and waiting.state == "starting"
    (task,) = tasks(base, "killed")
    wait_until(lambda: sink.envelopes(task["sid"]))
    deliver(redis_client, sink)
    assert runner.advance(recording_id) == "recording"
    adopted = load(redis_client, recording_id)
    assert adopted is not None and [s.sid for s in adopted.sessions] == [task["sid"]]
    assert adopted.sessions[0].adopted and len(tasks(base, "killed")) == 1
    starts = [r for r in control(base, "GET", "requests?endpoint=start")["requests"]]
    assert [r["status"] for r in starts] == [200, 201]
    assert any("adopted" in str(e.get("what")) for e in timeline(redis_client, recording_id))


def test_a_step_that_lost_its_lock_writes_nothing_but_a_timeline_entry(
    redis_client: redis.Redis, settings: Settings, base: str
) -> None:
    """While acquire was on its way the lock expired and another step took it: the answer is not saved."""
    recording_id = create(redis_client, settings, "fenced")
    before = redis_client.get(schema.recording(recording_id))
    lock = schema.recording_lock(recording_id)
    runner = Runner(
        redis_client, settings, Client(make_client(base), "acquire", lambda: redis_client.set(lock, "x"))
    )
    assert runner.advance(recording_id) == "lost_lock"
    assert redis_client.get(schema.recording(recording_id)) == before
    assert timeline(redis_client, recording_id)[-1]["what"] == "lost the lock: nothing saved"
    assert redis_client.get(lock) == b"x"  # the other holder's lock is left alone


def test_a_stray_task_on_an_old_uid_is_stopped_while_the_recording_goes_on(
    redis_client: redis.Redis, settings: Settings, base: str, sink: Sink
) -> None:
    """Callbacks of a task nobody announced, on our channel and a uid we used before: stopped, not adopted,
    because another session of ours records; ours keeps running."""
    recording_id = create(redis_client, settings, "stray")
    runner = Runner(redis_client, settings, make_client(base))
    wait_until(lambda: runner.advance(recording_id) == "recording", interval=0.05)
    rec = load(redis_client, recording_id)
    assert rec is not None
    ours = rec.sessions[0].sid
    # An earlier, ambiguous attempt with another uid of this recording, whose task we never heard of.
    old_uid = recorder_uid(rec.uid, 7)
    real = make_client(base)
    acquired = real.acquire(
        AcquireRequest(cname="stray", uid=old_uid, client_request=AcquireClientRequest(scene=0)), mode="mix"
    )
    request = from_json_dict(StartClientRequest, rec.request, "clientRequest")
    start = StartRequest(cname="stray", uid=old_uid, client_request=request)
    stray_sid = real.start(str(acquired.resource_id), "mix", start).sid
    redis_client.sadd(schema.channel_claim("stray", old_uid), recording_id)
    rec.sessions.insert(0, AgoraSession(resource_id=str(acquired.resource_id), uid=old_uid, acquired_ms=1))
    rec.sessions[0].end(SessionOutcome.NOT_STARTED, 2)
    redis_client.set(schema.recording(recording_id), encode(rec))
    wait_until(lambda: sink.envelopes(stray_sid))
    deliver(redis_client, sink)
    assert redis_client.sismember(schema.recording_found(recording_id), stray_sid)
    runner.advance(recording_id)
    after = load(redis_client, recording_id)
    assert after is not None and after.state == "recording" and after.current and after.current.sid == ours
    stray = next(s for s in after.sessions if s.sid == stray_sid)
    assert stray.stop_wanted and stray.outcome == "stopped"
    assert control(base, "GET", f"tasks/{stray_sid}")["exitReason"] == "stop"
    assert control(base, "GET", f"tasks/{ours}")["alive"]


def test_one_timer_per_recording_claimed_once_and_leased(
    redis_client: redis.Redis, settings: Settings, base: str
) -> None:
    """Creation arms a timer due now; claiming it queues one step and leases it; a step replaces it with the
    time it next needs a look; a claimed timer whose step never ran fires again after the lease."""
    recording_id = create(redis_client, settings, "timers")
    redis_client.delete(schema.recording_queued(recording_id))  # as if creation's own wake-up was lost
    redis_client.delete("rq:queue:default")
    assert fire_due(redis_client) == [recording_id]
    assert fire_due(redis_client) == []  # leased, and a step is queued
    leased = redis_client.zscore(schema.TIMERS, recording_id)
    assert leased is not None and leased > redis_client.time()[0] * 1000 + LEASE_MS - 5000
    Runner(redis_client, settings, make_client(base)).advance(recording_id)
    rec = load(redis_client, recording_id)
    assert rec is not None and rec.wake_at_ms is not None
    assert redis_client.zscore(schema.TIMERS, recording_id) == rec.wake_at_ms
    assert redis_client.zcard(schema.TIMERS) == 1 and not redis_client.exists(
        schema.recording_queued(recording_id)
    )


@pytest.fixture
def http_app(settings: Settings) -> Iterator[str]:
    """The web app on a real threaded HTTP server on loopback."""
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_concurrent_creates_with_one_idempotency_key_make_one_recording(
    redis_client: redis.Redis, http_app: str
) -> None:
    """20 concurrent POSTs with one key: one recording; the same key with another body is a 422 naming the
    conflict; the same key under another API token is another recording (keys are scoped to the token)."""
    body = {"cname": "idem", "mode": "mix"}
    answers: list[requests.Response] = []
    barrier = threading.Barrier(20)

    def post() -> None:
        barrier.wait()
        answers.append(
            requests.post(
                f"{http_app}/v1/recordings",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "same-key"},
                timeout=10,
            )
        )

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [202] * 20
    assert len({a.json()["id"] for a in answers}) == 1
    assert redis_client.zcard(schema.RECORDINGS_INDEX) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 19
    other_body = requests.post(
        f"{http_app}/v1/recordings",
        json={"cname": "idem", "mode": "individual"},
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "same-key"},
        timeout=10,
    )
    assert other_body.status_code == 422 and other_body.json()["error"]["field"] == "Idempotency-Key"
    other_token = requests.post(
        f"{http_app}/v1/recordings",
        json=body,
        headers={"Authorization": "Bearer other-token", "Idempotency-Key": "same-key"},
        timeout=10,
    )
    assert other_token.status_code == 202 and other_token.json()["id"] != answers[0].json()["id"]
    assert redis_client.zcard(schema.RECORDINGS_INDEX) == 2


def test_a_lock_left_by_a_dead_worker_is_taken_over_but_a_live_ones_is_not(
    redis_client: redis.Redis, settings: Settings, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step finding the lock of a worker whose heartbeat expired (SIGKILLed) takes it over at once; the lock
    of a live worker (heartbeat present) makes the step end as busy and bring the timer forward."""
    recording_id = create(redis_client, settings, "takeover")
    lock = schema.recording_lock(recording_id)
    runner = Runner(redis_client, settings, make_client(base))
    redis_client.set(lock, "t0|host:1:alive", px=150_000)
    redis_client.set(schema.worker_alive("host:1:alive"), 1, px=5000)
    redis_client.zadd(schema.TIMERS, {recording_id: 10**13})
    assert runner.advance(recording_id) == "busy"
    assert redis_client.get(lock) == b"t0|host:1:alive"
    assert redis_client.zscore(schema.TIMERS, recording_id) < 10**13  # brought forward, not dropped
    redis_client.set(lock, "t1|host:2:killed", px=150_000)  # no heartbeat: its process is gone
    monkeypatch.setattr(liveness, "RESTART_GRACE_MS", 10**12)  # as if Redis had just restarted
    assert runner.advance(recording_id) == "busy"  # heartbeats lost with a restart: no takeover yet
    monkeypatch.setattr(liveness, "RESTART_GRACE_MS", 0)
    assert runner.advance(recording_id) in ("starting", "recording")
    assert redis_client.get(lock) is None  # taken over, then released by the step


def test_the_clients_own_retries_take_a_rate_limit_slot(redis_client: redis.Redis) -> None:
    """A retry inside the client (after a transport error) asks the shared limit first; no slot, no retry."""
    from workers.agora import AgoraTransportError, HostPlan

    asked: list[int] = []
    client = AgoraClient(
        app_id=APP_ID,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        hosts=HostPlan.single("http://127.0.0.1:9", retries=3, backoff=(0.0,)),
        before_retry=lambda: bool(asked.append(1)) or len(asked) < 2,
    )
    with pytest.raises(AgoraTransportError) as caught:
        client.query("res", "sid", "mix")
    assert len(asked) == 2 and len(caught.value.hosts) == 2


def test_a_lock_the_step_could_not_release_is_released_once_redis_is_back(
    redis_client: redis.Redis, settings: Settings, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step ending while Redis is away cannot release its lock, and its worker lives on (heartbeat), so
    nobody would take it over: the worker keeps it and releases it at its next maintenance."""
    from workers.core import scripts
    from workers.recordings import runner as runner_module

    recording_id = create(redis_client, settings, "unreleased")
    runner = Runner(redis_client, settings, make_client(base))

    def redis_away(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("gone")

    with monkeypatch.context() as away:
        away.setattr(scripts, "RELEASE_LOCK", redis_away)
        runner.advance(recording_id)
    lock = schema.recording_lock(recording_id)
    assert redis_client.exists(lock) and runner_module.UNRELEASED
    assert runner_module.release_pending(redis_client) == 1
    assert not redis_client.exists(lock) and not runner_module.UNRELEASED


def test_a_due_recording_whose_queued_job_was_lost_is_queued_again_at_once(
    redis_client: redis.Redis, settings: Settings
) -> None:
    """The queued flag names its job: when that job is gone (a killed worker, writes lost with a crashed
    Redis), the next claim of the due timer queues a new one instead of waiting out the flag's TTL; a job
    that still waits in the queue is left alone."""
    waiting = create(redis_client, settings, "waiting")
    lost = create(redis_client, settings, "lost")
    flag = schema.recording_queued(lost)
    redis_client.delete(f"rq:job:{redis_client.get(flag).decode()}")  # the job vanished with its worker
    assert fire_due(redis_client) == []  # both queued just now: looked at again in 5 s, not after a lease
    for recording_id in (waiting, lost):
        redis_client.pexpire(schema.recording_queued(recording_id), 50_000)  # queued 10 s ago
        assert redis_client.zscore(schema.TIMERS, recording_id) < time.time() * 1000 + 6000
        redis_client.zadd(schema.TIMERS, {recording_id: 0})  # 5 s later
    assert fire_due(redis_client) == [lost]
    new_job = redis_client.get(flag).decode()
    assert redis_client.hget(f"rq:job:{new_job}", "status") == b"queued"
    assert fire_due(redis_client) == []  # leased now


def test_a_wake_up_during_a_running_step_is_not_overwritten_by_its_save(
    redis_client: redis.Redis, settings: Settings, base: str
) -> None:
    """A wake-up that finds the lock held leaves a mark; the running step's save then looks again within 2 s
    instead of at its planned time (a stop or a 31 arriving mid-step is not left for minutes)."""
    from workers.recordings.decide import Plan

    recording_id = create(redis_client, settings, "poked")
    lock = schema.recording_lock(recording_id)
    token = "t0|host:1:alive"
    redis_client.set(lock, token, px=150_000)
    redis_client.set(schema.worker_alive("host:1:alive"), 1, px=5000)
    runner = Runner(redis_client, settings, make_client(base))
    assert runner.advance(recording_id) == "busy"  # the wake-up that came while the step ran
    rec = load(redis_client, recording_id)
    assert rec is not None
    now = runner.clock()
    runner.save(rec, Plan(wake_at=now + 120_000), token, 0)  # the running step planned its next poll
    assert redis_client.zscore(schema.TIMERS, recording_id) <= now + 2_500
    runner.save(rec, Plan(wake_at=now + 120_000), token, 0)  # the mark is used once
    assert redis_client.zscore(schema.TIMERS, recording_id) == now + 120_000


def test_a_task_on_a_channel_and_uid_two_recordings_used_reaches_both(redis_client: redis.Redis) -> None:
    """Claims are sets: a callback of an unknown sid on a (channel, uid) that two recordings used wakes both,
    and each decides whether the task can be its own (the later claim does not hide the earlier one)."""
    from workers.recordings.routing import Seen, wake_recordings

    redis_client.sadd(schema.channel_claim("shared", "42"), "rec_a", "rec_b")
    assert wake_recordings(redis_client, [Seen(sid="s1", cname="shared", uids=frozenset({"42"}))]) == 2
    for recording_id in ("rec_a", "rec_b"):
        assert redis_client.smembers(schema.recording_found(recording_id)) == {b"s1"}


def test_a_notification_decided_by_a_save_survives_a_worker_dying_before_it_is_queued(
    redis_client: redis.Redis, settings: Settings, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transition's notification is written to the recording's outbox in the same script as the save; if
    the worker dies before queuing it, the next step queues it, with the webhook-id the timeline shows."""
    from rq import Queue

    from workers.recordings.runner import Runner as RunnerClass

    settings = dataclasses.replace(
        settings, notify_url="http://127.0.0.1:9/hook", notify_secret="notify-secret-0123456789"
    )
    recording_id = create(redis_client, settings, "outbox")
    runner = Runner(redis_client, settings, make_client(base))

    def dies(self: Any, recording_id: str) -> int:
        raise Killed()

    monkeypatch.setattr(RunnerClass, "send_outbox", dies)
    with pytest.raises(Killed):
        wait_until(lambda: runner.advance(recording_id) == "recording", interval=0.05)
    assert redis_client.llen(schema.recording_outbox(recording_id)) == 1
    assert Queue(schema.NOTIFY_QUEUE, connection=redis_client).count == 0
    monkeypatch.undo()
    redis_client.delete(schema.recording_lock(recording_id))  # the dead worker's lock
    Runner(redis_client, settings, make_client(base)).advance(recording_id)
    (job,) = Queue(schema.NOTIFY_QUEUE, connection=redis_client).jobs
    noted = [e for e in timeline(redis_client, recording_id) if e["kind"] == "notification"]
    assert [e["type"] for e in noted] == ["recording.started"] and job.args[0] == noted[0]["webhookId"]
    assert redis_client.llen(schema.recording_outbox(recording_id)) == 0
