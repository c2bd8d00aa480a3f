"""End to end: signed callbacks over HTTP to real gunicorn, applied by a real `rq worker`, read via the API."""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from tests.support.factories import body_of, event, signed_headers
from tests.support.redis_server import assert_known_keys
from tests.support.stack import Stack

SECRET = "e2e-ncs-secret"
TOKEN = "e2e-api-token-0123456789"  # production tokens have at least 16 characters
ENV = {"AGORA_NCS_SECRETS": f"{SECRET},old-secret", "API_TOKENS": TOKEN, "APP_ENV": "production"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path, ENV)
    try:
        running.start()
        yield running
        assert_known_keys(running.redis)
    finally:
        running.kill()


def post(session: requests.Session, stack: Stack, envelope: dict) -> int:
    body = body_of(envelope)
    response = session.post(
        stack.url + "/webhooks/agora", data=body, headers=signed_headers(body, SECRET), timeout=10
    )
    return response.status_code


def timeline(stack: Stack, sid: str) -> list[str]:
    response = requests.get(
        f"{stack.url}/v1/sessions/{sid}/events", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return [e["noticeId"] for e in response.json()["events"]]


def wait_for_timelines(stack: Stack, expected: dict[str, list[str]], timeout: float) -> dict[str, list[str]]:
    """Poll the API until every sid shows exactly its expected count of events (or time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        got = {sid: timeline(stack, sid) for sid in expected}
        if all(len(got[sid]) >= len(ids) for sid, ids in expected.items()) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_signed_callbacks_are_applied_and_readable(stack: Stack) -> None:
    """Shuffled, duplicated callbacks of two sessions come back through the API once each, in order."""
    envelopes = [
        event(40 + (i % 5), sid=f"e2e-{i % 2}", cname=f"room-{i % 2}", sequence=i) for i in range(40)
    ]
    deliveries = envelopes + random.Random(7).sample(envelopes, 15)
    random.Random(8).shuffle(deliveries)
    with requests.Session() as session:  # one keep-alive connection, as NCS uses
        statuses = [post(session, stack, e) for e in deliveries]
    assert set(statuses) == {200}
    expected = {
        sid: [
            e["noticeId"]
            for e in sorted(envelopes, key=lambda e: e["payload"]["sequence"])
            if e["payload"]["sid"] == sid
        ]
        for sid in ("e2e-0", "e2e-1")
    }
    assert wait_for_timelines(stack, expected, timeout=60) == expected


def test_chunked_bodies_are_read_and_capped(stack: Stack) -> None:
    """A callback sent with chunked transfer encoding is accepted; an oversized chunked one gets 413."""
    body = body_of(event(40, sid="chunked"))
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    connection.request("POST", "/webhooks/agora", body=iter([body[:10], body[10:]]),
                       headers=signed_headers(body, SECRET), encode_chunked=True)  # fmt: skip
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    big = b'{"pad":"' + b"x" * 70_000 + b'"}'
    connection.request("POST", "/webhooks/agora", body=iter([big]), headers=signed_headers(big, SECRET),
                       encode_chunked=True)  # fmt: skip
    response = connection.getresponse()
    assert response.status == 413
    connection.close()


def test_worker_killed_mid_burst_loses_nothing(stack: Stack) -> None:
    """SIGKILL the worker during a burst: after a new worker starts, every acknowledged event is applied once."""
    sids = [f"burst-{n}" for n in range(8)]
    acknowledged: dict[str, list[str]] = {sid: [] for sid in sids}
    lock = threading.Lock()
    killed = threading.Event()

    def sender(thread_index: int) -> None:
        with requests.Session() as session:
            for i in range(250):
                sid = sids[(thread_index + i) % len(sids)]
                envelope = event(43, sid=sid, cname=f"room-{sid}", sequence=thread_index * 1000 + i)
                if post(session, stack, envelope) == 200:
                    with lock:
                        acknowledged[sid].append(envelope["noticeId"])
                if thread_index == 0 and i == 120:
                    stack.kill_worker(stack.workers[0])
                    killed.set()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(sender, range(8)))
    assert killed.is_set()
    stack.start_worker()
    # A drain killed part-way is re-woken by the sweep once its backlog is stale (10 s) - allow for it.
    got = wait_for_timelines(stack, acknowledged, timeout=90)
    for sid in sids:
        assert len(got[sid]) == len(set(got[sid])), f"{sid}: an event applied twice"
        assert sorted(got[sid]) == sorted(acknowledged[sid]), f"{sid}: acknowledged events missing"
    assert sum(map(len, acknowledged.values())) == 2000


def test_redis_outage_503_then_each_event_applied_once(stack: Stack) -> None:
    """Redis stopped while callbacks arrive: 503, never 200; after it returns, re-posts are applied once."""
    envelopes = [event(44, sid="outage", cname="outage-room", sequence=i) for i in range(6)]
    with requests.Session() as session:
        assert [post(session, stack, e) for e in envelopes[:2]] == [200, 200]
        stack.redis.stop()
        assert [post(session, stack, e) for e in envelopes] == [503] * 6
        stack.redis.start()  # append-only file: what was acknowledged before survives
        assert [post(session, stack, e) for e in envelopes] == [200] * 6
    expected = {"outage": [e["noticeId"] for e in envelopes]}
    assert wait_for_timelines(stack, expected, timeout=60) == expected
    client = redis.Redis.from_url(stack.redis.url)
    assert client.hget("acr:stats", "duplicate") == b"2"  # the two acknowledged before the outage
