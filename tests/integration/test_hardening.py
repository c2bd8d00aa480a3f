"""Issue 10, first list: nothing a client sends gets a 500, reaches Redis key names unchecked, or blocks a drain.

Every test here failed before the hardening (the 500s as raised exceptions or 500 answers, the poison
callback as a drain that raised on every run). Each also checks that nothing was stored or queued for a
refused request, and the autouse fixture checks that the catch-all 500 handler was never reached.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue

from tests.support.factories import body_of, event, signed_headers
from tests.support.service import NCS_SECRET, with_default_storage
from workers.core import schema
from workers.core.config import Settings
from workers.core.errors import EventError
from workers.jobs import drain_batch
from workers.ncs.envelope import decode_envelope
from workers.ncs.store import read_session
from workers.recordings.store import RecordingSpec, build_request

DEEP = 1_000  # msgspec gives up (RecursionError) at about this many levels


def deep(levels: int = DEEP) -> Any:
    """A JSON value nesting ``levels`` arrays and objects (about 6 KB as text)."""
    value: Any = 1
    for level in range(levels):
        value = [value] if level % 2 else {"a": value}
    return value


def deep_text(levels: int = DEEP) -> str:
    """The same as raw JSON text (``json.dumps`` itself refuses to nest that deep)."""
    return '{"a":[' * (levels // 2) + "1" + "]}" * (levels // 2)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_default_storage(settings)


@pytest.fixture(autouse=True)
def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Client input never reaches the catch-all 500 handler (it logs every error it answers)."""
    with caplog.at_level(logging.ERROR, logger="webhook_service"):
        yield
    unhandled = [r for r in caplog.records if r.name == "webhook_service.http_errors"]
    assert not unhandled, [r.getMessage() for r in unhandled]


def post_json(client: FlaskClient, url: str, text: str, auth: dict[str, str]) -> Any:
    return client.post(url, data=text, headers={**auth, "Content-Type": "application/json"})


def nothing_stored(redis_client: redis.Redis) -> bool:
    return (
        redis_client.zcard(schema.RECORDINGS_INDEX) == 0
        and Queue(schema.DEFAULT_QUEUE, connection=redis_client).count == 0
    )


def created(client: FlaskClient, auth: dict[str, str], **body: Any) -> str:
    response = client.post("/v1/recordings", json={"cname": "room", "mode": "mix", **body}, headers=auth)
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["id"])


# --- 500s on deep JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        deep_text(),
        '{"cname":"a","mode":"mix","recordingConfig":' + deep_text() + "}",
        '{"cname":"a","mode":"mix","recordingConfig":' + deep_text(900) + "}",  # decodes, still too deep
        json.dumps({"cname": "a", "mode": "mix", "storage": deep(40)}),
    ],
    ids=["whole-body", "in-a-field", "just-decodable", "40-levels"],
)
def test_deep_json_on_create_is_a_400(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis, text: str
) -> None:
    """A body nesting ~1,000 levels was a 500 (RecursionError); now a JSON 400 naming the field."""
    response = post_json(client, "/v1/recordings", text, auth)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["code"] in ("invalid_json", "invalid_request") and error["field"]
    assert nothing_stored(redis_client)


@pytest.mark.parametrize("kind", ["update", "layout"])
@pytest.mark.parametrize("levels", [DEEP, 900])
def test_deep_json_on_update_and_layout_is_a_400(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis, kind: str, levels: int
) -> None:
    """The same nesting on /update and /layout answered 500; now 400, and no command is queued."""
    recording_id = created(client, auth)
    for text in (deep_text(levels), '{"streamSubscribe":' + deep_text(levels) + "}"):
        response = post_json(client, f"/v1/recordings/{recording_id}/{kind}", text, auth)
        assert response.status_code == 400, response.get_data(as_text=True)[:300]
        assert response.get_json()["error"]["field"]
    assert redis_client.llen(schema.recording_commands(recording_id)) == 0


