"""POST /webhooks/agora against a real Redis: the ingest promise of docs/design.md §3."""

from __future__ import annotations

import json
import threading

import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.factories import VECTOR_1, VECTOR_2, body_of, event, signed_headers
from tests.support.redis_server import RedisServer
from tests.support.service import NCS_SECRET
from webhook_service import create_app
from workers.core import schema
from workers.core.config import Settings

URL = "/webhooks/agora"


def inbox_entries(client: redis.Redis) -> list[bytes]:
    """Every raw body stored in any inbox partition."""
    bodies = []
    for partition in range(schema.PARTITIONS):
        bodies += [fields[b"b"] for _id, fields in client.xrange(schema.inbox(partition))]
    return bodies


def queued_jobs(client: redis.Redis) -> list[bytes]:
    return client.lrange("rq:queue:" + schema.NCS_QUEUE, 0, -1)


def post(client: FlaskClient, body: bytes, **header_options):
    return client.post(URL, data=body, headers=signed_headers(body, NCS_SECRET, **header_options))


def test_accepts_stores_raw_body_and_queues_one_drain(client, redis_client) -> None:
    """An accepted event is stored byte for byte, its noticeId remembered, and a drain job queued."""
    body = body_of(event(40, notice_id="n-1", cname="roomA"))
    response = post(client, body)
    assert response.status_code == 200
    assert response.json == {"status": "accepted", "noticeId": "n-1"}
    assert inbox_entries(redis_client) == [body]
    assert redis_client.exists(schema.seen("n-1")) == 1
    [job_id] = queued_jobs(redis_client)
    job = redis_client.hgetall(b"rq:job:" + job_id)
    assert job[b"status"] == b"queued" and job[b"origin"] == b"ncs"
    assert b"drain NCS inbox partition %d" % schema.partition_of("roomA") == job[b"description"]


def test_duplicate_answers_200_and_stores_nothing_more(client, redis_client) -> None:
    """The same noticeId again is acknowledged as a duplicate; nothing is stored or queued twice."""
    body = body_of(event(40, notice_id="n-dup"))
    assert post(client, body).json["status"] == "accepted"
    again = post(client, body)
    assert again.status_code == 200 and again.json == {"status": "duplicate", "noticeId": "n-dup"}
    assert len(inbox_entries(redis_client)) == 1
    assert len(queued_jobs(redis_client)) == 1
    assert redis_client.hget(schema.STATS, "duplicate") == b"1"


def test_one_drain_job_per_partition_while_queued(client, redis_client) -> None:
    """Events of one channel accepted while a drain is queued ride on that drain (no job per event)."""
    for _ in range(5):
        post(client, body_of(event(43, cname="same-room")))
    assert len(inbox_entries(redis_client)) == 5
    assert len(queued_jobs(redis_client)) == 1


def test_v1_signature_alone_is_accepted(client) -> None:
    """Without Agora-Signature-V2, a correct Agora-Signature (SHA-1) is enough."""
    assert post(client, body_of(event(40)), v2=False).status_code == 200


@pytest.mark.parametrize("body", [VECTOR_1, VECTOR_2])
def test_console_check_events_get_200(client, body) -> None:
    """The Console "Check" button's test events (productId 1, arbitrary payload) get 200 with JSON."""
    response = post(client, body)
    assert response.status_code == 200 and response.is_json


def test_transcoder_event_without_sid_is_accepted(client, redis_client) -> None:
    """Cloud Transcoder events share productId 3 and carry no sid."""
    from tests.support.factories import TRANSCODER

    assert post(client, json.dumps(TRANSCODER).encode()).status_code == 200
    assert len(inbox_entries(redis_client)) == 1


@pytest.mark.parametrize(
    ("make_request", "status", "code"),
    [
        (
            lambda c, b: c.post(URL, data=b, headers={"Content-Type": "application/json"}),
            401,
            "invalid_signature",
        ),
        (
            lambda c, b: c.post(URL, data=b, headers={**signed_headers(b, "wrong-secret")}),
            401,
            "invalid_signature",
        ),
        (
            lambda c, b: c.post(
                URL, data=b, headers={"Content-Type": "application/json", "Agora-Signature-V2": "é" * 9}
            ),
            401,
            "invalid_signature",
        ),
        (
            lambda c, b: c.post(
                URL, data=b, headers={**signed_headers(b, NCS_SECRET), "Content-Type": "text/plain"}
            ),
            415,
            "unsupported_media_type",
        ),
        (
            lambda c, b: c.post(
                URL,
                data=b,
                headers={k: v for k, v in signed_headers(b, NCS_SECRET).items() if k != "Content-Type"},
            ),
            415,
            "unsupported_media_type",
        ),
        (lambda c, _b: c.get(URL), 405, "method_not_allowed"),
        (lambda c, b: c.put(URL, data=b, headers=signed_headers(b, NCS_SECRET)), 405, "method_not_allowed"),
    ],
    ids=[
        "no-signature",
        "wrong-secret",
        "non-ascii-signature",
        "text-plain",
        "no-content-type",
        "get",
        "put",
    ],
)
def test_rejections_store_nothing(client, redis_client, make_request, status, code) -> None:
    """Each rejected request gets its status and a JSON reason, and writes nothing to Redis."""
    before = redis_client.dbsize()
    response = make_request(client, body_of(event(40)))
    assert response.status_code == status
    assert response.json["error"]["code"] == code and response.json["error"]["message"]
    assert redis_client.dbsize() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "JSON"),
        (b'{"noticeId":"x","productId":3,"eventType":40,"notifyMs":1,"payload":"nope"}', "payload"),
        (b'{"noticeId":"x","productId":3,"eventType":40,"payload":{}}', "notifyMs"),
    ],
)
def test_malformed_envelope_is_400_with_reason(client, redis_client, body, field) -> None:
    """A correctly signed but malformed body is refused with 400 naming the problem; nothing stored."""
    before = redis_client.dbsize()
    response = post(client, body)
    assert response.status_code == 400
    assert field in response.json["error"]["message"]
    assert redis_client.dbsize() == before


