"""Draining the inbox into sessions, on a real Redis and a real RQ worker (in-process, burst mode)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.support.factories import body_of, event, signed_headers
from tests.support.service import NCS_SECRET
from workers.core import schema
from workers.core.config import current_settings
from workers.jobs import drain_batch
from workers.ncs.inbox import stale_partitions
from workers.ncs.store import read_session
from workers.worker import RecordingWorker


@pytest.fixture
def worker_env(monkeypatch, settings):
    """The environment a worker process gets (jobs read their settings from it)."""
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("SESSION_MAX_EVENTS", "50")
    current_settings.cache_clear()
    yield
    current_settings.cache_clear()


def send(client, envelope) -> None:
    body = body_of(envelope)
    response = client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET))
    assert response.status_code == 200, response.json


def run_worker(connection: redis.Redis) -> None:
    """A real RQ worker of the class the Procfile names, until the queues are empty."""
    RecordingWorker([schema.NCS_QUEUE, schema.DEFAULT_QUEUE], connection=connection).work(burst=True)


def drain(connection: redis.Redis, cname: str = "room1") -> int:
    return drain_batch(connection, schema.partition_of(cname), max_events=50, retention_seconds=3600)


def notice_ids(connection: redis.Redis, sid: str = "sid-1") -> list[str]:
    view = read_session(connection, sid)
    assert view is not None
    return [e["noticeId"] for e in view.events]


def test_rq_worker_runs_the_jobs_the_receiver_queued(client, redis_client, worker_env) -> None:
    """Jobs created by the accept script are valid RQ jobs: the Procfile's worker class runs them."""
    send(client, event(40, sid="s-a", cname="ch-a", sequence=0))
    send(client, event(3, sid="s-b", cname="ch-b", sequence=1, details={"status": 5}))
    run_worker(redis_client)
    assert read_session(redis_client, "s-a").state.status == "started"
    assert read_session(redis_client, "s-b").state.status == "recording"
    assert redis_client.llen("rq:queue:ncs") == 0
    assert redis_client.hget(schema.STATS, "applied") == b"2"
    # result_ttl=0: finished drain jobs leave nothing behind
    assert redis_client.keys("rq:job:acr-drain-*") == []


def test_timeline_is_in_sequence_order_whatever_the_arrival(client, redis_client) -> None:
    """Events arriving 3, 1, 2 are listed 1, 2, 3 (sequence, then sendts)."""
    for seq in (3, 1, 2):
        send(client, event(43, notice_id=f"seq-{seq}", sequence=seq))
    drain(redis_client)
    assert notice_ids(redis_client) == ["seq-1", "seq-2", "seq-3"]


def test_late_events_are_inserted_in_place_by_a_later_drain(client, redis_client) -> None:
    """An event for an already-drained session lands at its place in the timeline."""
    send(client, event(40, notice_id="a", sequence=1))
    send(client, event(41, notice_id="c", sequence=9))
    drain(redis_client)
    send(client, event(42, notice_id="b", sequence=5))
    drain(redis_client)
    assert notice_ids(redis_client) == ["a", "b", "c"]
    assert read_session(redis_client, "sid-1").state.status == "stopping"


def test_replaying_the_stream_applies_nothing_twice(client, redis_client) -> None:
    """A drain re-run over already applied entries (cursor lost) adds no event a second time."""
    for _ in range(3):
        send(client, event(43))
    assert drain(redis_client) == 3
    assert drain(redis_client) == 0
    redis_client.delete(schema.inbox_cursor(schema.partition_of("room1")))
    assert drain(redis_client) >= 1  # entries still in the stream are read again...
    view = read_session(redis_client, "sid-1")
    assert len(view.events) == 3  # ...but none is applied twice
    assert view.duplicates >= 1


def test_redundant_copy_under_new_notice_id_is_dropped(client, redis_client) -> None:
    """Dual-path delivery: same uid, sequence and type under another noticeId counts as a duplicate."""
    send(client, event(31, notice_id="orig", sequence=7, uid="111"))
    send(client, event(31, notice_id="copy", sequence=7, uid="111"))
    send(client, event(31, notice_id="ha-new-uid", sequence=7, uid="222"))  # §1.5: told apart by uid
    drain(redis_client)
    view = read_session(redis_client, "sid-1")
    assert [e["noticeId"] for e in view.events] == ["orig", "ha-new-uid"]
    assert view.duplicates == 1


