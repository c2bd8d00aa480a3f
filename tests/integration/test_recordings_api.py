"""The management API in-process against real Redis: validation, idempotency, listing, commands, no secrets."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue

from tests.support.service import with_default_storage
from webhook_service import create_app
from workers.core import schema
from workers.core.config import Settings

STORAGE_SECRET = "api-test-storage-secret"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_default_storage(settings, STORAGE_SECRET)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


def create(client: FlaskClient, auth: dict[str, str], body: dict[str, Any], **headers: str) -> Any:
    return client.post("/v1/recordings", json=body, headers={**auth, **headers})


def test_create_answers_202_and_queues_the_first_step(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    """A valid request is stored as pending and an advance job is queued; storage defaults from the environment."""
    response = create(client, auth, {"cname": "class7", "mode": "mix", "maxDurationSeconds": 3600})
    assert response.status_code == 202
    body = response.get_json()
    assert (
        body["state"] == "pending" and body["desiredState"] == "recording" and body["id"].startswith("rec_")
    )
    assert response.headers["Location"] == f"/v1/recordings/{body['id']}"
    masked = {"vendor": 1, "region": 0, "bucket": "bucket", "accessKey": "***", "secretKey": "***"}
    assert body["config"]["storageConfig"] == masked  # keys masked, not removed: one sees they are set
    jobs = Queue(schema.DEFAULT_QUEUE, connection=redis_client).jobs
    assert [(j.func_name, j.args) for j in jobs] == [("workers.jobs.advance_recording", (body["id"],))]
    stored = redis_client.get(schema.recording(body["id"]))
    assert stored is not None and STORAGE_SECRET.encode() in stored  # kept server-side to start sessions


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "mix"}, "cname"),
        ({"cname": "a", "mode": "audio"}, "mode"),
        ({"cname": "a" * 70, "mode": "mix"}, "cname"),
        ({"cname": "a", "mode": "mix", "uid": "0"}, "uid"),
        ({"cname": "a", "mode": "mix", "recordingConfig": {"maxIdleTime": 1}}, "recordingConfig.maxIdleTime"),
        (
            {"cname": "a", "mode": "mix", "recordingConfig": {"maxIdleTime": "long"}},
            "recordingConfig.maxIdleTime",
        ),
        (
            {"cname": "a", "mode": "individual", "recordingFileConfig": {"avFileType": ["hls", "mp4"]}},
            "recordingFileConfig.avFileType",
        ),
        ({"cname": "a", "mode": "web"}, "web"),
        ({"cname": "a", "mode": "web", "web": {"url": "ftp://x"}}, "web.url"),
        (
            {"cname": "a", "mode": "web", "web": {"url": "https://x", "rtmpUrls": ["rtmp://a", "rtmp://b"]}},
            "web.rtmpUrls",
        ),
        (
            {
                "cname": "a",
                "mode": "mix",
                "storage": {"vendor": 4, "region": 0, "bucket": "b", "accessKey": "k", "secretKey": "s"},
            },
            "storage.vendor",
        ),
        ({"cname": "a", "mode": "mix", "maxDurationSeconds": 0}, "maxDurationSeconds"),
        ({"cname": "a", "mode": "mix", "surprise": True}, "surprise"),
    ],
)
def test_invalid_requests_name_the_field(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis, body: dict[str, Any], field: str
) -> None:
    """Bad input is a 400 naming the field; nothing is stored or queued."""
    response = create(client, auth, body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["field"] == field
    assert redis_client.zcard(schema.RECORDINGS_INDEX) == 0
    assert Queue(schema.DEFAULT_QUEUE, connection=redis_client).count == 0


def test_no_storage_anywhere_is_a_400(client: FlaskClient, auth: dict[str, str], settings: Settings) -> None:
    """Without a storage in the request or the environment the API says which field is missing."""
    app = create_app(dataclasses.replace(settings, storage_bucket="", storage_vendor=None))
    response = app.test_client().post("/v1/recordings", json={"cname": "a", "mode": "mix"}, headers=auth)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "storage"


def test_bad_json_and_content_type(client: FlaskClient, auth: dict[str, str]) -> None:
    """Not JSON: 415; broken JSON: 400; both JSON error bodies."""
    assert client.post("/v1/recordings", data="cname=a", headers=auth).status_code == 415
    broken = client.post("/v1/recordings", data="{", headers={**auth, "Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.get_json()["error"]["code"] == "invalid_json"


def test_idempotency_key_returns_the_same_recording(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    """Retrying with the same Idempotency-Key returns the first recording and queues nothing new."""
    first = create(client, auth, {"cname": "a", "mode": "mix"}, **{"Idempotency-Key": "k-1"})
    again = create(client, auth, {"cname": "a", "mode": "mix"}, **{"Idempotency-Key": "k-1"})
    other = create(client, auth, {"cname": "a", "mode": "mix"}, **{"Idempotency-Key": "k-2"})
    assert first.get_json()["id"] == again.get_json()["id"] != other.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert redis_client.zcard(schema.RECORDINGS_INDEX) == 2


def test_secrets_never_come_back(client: FlaskClient, auth: dict[str, str]) -> None:
    """Storage keys, STS and RTC tokens given in the request never appear in any answer."""
    storage = {
        "vendor": 1,
        "region": 0,
        "bucket": "b",
        "accessKey": "AK-given",
        "secretKey": "SK-given",
        "stsToken": "STS-given",
        "stsExpiration": 1900000000,
    }
    created = create(
        client, auth, {"cname": "a", "mode": "mix", "token": "RTC-given", "storage": storage}
    ).get_json()
    texts = [
        client.get(f"/v1/recordings/{created['id']}", headers=auth).get_data(as_text=True),
        client.get("/v1/recordings", headers=auth).get_data(as_text=True),
        client.get(f"/v1/recordings/{created['id']}/events", headers=auth).get_data(as_text=True),
        str(created),
    ]
    for secret in ("AK-given", "SK-given", "STS-given", "RTC-given"):
        assert not any(secret in text for text in texts)


def test_list_filters_and_paginates(client: FlaskClient, auth: dict[str, str]) -> None:
    """Newest first, filtered by cname and state, page by page through nextCursor."""
    ids = [create(client, auth, {"cname": f"room{i % 2}", "mode": "mix"}).get_json()["id"] for i in range(5)]
    page = client.get("/v1/recordings?limit=2", headers=auth).get_json()
    assert [r["id"] for r in page["recordings"]] == [ids[4], ids[3]]
    rest = client.get(f"/v1/recordings?limit=10&cursor={page['nextCursor']}", headers=auth).get_json()
    assert [r["id"] for r in rest["recordings"]] == [ids[2], ids[1], ids[0]] and rest["nextCursor"] is None
    room0 = client.get("/v1/recordings?cname=room0", headers=auth).get_json()["recordings"]
    assert [r["id"] for r in room0] == [ids[4], ids[2], ids[0]]
    assert client.get("/v1/recordings?state=recording", headers=auth).get_json()["recordings"] == []
    assert client.get("/v1/recordings?state=nope", headers=auth).get_json()["error"]["field"] == "state"


def test_stop_update_layout_are_commands(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    """stop, update and layout append checked commands for the worker; bad ones are 400 naming the field."""
    mix = create(client, auth, {"cname": "a", "mode": "mix"}).get_json()["id"]
    web = create(client, auth, {"cname": "w", "mode": "web", "web": {"url": "https://x"}}).get_json()["id"]
    layout = {
        "mixedVideoLayout": 3,
        "layoutConfig": [{"x_axis": 0, "y_axis": 0, "width": 0.5, "height": 0.5}],
    }
    assert client.post(f"/v1/recordings/{mix}/layout", json=layout, headers=auth).status_code == 202
    subscribe = {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["7"]}}}
    assert client.post(f"/v1/recordings/{mix}/update", json=subscribe, headers=auth).status_code == 202
    bad = client.post(
        f"/v1/recordings/{mix}/update", json={"webRecordingConfig": {"onhold": True}}, headers=auth
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "webRecordingConfig"
    assert (
        client.post(f"/v1/recordings/{web}/layout", json=layout, headers=auth).get_json()["error"]["field"]
        == "mode"
    )
    assert (
        client.post(
            f"/v1/recordings/{web}/update", json={"webRecordingConfig": {"onhold": True}}, headers=auth
        ).status_code
        == 202
    )
    assert client.post(f"/v1/recordings/{mix}/stop", headers=auth).status_code == 202
    assert client.post(f"/v1/recordings/{mix}/stop", headers=auth).status_code == 202  # idempotent
    late = client.post(f"/v1/recordings/{mix}/update", json=subscribe, headers=auth)
    assert late.status_code == 202  # the worker has not taken the stop yet; it drops changes after a stop
    commands = [msgspec.json.decode(c) for c in redis_client.lrange(schema.recording_commands(mix), 0, -1)]
    assert [c["op"] for c in commands] == ["layout", "update", "stop", "update"]  # a stop is queued once
    assert commands[0]["body"]["layoutConfig"][0] == {"x_axis": 0, "y_axis": 0, "width": 0.5, "height": 0.5}


def test_unknown_recording_and_missing_token(client: FlaskClient, auth: dict[str, str]) -> None:
    """404 naming the id; 401 without a token."""
    assert client.get("/v1/recordings/rec_nope", headers=auth).get_json()["error"]["field"] == "id"
    assert client.post("/v1/recordings/rec_nope/stop", headers=auth).status_code == 404
    assert client.get("/v1/recordings").status_code == 401


def test_openapi_document_lists_every_route(client: FlaskClient, app: Flask) -> None:
    """/openapi.json is OpenAPI 3 and describes every /v1/recordings route the app serves."""
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    served = {
        rule.rule.replace("<recording_id>", "{id}")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/recordings")
    }
    assert served <= set(document["paths"])


def test_pending_changes_are_capped_and_a_stop_is_queued_once(client, auth, redis_client) -> None:
    """Changes beyond 100 waiting for a worker get a 429 naming the recording; a stop always gets in, and
    repeated stops queue it once."""
    from workers.recordings.store import MAX_PENDING_COMMANDS

    recording_id = client.post("/v1/recordings", json={"cname": "busy", "mode": "mix"}, headers=auth).json[
        "id"
    ]
    change = {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["1"]}}}
    for _ in range(MAX_PENDING_COMMANDS):
        assert (
            client.post(f"/v1/recordings/{recording_id}/update", json=change, headers=auth).status_code == 202
        )
    refused = client.post(f"/v1/recordings/{recording_id}/update", json=change, headers=auth)
    assert (
        refused.status_code == 429
        and refused.json["error"]["field"] == "id"
        and refused.headers["Retry-After"]
    )
    for _ in range(3):
        assert client.post(f"/v1/recordings/{recording_id}/stop", headers=auth).status_code == 202
    ops = [
        msgspec.json.decode(c)["op"]
        for c in redis_client.lrange(schema.recording_commands(recording_id), 0, -1)
    ]
    assert ops.count("stop") == 1 and len(ops) == MAX_PENDING_COMMANDS + 1