def test_oversized_body_is_413(client, settings, redis_client) -> None:
    """A body above NCS_MAX_BODY_BYTES is refused before it is read or verified."""
    envelope = event(40)
    envelope["payload"]["details"] = {"padding": "x" * settings.ncs_max_body_bytes}
    response = post(client, body_of(envelope))
    assert response.status_code == 413 and response.json["error"]["code"] == "body_too_large"
    assert inbox_entries(redis_client) == []


def test_concurrent_posts_of_one_event_accept_exactly_once(client, redis_client) -> None:
    """Sixteen threads posting the same callback at once: one accepted, fifteen duplicates, one stored."""
    body = body_of(event(40, notice_id="n-race"))
    barrier = threading.Barrier(16)
    outcomes: list[str] = []

    def send() -> None:
        local = client.application.test_client()
        barrier.wait()
        outcomes.append(post(local, body).json["status"])

    threads = [threading.Thread(target=send) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted"] + ["duplicate"] * 15
    assert inbox_entries(redis_client) == [body]


def test_redis_error_mid_step_leaves_no_dedupe_marker(client, redis_client) -> None:
    """If the store step fails part-way (XADD refused), the answer is 503 and the retry is accepted."""
    envelope = event(40, notice_id="n-broken", cname="broken-room")
    stream = schema.inbox(schema.partition_of("broken-room"))
    redis_client.set(stream, "not a stream")  # makes XADD fail inside the script
    response = post(client, body_of(envelope))
    assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    assert redis_client.exists(schema.seen("n-broken")) == 0
    redis_client.delete(stream)
    assert post(client, body_of(envelope)).json["status"] == "accepted"


def test_redis_down_answers_503_then_accepts_after_recovery(private_redis: RedisServer) -> None:
    """With Redis stopped every callback gets 503 (never 200); after it returns, re-posts are accepted once."""
    settings = Settings(
        redis_url=private_redis.url, environment="test", ncs_secrets=(NCS_SECRET,), redis_socket_timeout=1.0
    )
    client = create_app(settings).test_client()
    bodies = [body_of(event(40, notice_id=f"outage-{i}")) for i in range(3)]
    assert post(client, bodies[0]).status_code == 200
    private_redis.stop()
    assert [post(client, b).status_code for b in bodies] == [503, 503, 503]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    private_redis.start()  # same port, data lost (no persistence in this test server)
    assert [post(client, b).json["status"] for b in bodies] == ["accepted"] * 3
    assert [post(client, b).json["status"] for b in bodies] == ["duplicate"] * 3
    stored = inbox_entries(redis.Redis.from_url(private_redis.url))
    assert sorted(stored) == sorted(bodies)


def test_templates_reinstalled_after_flush(client, redis_client) -> None:
    """If Redis loses everything (flush, restart without persistence), the receiver recovers by itself."""
    redis_client.flushall()
    redis_client.script_flush()
    assert post(client, body_of(event(40))).json["status"] == "accepted"
    assert len(queued_jobs(redis_client)) == 1


# Any header value an HTTP request can carry (no CR/LF).
header_values = (
    st.none()
    | st.text(st.characters(blacklist_characters="\r\n"), max_size=80)
    | st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""])
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=600),
        st.builds(lambda e: body_of(e), st.builds(event, st.integers(0, 2000))),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=10),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=5),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    sign_it=st.booleans(),
    content_type=header_values,
    extra_signature=header_values,
)
def test_arbitrary_requests_never_500_and_never_store_invalid(
    client, redis_client, body, sign_it, content_type, extra_signature
) -> None:
    """Whatever arrives, the answer is a 2xx/4xx with JSON, and only valid signed envelopes are stored."""
    from webhook_service.signature import sign
    from workers.core.errors import EventError
    from workers.ncs.envelope import decode_envelope

    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if sign_it:
        headers["Agora-Signature-V2"] = sign(body, NCS_SECRET.encode())
    elif extra_signature is not None:
        headers["Agora-Signature-V2"] = extra_signature
    stored_before = len(inbox_entries(redis_client))
    response = client.post(URL, data=body, headers=headers)
    assert response.status_code in (200, 400, 401, 413, 415)
    assert response.is_json
    stored_after = len(inbox_entries(redis_client))
    if response.status_code == 200:
        assert sign_it and content_type is not None
        assert content_type.split(";")[0].strip().lower() == "application/json"  # media types ignore case
        decode_envelope(body)  # raises if an invalid envelope was let through
        assert stored_after - stored_before in (0, 1)  # 0 only for a duplicate
    else:
        assert stored_after == stored_before
        if response.status_code == 400:
            with pytest.raises(EventError):
                decode_envelope(body)