def test_concurrent_drains_apply_each_event_once(client, redis_client) -> None:
    """Four drains racing on one partition: every event appears once, none is lost."""
    expected = []
    for index in range(120):
        envelope = event(43, sid=f"sid-{index % 3}", sequence=index)
        expected.append(envelope["noticeId"])
        send(client, envelope)
    partition = schema.partition_of("room1")

    def worker() -> None:
        local = redis.Redis(connection_pool=redis_client.connection_pool)
        while drain_batch(local, partition, max_events=1000, retention_seconds=3600, batch_size=7):
            pass

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = []
    for sid in ("sid-0", "sid-1", "sid-2"):
        seen += notice_ids(redis_client, sid)
    assert sorted(seen) == sorted(expected)
    assert redis_client.hget(schema.STATS, "applied") == b"120"


def test_timeline_is_capped(client, redis_client) -> None:
    """Beyond SESSION_MAX_EVENTS the earliest events are dropped, the newest kept."""
    for seq in range(60):
        send(client, event(43, notice_id=f"e{seq:02d}", sequence=seq))
    drain(redis_client)
    ids = notice_ids(redis_client)
    assert len(ids) == 50 and ids[0] == "e10" and ids[-1] == "e59"


def test_unparsable_entry_goes_to_dead_letters_without_blocking(client, redis_client) -> None:
    """A stored body that no longer parses is dead-lettered with its reason; the rest is applied."""
    partition = schema.partition_of("room1")
    redis_client.xadd(schema.inbox(partition), {"n": "bad", "b": b"{broken"})
    send(client, event(40, notice_id="good"))
    drain(redis_client)
    [(_, fields)] = redis_client.xrange(schema.DEAD_LETTERS)
    assert fields[b"b"] == b"{broken" and b"JSON" in fields[b"reason"]
    assert notice_ids(redis_client) == ["good"]


def test_events_without_sid_are_kept_aside(client, redis_client) -> None:
    """Console test events and other products have no session; they are kept in a capped stream."""
    send(
        client, {"noticeId": "rtc-1", "productId": 1, "eventType": 101, "notifyMs": 1, "payload": {"a": "1"}}
    )
    drain_batch(redis_client, schema.partition_of(""), max_events=50, retention_seconds=3600)
    [(_, fields)] = redis_client.xrange(schema.UNROUTED)
    assert fields[b"n"] == b"rtc-1"


def test_sweep_wakes_a_partition_whose_drain_died(client, redis_client, worker_env) -> None:
    """An event whose drain job vanished (worker killed) is picked up by the sweep, then applied."""
    send(client, event(40, notice_id="orphan"))
    redis_client.delete("rq:queue:ncs")  # the queued drain is lost; the 'queued' flag still stands
    partition = schema.partition_of("room1")
    assert stale_partitions(redis_client) == []  # fresh: not stale yet
    later = int(time.time() * 1000) + 60_000
    assert stale_partitions(redis_client, now_ms=later) == [partition]
    worker = RecordingWorker([schema.NCS_QUEUE], connection=redis_client)
    assert worker.sweep_inbox() == []
    assert worker.sweep_inbox(now_ms=later) == [partition]
    run_worker(redis_client)
    assert notice_ids(redis_client) == ["orphan"]
    assert stale_partitions(redis_client, now_ms=later) == []


def test_a_drain_helps_with_other_partitions_backlogs(client, redis_client, worker_env) -> None:
    """The first drain job applies the backlogs of every partition, not only its own."""
    from workers.jobs import drain_partition

    channels = [f"help-{i}" for i in range(40)]
    partitions = {schema.partition_of(c) for c in channels}
    assert len(partitions) > 10
    for n, cname in enumerate(channels):
        send(client, event(40, notice_id=f"help-{n}", sid=f"s-help-{n}", cname=cname, sequence=0))
    applied = drain_partition(schema.partition_of(channels[0]))
    assert applied == len(channels)
    assert all(read_session(redis_client, f"s-help-{n}") is not None for n in range(len(channels)))
    assert stale_partitions(redis_client, now_ms=int(time.time() * 1000) + 60_000) == []
