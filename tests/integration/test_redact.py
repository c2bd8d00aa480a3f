"""Redaction in the service (issue 10), one test per leak found, each failing before the fix: the API, the
timeline, notifications and the settings logged at start-up show no credential. The property tests of the rule
itself are ``tests/unit/test_redact.py``."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import sys
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue
from rq.registry import ScheduledJobRegistry

from workers.agora.errors import AgoraApiError
from workers.agora.outcomes import Outcome
from workers.core import schema
from workers.core.config import Settings, current_settings
from workers.recordings.notify import queue_notification
from workers.recordings.runner import Runner
from workers.recordings.store import load

# -- the leaks of issue 10, each failing before the fix -----------------------------------------------------

STORAGE = {"vendor": 1, "region": 0, "bucket": "b", "accessKey": "AK-GIVEN-1", "secretKey": "SK-GIVEN-1"}
PAGE_TOKEN = "PAGE-TOKEN-SECRET-1"
STREAM_KEY = "STREAM-KEY-SECRET-1"
SALT = "U0FMVC1TRUNSRVQtMQ=="
DECRYPT = "DECRYPT-SECRET-1"


def _create(client: FlaskClient, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/recordings", json=body, headers=auth)
    assert response.status_code == 202, response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


def test_get_list_and_notifications_hide_stream_key_salt_and_page_token(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    """Issue 10: ``config`` kept the CDN stream key (``rtmpUrl``), ``recordingConfig.salt`` and the query of
    ``web.url``, in GET, the list and every notification body. Now they are masked, the rest shown."""
    web = _create(
        client,
        auth,
        {
            "cname": "webpage",
            "mode": "web",
            "storage": STORAGE,
            "web": {
                "url": f"https://page.example/class?room=7&token={PAGE_TOKEN}",
                "rtmpUrls": [f"rtmp://push.cdn.example/live/{STREAM_KEY}"],
            },
        },
    )
    mix = _create(
        client,
        auth,
        {
            "cname": "encrypted",
            "mode": "mix",
            "storage": STORAGE,
            "recordingConfig": {"channelType": 0, "decryptionMode": 7, "secret": DECRYPT, "salt": SALT},
        },
    )
    texts = [
        json.dumps(web),
        json.dumps(mix),
        client.get("/v1/recordings", headers=auth).get_data(as_text=True),
    ]
    for created in (web, mix):
        texts.append(client.get(f"/v1/recordings/{created['id']}", headers=auth).get_data(as_text=True))
        recording = load(redis_client, created["id"])
        assert recording is not None
        queue_notification(redis_client, "recording.started", recording.public())
    bodies = [job.args[1] for job in Queue(schema.NOTIFY_QUEUE, connection=redis_client).jobs]
    assert len(bodies) == 2
    texts.extend(bodies)
    for secret in (PAGE_TOKEN, STREAM_KEY, SALT, DECRYPT, "AK-GIVEN-1", "SK-GIVEN-1"):
        assert not any(secret in text for text in texts), secret
    # masked, not removed: the shape says what was set
    shown = client.get(f"/v1/recordings/{web['id']}", headers=auth).get_json()["config"]
    services = shown["extensionServiceConfig"]["extensionServices"]
    assert services[0]["serviceParam"]["url"] == "https://page.example/class?***"
    assert services[1]["serviceParam"]["outputs"] == [{"rtmpUrl": "rtmp://push.cdn.example/live/***"}]
    assert shown["storageConfig"] == {**STORAGE, "accessKey": "***", "secretKey": "***"}
    config = client.get(f"/v1/recordings/{mix['id']}", headers=auth).get_json()["config"]
    assert config["recordingConfig"] == {
        "channelType": 0,
        "decryptionMode": 7,
        "secret": "***",
        "salt": "***",
    }
    # the stored request stays raw: a step sends it to Agora
    stored = redis_client.get(schema.recording(web["id"]))
    assert stored is not None and STREAM_KEY.encode() in stored and PAGE_TOKEN.encode() in stored


class EchoingAgora:
    """An Agora whose error answer echoes parts of the request (stream key, token, storage key)."""

    def acquire(self, *_args: Any, **_kwargs: Any) -> Any:
        raise AgoraApiError(
            endpoint="acquire",
            status=400,
            code=2,
            reason=f"invalid rtmpUrl rtmp://cdn.example/live/{STREAM_KEY} with token={PAGE_TOKEN} "
            f'and {{"secretKey": "SK-GIVEN-1"}}',
            request_id="req-1",
            outcome=Outcome.REJECTED,
        )


def test_timeline_entries_written_by_a_step_are_redacted(
    client: FlaskClient, auth: dict[str, str], redis_client: redis.Redis, settings: Settings
) -> None:
    """An Agora error echoing the request lands in the timeline (and its log line) redacted."""
    created = _create(client, auth, {"cname": "echo", "mode": "mix", "storage": STORAGE})
    runner_settings = dataclasses.replace(settings, agora_app_id="app", agora_rate_limit=0)
    Runner(redis_client, runner_settings, client=EchoingAgora()).advance(created["id"])
    raw = b"".join(redis_client.lrange(schema.recording_timeline(created["id"]), 0, -1)).decode()
    assert "invalid rtmpUrl rtmp://cdn.example/live/***" in raw
    for secret in (STREAM_KEY, PAGE_TOKEN, "SK-GIVEN-1"):
        assert secret not in raw
    events = client.get(f"/v1/recordings/{created['id']}/events", headers=auth).get_data(as_text=True)
    assert STREAM_KEY not in events


def test_settings_logged_at_start_up_show_urls_without_password_or_query(
    settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10: ``Settings`` was logged with ``NOTIFY_URL`` in full, so its password landed in the web and
    worker logs. Now the URL is shown without userinfo and query, in the web's and the worker's line."""
    from webhook_service import create_app

    notify_url = "https://hookuser:HOOK-PASSWORD-1@app.example/hooks/agora?sig=HOOK-QUERY-1"
    base_url = "https://proxy:PROXY-PASSWORD-1@proxy.example/agora?key=PROXY-QUERY-1"
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()
    create_app(
        dataclasses.replace(
            settings, notify_url=notify_url, notify_secret=secret, agora_api_base_url=base_url
        )
    )
    web_line = next(line for line in capsys.readouterr().out.splitlines() if "web app created" in line)

    for name, value in {
        "REDIS_URL": settings.redis_url, "APP_ENV": "test", "NOTIFY_URL": notify_url, "NOTIFY_SECRET": secret,
        "AGORA_API_BASE_URL": base_url, "AGORA_NCS_SECRETS": "ncs-secret-for-test",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    current_settings.cache_clear()
    try:
        if "workers.rq_config" in sys.modules:
            importlib.reload(sys.modules["workers.rq_config"])
        else:
            importlib.import_module("workers.rq_config")
    finally:
        current_settings.cache_clear()
    worker_line = next(
        line for line in capsys.readouterr().out.splitlines() if "worker settings loaded" in line
    )
    for line in (web_line, worker_line):
        for leaked in ("HOOK-PASSWORD-1", "HOOK-QUERY-1", "PROXY-PASSWORD-1", "PROXY-QUERY-1", "hookuser"):
            assert leaked not in line
        assert "https://***@app.example/hooks/agora?***" in line
        assert "https://***@proxy.example/agora?***" in line


def test_a_bad_notify_secret_is_retried_not_crashed(
    redis_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10: with ``NOTIFY_SECRET=whsec_abc`` (start-up refuses it now) every delivery raised outside the
    retry path. A secret that cannot be used is a failed attempt: the next one is scheduled."""
    import workers.recordings.notify as notify

    broken = dataclasses.replace(settings, notify_url="http://127.0.0.1:9/hook", notify_secret="whsec_abc")
    monkeypatch.setattr(notify, "current_settings", lambda: broken)

    class Job:
        connection = redis_client

    monkeypatch.setattr(notify, "get_current_job", lambda: Job())
    assert notify.send_notification("msg_1", '{"type":"recording.started"}', 0) is False
    scheduled = ScheduledJobRegistry(schema.NOTIFY_QUEUE, connection=redis_client)
    assert scheduled.count == 1