def test_deep_signed_callback_is_a_json_400(client: FlaskClient, redis_client: redis.Redis) -> None:
    """A correctly signed callback nesting ~1,000 levels got gunicorn's HTML 500; now a JSON 400, not stored."""
    before = redis_client.dbsize()
    for levels in (DEEP, 900, 100):
        envelope = event(40, notice_id=f"deep-{levels}")
        text = body_of(envelope).decode().replace('"details":{', '"details":{"x":' + deep_text(levels) + ",")
        body = text.encode()
        response = client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET))
        assert response.status_code == 400, (levels, response.get_data(as_text=True)[:300])
        assert response.is_json and "deep" in response.get_json()["error"]["message"]
    assert redis_client.dbsize() == before


def test_decode_envelope_refuses_deep_bodies_with_event_error() -> None:
    """The envelope decoder turns msgspec's RecursionError (and anything too deep to show) into EventError."""
    for levels in (DEEP, 5 * DEEP, 200):
        raw = (
            '{"noticeId":"n","productId":3,"eventType":40,"notifyMs":1,"payload":{"x":'
            + deep_text(levels)
            + "}}"
        ).encode()
        with pytest.raises(EventError, match="deep"):
            decode_envelope(raw)


# --- maxDurationSeconds overflow ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [300_000_000_000, 2**63, 10**30, 10**400, -1, 0, 2_592_001, 1.5, "3600", True],
    ids=[
        "3e11",
        "2^63",
        "1e30",
        "1e400",
        "negative",
        "zero",
        "30-days-and-a-second",
        "float",
        "string",
        "bool",
    ],
)
def test_max_duration_out_of_range_is_a_400_before_anything_is_stored(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis, value: Any
) -> None:
    """maxDurationSeconds 300000000000 overflowed after the recording was stored and queued; now a 400 first."""
    text = '{"cname":"a","mode":"mix","maxDurationSeconds":' + json.dumps(value) + "}"
    response = post_json(client, "/v1/recordings", text, auth)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["field"] == "maxDurationSeconds"
    assert nothing_stored(redis_client)


def test_max_duration_bounds_are_accepted(client: FlaskClient, auth: dict[str, str]) -> None:
    """The two ends of the documented range are valid."""
    created(client, auth, maxDurationSeconds=1)
    created(client, auth, maxDurationSeconds=2_592_000)


# --- poison callback -------------------------------------------------------------------------------------


def test_poison_callback_is_dead_lettered_and_later_callbacks_are_applied(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    """A signed callback nesting ~1,000 levels, stored in the inbox (as the old receiver did), used to kill
    every drain of its partition; now it goes to dead letters and the callbacks after it are applied."""
    partition = schema.partition_of("room1")
    poison = body_of(event(40, notice_id="poison", sid="sid-p")).decode()
    poison = poison.replace('"details":{', '"details":{"x":' + deep_text() + ",")
    redis_client.xadd(schema.inbox(partition), {"n": "poison", "b": poison.encode()})
    also_deep = body_of(event(41, notice_id="deep-but-decodable", sid="sid-p")).decode()
    also_deep = also_deep.replace('"details":{', '"details":{"x":' + deep_text(900) + ",")
    redis_client.xadd(schema.inbox(partition), {"n": "deep-but-decodable", "b": also_deep.encode()})
    for notice_id in ("after-1", "after-2"):
        body = body_of(event(40, notice_id=notice_id, sid="sid-p"))
        assert (
            client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET)).status_code
            == 200
        )
    assert drain_batch(redis_client, partition, max_events=50, retention_seconds=3600) == 4
    dead = redis_client.xrange(schema.DEAD_LETTERS)
    assert [fields[b"b"] for _, fields in dead] == [poison.encode(), also_deep.encode()]
    assert all(b"deep" in fields[b"reason"] for _, fields in dead)
    assert all(
        fields[b"kind"] == b"callback" and fields[b"partition"] == str(partition).encode()
        for _, fields in dead
    )
    stats = redis_client.hgetall(schema.STATS)
    assert stats[b"dead_lettered"] == stats[b"dead_lettered:callback"] == b"2"  # counted as every other kind
    view = read_session(redis_client, "sid-p")
    assert view is not None and [e["noticeId"] for e in view.events] == ["after-1", "after-2"]
    assert drain_batch(redis_client, partition, max_events=50, retention_seconds=3600) == 0


