"""Admission against a real Redis: the queue's order (priority, then creation), slots taken and given back by
the save script, the head woken when a slot frees, waits after a 406, and the reconcile of stale entries."""

from __future__ import annotations

import dataclasses
from typing import Any

import redis

from tests.support.service import with_default_storage
from workers.core import schema
from workers.core.config import Settings
from workers.recordings.admission import admit, position, reconcile, usage
from workers.recordings.decide import Plan
from workers.recordings.machine import Desired, State
from workers.recordings.model import Recording
from workers.recordings.runner import Runner
from workers.recordings.store import RecordingSpec, create_recording, load


def make(connection: redis.Redis, settings: Settings, name: str, **extra: Any) -> Recording:
    spec = RecordingSpec(cname=name, mode=extra.pop("mode", "mix"), **extra)
    recording, _ = create_recording(connection, settings, spec)
    return recording


def save(connection: redis.Redis, settings: Settings, rec: Recording) -> None:
    """The runner's save (fenced by a lock this test holds)."""
    token = "test-token|holder"
    connection.set(schema.recording_lock(rec.id), token)
    Runner(connection, settings, client=object()).save(rec, Plan(), token, 0)


def test_recordings_leave_the_queue_by_priority_then_creation(
    redis_client: redis.Redis, settings: Settings
) -> None:
    settings = dataclasses.replace(with_default_storage(settings), agora_max_recorders=2)
    normal = [make(redis_client, settings, f"n{i}") for i in range(3)]
    high = make(redis_client, settings, "h", priority="high")
    web = make(redis_client, settings, "w", mode="web", web={"url": "https://example.com"})
    assert [position(redis_client, r) for r in (*normal, high)] == [2, 3, 4, 1]
    # the later ones ask first: they still wait behind the earlier ones
    assert admit(redis_client, normal[2], 2) == 2 and admit(redis_client, normal[1], 2) == 1
    assert admit(redis_client, high, 2) == 0
    assert admit(redis_client, normal[1], 2) == 1  # one slot left, and it is the first normal one's
    assert admit(redis_client, normal[0], 2) == 0
    assert admit(redis_client, normal[1], 2) == 1 and admit(redis_client, normal[2], 2) == 2
    assert admit(redis_client, web, 200) == 0  # web recorders have their own quota
    assert usage(redis_client) == {"recorder": (2, 2), "web": (1, 0)}
    assert admit(redis_client, high, 2) == 0  # idempotent


def test_a_save_that_ends_a_recording_gives_its_slot_back_and_wakes_the_head(
    redis_client: redis.Redis, settings: Settings
) -> None:
    settings = dataclasses.replace(with_default_storage(settings), agora_max_recorders=1)
    first, second, third = (make(redis_client, settings, f"c{i}") for i in range(3))
    assert admit(redis_client, first, 1) == 0 and admit(redis_client, second, 1) == 1
    redis_client.zadd(schema.TIMERS, {second.id: 10**15, third.id: 10**15})
    first.admitted = True
    save(redis_client, settings, first)  # still wanted: keeps its slot
    assert usage(redis_client)["recorder"] == (1, 2)
    assert redis_client.zscore(schema.TIMERS, second.id) == 10**15
    first.desired, first.state = Desired.STOPPED, State.COMPLETED
    save(redis_client, settings, first)
    assert usage(redis_client)["recorder"] == (0, 2)
    assert redis_client.zscore(schema.TIMERS, second.id) < 10**15  # the head is woken at once
    assert redis_client.zscore(schema.TIMERS, third.id) == 10**15  # not the one behind it
    assert admit(redis_client, second, 1) == 0 and admit(redis_client, third, 1) == 1


def test_a_wait_after_a_406_holds_the_queue_and_is_woken_first(
    redis_client: redis.Redis, settings: Settings
) -> None:
    settings = dataclasses.replace(with_default_storage(settings), agora_max_recorders=3)
    running, waiting, queued = (make(redis_client, settings, f"a{i}") for i in range(3))
    for rec in (running, waiting):
        assert admit(redis_client, rec, 3) == 0
        rec.admitted = True
    waiting.capacity_waits, waiting.state = 1, State.QUEUED  # Agora answered 406
    save(redis_client, settings, waiting)
    # a slot is free in the service's count, but Agora is full: nobody new leaves the queue
    assert admit(redis_client, queued, 3) == 1
    redis_client.zadd(schema.TIMERS, {waiting.id: 10**15, queued.id: 10**15})
    running.desired, running.state = Desired.STOPPED, State.COMPLETED
    save(redis_client, settings, running)
    assert redis_client.zscore(schema.TIMERS, waiting.id) < 10**15  # Agora's place goes to the waiting one
    assert redis_client.zscore(schema.TIMERS, queued.id) == 10**15
    waiting.capacity_waits, waiting.state = 0, State.STARTING  # its acquire went through
    save(redis_client, settings, waiting)
    assert redis_client.zscore(schema.TIMERS, queued.id) < 10**15  # now the queue moves again
    assert admit(redis_client, queued, 3) == 0


def test_a_running_recording_whose_slot_record_was_lost_is_readmitted(
    redis_client: redis.Redis, settings: Settings
) -> None:
    settings = dataclasses.replace(with_default_storage(settings), agora_max_recorders=1)
    running, queued = (make(redis_client, settings, f"r{i}") for i in range(2))
    assert admit(redis_client, running, 1) == 0
    running.admitted = True
    redis_client.delete(schema.admission_holders("recorder"))  # lost with a crashed Redis's last writes
    assert admit(redis_client, running, 1) == 0  # never sent back to the queue
    assert admit(redis_client, queued, 1) == 1


def test_reconcile_drops_what_is_no_longer_active(redis_client: redis.Redis, settings: Settings) -> None:
    settings = dataclasses.replace(with_default_storage(settings), agora_max_recorders=5)
    live, gone, queued_gone = (make(redis_client, settings, f"x{i}") for i in range(3))
    for rec in (live, gone):
        assert admit(redis_client, rec, 5) == 0
    redis_client.zrem(schema.ACTIVE_RECORDINGS, gone.id, queued_gone.id)  # ended without the save's release
    assert reconcile(redis_client) == 2
    assert usage(redis_client)["recorder"] == (1, 0)
    assert load(redis_client, live.id) is not None and reconcile(redis_client) == 0