def test_a_callback_that_cannot_be_planned_is_dead_lettered(
    client: FlaskClient, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If applying one event to its session raises, that event is dead-lettered and the others applied."""
    import workers.ncs.store as session_store

    real_apply = session_store.apply_event

    def apply_event(state: Any, event: Any) -> Any:
        if event.notice_id == "breaks-planning":
            raise ValueError("cannot apply this one")
        return real_apply(state, event)

    monkeypatch.setattr(session_store, "apply_event", apply_event)
    partition = schema.partition_of("room1")
    for notice_id in ("before", "breaks-planning", "after"):
        body = body_of(event(40, notice_id=notice_id, sid="sid-q"))
        assert (
            client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET)).status_code
            == 200
        )
    assert drain_batch(redis_client, partition, max_events=50, retention_seconds=3600) == 3
    [(_, fields)] = redis_client.xrange(schema.DEAD_LETTERS)
    assert b'"breaks-planning"' in fields[b"b"] and b"cannot apply this one" in fields[b"reason"]
    view = read_session(redis_client, "sid-q")
    assert view is not None and [e["noticeId"] for e in view.events] == ["before", "after"]


# --- ids from the URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [":lock", ":timeline", ":commands", ":queued", ":found", "%3Alock"])
@pytest.mark.parametrize("action", ["", "/events", "/files", "/stop"])
def test_recording_ids_with_separators_are_404(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis, suffix: str, action: str
) -> None:
    """``<id>:lock`` answered 500 while a worker held the lock, ``<id>:timeline`` a false 503: now 404."""
    recording_id = created(client, auth)
    redis_client.set(schema.recording_lock(recording_id), "worker-token", px=60_000)
    redis_client.set(schema.recording_queued(recording_id), "1")
    redis_client.sadd(schema.recording_found(recording_id), "sid")
    redis_client.rpush(schema.recording_commands(recording_id), b'{"op":"stop"}')
    method = client.post if action == "/stop" else client.get
    response = method(f"/v1/recordings/{recording_id}{suffix}{action}", headers=auth)
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"] == {
        "code": "not_found",
        "message": response.get_json()["error"]["message"],
        "field": "id",
    }


@pytest.mark.parametrize(
    "bad_id",
    ["rec_" + "0" * 19, "rec_" + "0" * 21, "REC_" + "0" * 20, "rec_" + "g" * 20, "x" * 5000, "rec_:"],
)
def test_recording_ids_not_in_the_format_are_404(
    client: FlaskClient, auth: dict[str, str], bad_id: str
) -> None:
    """Anything but ``rec_`` and 20 hex digits is unknown, without asking Redis."""
    for suffix in ("", "/events", "/files"):
        response = client.get(f"/v1/recordings/{bad_id}{suffix}", headers=auth)
        assert response.status_code == 404 and response.get_json()["error"]["field"] == "id"
    for suffix in ("/stop", "/update", "/layout"):
        response = client.post(f"/v1/recordings/{bad_id}{suffix}", json={}, headers=auth)
        assert response.status_code == 404 and response.get_json()["error"]["field"] == "id"


@pytest.mark.parametrize("suffix", [":order", ":events", ":semantic", "%3Aorder"])
@pytest.mark.parametrize("action", ["", "/events"])
def test_sids_with_separators_are_404(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis, suffix: str, action: str
) -> None:
    """``/v1/sessions/<sid>:order`` answered a false 503 (a sorted set read as a hash); now 404."""
    body = body_of(event(40, notice_id="n-1", sid="sid-x"))
    assert (
        client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET)).status_code == 200
    )
    drain_batch(redis_client, schema.partition_of("room1"), max_events=50, retention_seconds=3600)
    assert client.get(f"/v1/sessions/sid-x{action}", headers=auth).status_code == 200
    response = client.get(f"/v1/sessions/sid-x{suffix}{action}", headers=auth)
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["field"] == "sid"


def test_long_sids_are_404(client: FlaskClient, auth: dict[str, str]) -> None:
    """Sids longer than 128 characters cannot exist."""
    response = client.get("/v1/sessions/" + "a" * 129, headers=auth)
    assert response.status_code == 404 and response.get_json()["error"]["field"] == "sid"


# --- bounds on every other input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cname": "a" * 2000, "mode": "web", "web": {"url": "https://x"}}, "cname"),
        ({"cname": "a", "mode": "mix", "token": "t" * 5000}, "token"),
        ({"cname": "a", "mode": "mix", "uid": "1" * 500}, "uid"),
        ({"cname": "a", "mode": "m" * 10_000}, "mode"),
        (
            {"cname": "a", "mode": "mix", "recordingConfig": {"maxIdleTime": 10**30}},
            "recordingConfig.maxIdleTime",
        ),
        (
            {"cname": "a", "mode": "mix", "recordingConfig": {"maxIdleTime": 10**400}},
            "recordingConfig.maxIdleTime",
        ),
        (
            {"cname": "a", "mode": "mix", "recordingConfig": {"subscribeAudioUids": ["1"] * 10_000}},
            "recordingConfig.subscribeAudioUids",
        ),
        (
            {"cname": "a", "mode": "mix", "recordingConfig": {f"k{i}": 1 for i in range(1000)}},
            "recordingConfig",
        ),
        (
            {"cname": "a", "mode": "mix", "storage": {"vendor": 1, "region": 0, "bucket": "b" * 5_000}},
            "storage.bucket",
        ),
        (
            {
                "cname": "a",
                "mode": "mix",
                "storage": {
                    "vendor": 1,
                    "region": 0,
                    "bucket": "b",
                    "accessKey": "k",
                    "secretKey": "s",
                    "stsToken": "t",
                    "stsExpiration": 2**64,
                },
            },
            "storage.stsExpiration",
        ),
        ({"cname": "a", "mode": "web", "web": {"url": "https://x", "rtmpUrls": "rtmp://a"}}, "web.rtmpUrls"),
        ({"cname": "a", "mode": "web", "web": {"url": "https://x", "rtmpUrls": [7]}}, "web.rtmpUrls[0]"),
    ],
    ids=[
        "cname-huge",
        "token-huge",
        "uid-huge",
        "mode-huge",
        "int-1e30",
        "int-1e400",
        "list-huge",
        "object-huge",
        "string-huge",
        "int-2^64",
        "rtmpUrls-string",
        "rtmpUrls-number",
    ],
)
def test_huge_and_out_of_range_values_are_400_naming_the_field(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis, body: dict[str, Any], field: str
) -> None:
    """Strings, lists, objects and numbers past their bounds are refused naming the field; nothing stored."""
    response = client.post("/v1/recordings", json=body, headers=auth)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["field"] == field, response.get_json()
    assert nothing_stored(redis_client)


def test_lone_surrogates_are_a_400(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    """JSON can escape a lone surrogate, which no UTF-8 encoder takes (cname check, Redis): a 400."""
    for text in ('{"cname":"\\ud800","mode":"mix"}', '{"cname":"a","mode":"mix","token":"\\udfff"}'):
        response = post_json(client, "/v1/recordings", text, auth)
        assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert nothing_stored(redis_client)


def test_body_size_and_media_type(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    """Bodies above the API's cap are 413, non-JSON 415, empty or broken JSON 400: all JSON errors."""
    huge = json.dumps({"cname": "a", "mode": "mix", "token": "t" * 200_000})
    assert post_json(client, "/v1/recordings", huge, auth).status_code == 413
    over_flask_cap = "[" + "1," * 600_000 + "1]"
    assert post_json(client, "/v1/recordings", over_flask_cap, auth).status_code == 413
    assert (
        client.post("/v1/recordings", data="x", headers={**auth, "Content-Type": "text/plain"}).status_code
        == 415
    )
    for text in ("", "nul", '{"cname":', "\xff"):
        response = post_json(client, "/v1/recordings", text, auth)
        assert response.status_code == 400 and response.get_json()["error"]["field"] == "body"
    for text in ("[]", "1", '"x"', "null"):
        response = post_json(client, "/v1/recordings", text, auth)
        assert response.status_code == 400 and response.get_json()["error"]["field"] == "body"
    assert nothing_stored(redis_client)


def test_update_and_layout_bounds(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    """Changes get the same bounds: huge lists, strings and numbers name their field; no command queued."""
    recording_id = created(client, auth)
    cases = [
        (
            "update",
            {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1"] * 1_000}}},
            "streamSubscribe.audioUidList.subscribeAudioUids",
        ),
        ("update", {"storageConfig": {"vendor": 10**30}}, "storageConfig.vendor"),
        ("layout", {"mixedVideoLayout": 2**64}, "mixedVideoLayout"),
        ("layout", {"backgroundColor": "#" * 5_000}, "backgroundColor"),
        ("layout", {"backgroundConfig": [{"uid": "1", "image_url": "https://x"}] * 1000}, "backgroundConfig"),
        ("update", [], "body"),
        ("layout", "x", "body"),
    ]
    for kind, body, field in cases:
        response = client.post(f"/v1/recordings/{recording_id}/{kind}", json=body, headers=auth)
        assert response.status_code == 400, (kind, response.get_data(as_text=True)[:300])
        assert response.get_json()["error"]["field"] == field, response.get_json()
    assert redis_client.llen(schema.recording_commands(recording_id)) == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-1", "limit"),
        ("limit=1e3", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("cursor=x", "cursor"),
        ("cursor=-5", "cursor"),
        ("cursor=" + "9" * 5000, "cursor"),
        ("cursor=99999999999999999999", "cursor"),
        ("cursor=1e400", "cursor"),
        ("state=nope", "state"),
        ("state=" + "s" * 5000, "state"),
        ("cname=" + "c" * 5000, "cname"),
    ],
)
def test_listing_query_parameters_are_bounded(
    client: FlaskClient, auth: dict[str, str], query: str, field: str
) -> None:
    """limit, cursor, state and cname out of bounds are a 400 naming the parameter (cursor was a false 503)."""
    response = client.get(f"/v1/recordings?{query}", headers=auth)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["field"] == field


def test_listing_bounds_are_accepted(client: FlaskClient, auth: dict[str, str]) -> None:
    """The ends of each range are valid."""
    created(client, auth)
    for query in (
        "limit=1",
        "limit=200",
        "cursor=0",
        f"cursor={2**63 - 1}",
        "cname=" + "c" * 1024,
        "state=pending",
    ):
        response = client.get(f"/v1/recordings?{query}", headers=auth)
        assert response.status_code == 200, (query, response.get_json())


def test_build_request_bounds_for_direct_callers(settings: Settings) -> None:
    """The store refuses what the API refuses, for callers that build specs in code."""
    from workers.agora import AgoraRequestError

    spec = RecordingSpec(cname="a", mode="mix", recordingConfig=deep(50))
    with pytest.raises(AgoraRequestError) as caught:
        build_request(spec, settings)
    assert caught.value.field.startswith("recordingConfig")
    with pytest.raises(AgoraRequestError) as caught:
        build_request(RecordingSpec(cname="a", mode="mix", maxDurationSeconds=300_000_000_000), settings)
    assert caught.value.field == "maxDurationSeconds"


def test_unexpected_errors_are_json_500_without_traceback(
    app: Flask, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A true bug answers a JSON 500 without details (the traceback goes to the log), in Flask and in the
    receiver alike."""
    import webhook_service.api.ncs as receiver
    import webhook_service.api.recordings as recordings_api

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(recordings_api, "list_recordings", broken)
    monkeypatch.setattr(receiver, "decode_envelope", broken)
    client = app.test_client()
    for response in (
        client.get("/v1/recordings", headers=auth),
        client.post("/webhooks/agora", data=b"{}", headers=signed_headers(b"{}", NCS_SECRET)),
    ):
        assert response.status_code == 500 and response.is_json
        assert response.get_json()["error"]["code"] == "internal_error"
        assert "secret detail" not in response.get_data(as_text=True)
        assert "Traceback" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 2 and all(r.exc_info for r in logged)
    caplog.clear()  # expected here: the autouse check is about client input


def test_every_v1_operation_of_the_document_needs_a_token(client: FlaskClient, auth: dict[str, str]) -> None:
    """Every /v1 operation the document lists answers a JSON 401 with a challenge without a valid token,
    whatever the id (Schemathesis' own ignored_auth check does not run in-process)."""
    from webhook_service.api.openapi import DOCUMENT

    recording_id = created(client, auth)
    for path, operations in DOCUMENT["paths"].items():
        if not path.startswith("/v1/"):
            continue
        url = path.replace("{id}", recording_id).replace("{sid}", "sid-1")
        for method in operations:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                response = client.open(url, method=method.upper(), json={}, headers=headers)
                assert response.status_code == 401, (method, url, response.status_code)
                assert response.get_json()["error"]["code"] == "unauthorized"
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
