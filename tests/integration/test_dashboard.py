"""The dashboard through Flask's test client, against the real Redis of the fixtures: login, sessions, CSRF,
every page with data, bad ids."""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from tests.support.dashboard import STORAGE_SECRET, csrf_of, login, seed_recording
from tests.support.service import API_TOKEN, with_default_storage
from tests.support.wait import wait_until
from webhook_service import create_app
from workers import deadletters
from workers.core import schema
from workers.core.config import Settings
from workers.recordings.model import encode
from workers.recordings.store import RecordingSpec, create_recording, load, peek_commands


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_default_storage(settings, STORAGE_SECRET)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def signed_in(client: FlaskClient) -> FlaskClient:
    answer = login(client)
    assert answer.status_code == 303, answer.data
    return client


PAGES = [
    "/dashboard/",
    "/dashboard/?state=recording",
    "/dashboard/recordings/rec_0123456789abcdef0123",
    "/dashboard/dead-letters",
    "/dashboard/notifications",
    "/dashboard/system",
]


@pytest.mark.parametrize("path", PAGES)
def test_without_a_session_every_page_redirects_to_login_and_shows_no_data(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, path: str
) -> None:
    rid = seed_recording(redis_client, settings)
    answer = client.get(path.replace("rec_0123456789abcdef0123", rid))
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/dashboard/login")
    assert b"class-7b" not in answer.data and b"mix" not in answer.data
    if "/recordings/" not in path:  # (the detail page's own URL is in the redirect's next=)
        assert rid.encode() not in answer.data


def test_posts_without_a_session_redirect_and_change_nothing(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    rid = seed_recording(redis_client, settings)
    answer = client.post(f"/dashboard/recordings/{rid}/stop", data={"csrf": "x"})
    assert answer.status_code == 302
    assert peek_commands(redis_client, rid) == []


def test_wrong_token_is_refused(client: FlaskClient) -> None:
    for token in ("wrong-token", "", API_TOKEN + "x", API_TOKEN[:-1]):
        answer = login(client, token)
        assert answer.status_code == 401
        assert b"wrong token" in answer.data
        assert client.get("/dashboard/").status_code == 302


def test_login_sets_a_hardened_cookie_and_logout_ends_it(client: FlaskClient) -> None:
    answer = login(client)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/dashboard/"
    cookie = next(
        v for k, v in answer.headers.items() if k == "Set-Cookie" and v.startswith("acr_dashboard=")
    )
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # APP_ENV=test; production sets it
    assert API_TOKEN not in cookie
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert client.post("/dashboard/logout", data={"csrf": csrf_of(page.data)}).status_code == 303
    assert client.get("/dashboard/").status_code == 302


def test_production_cookie_is_secure(settings: Settings) -> None:
    import dataclasses

    app = create_app(dataclasses.replace(settings, environment="production", secret_key="k" * 40))
    client = app.test_client()
    answer = login(client)
    assert "Secure" in answer.headers["Set-Cookie"]
    assert app.config["SECRET_KEY"] == "k" * 40


def test_a_session_ends_when_its_token_is_removed(settings: Settings) -> None:
    import dataclasses

    first = create_app(dataclasses.replace(settings, secret_key="s" * 40))
    client = first.test_client()
    assert login(client).status_code == 303
    cookie = client.get_cookie("acr_dashboard", path="/dashboard")
    assert cookie is not None
    rotated = create_app(dataclasses.replace(settings, secret_key="s" * 40, api_tokens=("another-token",)))
    other = rotated.test_client()
    other.set_cookie("acr_dashboard", cookie.value, path="/dashboard")
    assert other.get("/dashboard/").status_code == 302


def test_login_without_csrf_is_refused(client: FlaskClient) -> None:
    answer = client.post("/dashboard/login", data={"token": API_TOKEN})
    assert answer.status_code == 403
    assert client.get("/dashboard/").status_code == 302


def test_csrf_less_posts_are_refused_and_change_nothing(
    signed_in: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    rid = seed_recording(redis_client, settings)
    for data in ({}, {"csrf": ""}, {"csrf": "forged-token"}):
        answer = signed_in.post(f"/dashboard/recordings/{rid}/stop", data=data)
        assert answer.status_code == 403
    assert peek_commands(redis_client, rid) == []
    assert not redis_client.exists(schema.recording_stop_asked(rid))
    entry = deadletters.add(redis_client, "drain_job", "boom", partition=1)
    assert signed_in.post(f"/dashboard/dead-letters/{entry}/retry").status_code == 403
    assert deadletters.get(redis_client, entry).retried is None  # type: ignore[union-attr]
    assert signed_in.post("/dashboard/logout").status_code == 403
    assert signed_in.get("/dashboard/").status_code == 200  # still signed in


def test_stop_through_the_form(signed_in: FlaskClient, redis_client: redis.Redis, settings: Settings) -> None:
    rid = seed_recording(redis_client, settings)
    page = signed_in.get(f"/dashboard/recordings/{rid}")
    assert b'id="stop"' in page.data
    answer = signed_in.post(f"/dashboard/recordings/{rid}/stop", data={"csrf": csrf_of(page.data)})
    assert answer.status_code == 303
    assert peek_commands(redis_client, rid) == [{"op": "stop"}]
    assert b"stop requested" in signed_in.get(f"/dashboard/recordings/{rid}").data


def test_recordings_page_shows_counts_rows_and_filters(
    signed_in: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    rid = seed_recording(redis_client, settings)
    other = seed_recording(redis_client, settings, cname="other-room")
    page = signed_in.get("/dashboard/")
    assert page.status_code == 200
    text = page.data.decode()
    for expected in (rid, other, "class-7b", "other-room", "mix", "recording", "1/3 uploaded, 1 backed up"):
        assert expected in text
    assert f'href="/dashboard/recordings/{rid}"' in text
    assert '<meta http-equiv="refresh"' in text
    assert re.search(r'data-state="recording">\s*2<', text), "both recording (in the metrics' index)"
    filtered = signed_in.get("/dashboard/?cname=other-room").data.decode()
    assert other in filtered and rid not in filtered
    assert rid not in signed_in.get("/dashboard/?state=failed").data.decode()
    assert signed_in.get("/dashboard/?state=nonsense").status_code == 400
    assert signed_in.get("/dashboard/?cursor=abc").status_code == 400


def test_recordings_page_paginates_newest_first(
    signed_in: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    spec = msgspec.convert({"cname": "paged", "mode": "mix"}, RecordingSpec)
    made = []
    for _ in range(55):
        made.append(create_recording(redis_client, settings, spec)[0].id)
        now_ms = int(time.time() * 1000)
        wait_until(lambda after=now_ms: int(time.time() * 1000) > after, interval=0.0002)  # one ms each
    first = signed_in.get("/dashboard/").data.decode()
    assert made[-1] in first and made[4] not in first
    assert first.index(made[-1]) < first.index(made[-2])
    cursor = re.search(r'href="([^"]*cursor=[0-9]+)"', first)
    assert cursor
    second = signed_in.get(cursor.group(1).replace("&amp;", "&")).data.decode()
    assert made[0] in second and made[-1] not in second


def test_recording_page_draws_the_timeline_and_lists_everything(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    rid = seed_recording(redis_client, settings, client=client)
    login(client)
    page = client.get(f"/dashboard/recordings/{rid}")
    assert page.status_code == 200
    text = page.data.decode()
    svg = text[text.index("<svg") : text.index("</svg>")]
    assert svg.count('class="session-bar"') == 2
    assert svg.count("mark mark-agora") == 6
    assert svg.count("mark mark-transition") == 4
    assert svg.count("mark mark-callback") == 4
    assert "#d62828" in svg  # the query answered 404 is marked as an error
    for expected in (
        "recorder_started", "recorder_joined", "acquire", "start", "query", "desired state", "res-" + "a" * 40,
        "exited_abnormally", f"{rid}/a.m3u8", "backed_up", "restarting after the session ended abnormally",
    ):  # fmt: skip
        assert expected in text, expected
    assert STORAGE_SECRET not in text  # the start's echoed storage key is redacted
    assert "test-storage-access-key" not in text


def test_bad_and_unknown_ids_are_404_pages(signed_in: FlaskClient, redis_client: redis.Redis) -> None:
    page = signed_in.get("/dashboard/")
    token = csrf_of(page.data)
    for path in (
        "/dashboard/recordings/nope",
        "/dashboard/recordings/rec_0123456789abcdef0123",
        "/dashboard/recordings/rec_0123456789ABCDEF0123",
        "/dashboard/recordings/" + "rec_" + "0" * 2000,
        "/dashboard/recordings/rec_%00",
        "/dashboard/notifications?recording=rec_bad",
    ):
        answer = signed_in.get(path)
        assert answer.status_code == 404, path
        assert b"<html" in answer.data
    for path in (
        "/dashboard/recordings/nope/stop",
        "/dashboard/recordings/rec_0123456789abcdef0123/stop",
        "/dashboard/dead-letters/x/retry",
        "/dashboard/dead-letters/1-1/retry",
        "/dashboard/notifications/msg_nope/redeliver",
        "/dashboard/notifications/msg_0123456789abcdef01234567/redeliver",
    ):
        assert signed_in.post(path, data={"csrf": token}).status_code == 404, path


def test_dead_letters_page_and_retry(signed_in: FlaskClient, redis_client: redis.Redis) -> None:
    entry = deadletters.add(
        redis_client, "drain_job", "boom: password=hunter2-secret", partition=3, job="job-1"
    )
    page = signed_in.get("/dashboard/dead-letters")
    assert page.status_code == 200
    text = page.data.decode()
    assert entry in text and "drain_job" in text and "Retry" in text
    answer = signed_in.post(f"/dashboard/dead-letters/{entry}/retry", data={"csrf": csrf_of(page.data)})
    assert answer.status_code == 303
    assert deadletters.get(redis_client, entry).retried is not None  # type: ignore[union-attr]
    assert "queued again" in signed_in.get("/dashboard/dead-letters").data.decode()
    assert signed_in.get("/dashboard/dead-letters?kind=nonsense").status_code == 400


def test_notifications_page_and_redeliver(
    signed_in: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    from workers.recordings import notify

    rid = seed_recording(redis_client, settings)
    recording = load(redis_client, rid)
    assert recording is not None
    body = notify.notification_body("recording.started", recording.public()).decode()
    message_id = "msg_" + "ab" * 12
    notify._update_delivery(redis_client, message_id, lambda _: notify._new_record(message_id, body), 3600)
    page = signed_in.get("/dashboard/notifications")
    text = page.data.decode()
    assert message_id in text and "recording.started" in text and "Redeliver" in text
    assert message_id in signed_in.get(f"/dashboard/notifications?recording={rid}").data.decode()
    answer = signed_in.post(
        f"/dashboard/notifications/{message_id}/redeliver", data={"csrf": csrf_of(page.data)}
    )
    assert answer.status_code == 303
    assert "redeliver" in signed_in.get("/dashboard/notifications").data.decode().lower()


def test_system_page(signed_in: FlaskClient, redis_client: redis.Redis, settings: Settings) -> None:
    seed_recording(redis_client, settings)
    text = signed_in.get("/dashboard/system").data.decode()
    assert 'id="redis" class="ok">up<' in text
    for expected in (
        "ncs",
        "default",
        "notify",
        "Oldest callback",
        "No worker is running",
        "recordings stored",
    ):
        assert expected in text, expected
    assert "<strong>0</strong> of 10 requests" in text  # AGORA_APP_ID is set: rate-limit use shown


def test_redis_down_is_a_page_not_a_500(settings: Settings, private_redis: Any) -> None:
    import dataclasses

    app = create_app(dataclasses.replace(settings, redis_url=private_redis.url))
    client = app.test_client()
    assert login(client).status_code == 303
    private_redis.stop()
    answer = client.get("/dashboard/recordings/rec_0123456789abcdef0123")
    assert answer.status_code == 503 and b"Redis is not answering" in answer.data
    assert client.get("/dashboard/").status_code == 503
    system = client.get("/dashboard/system")
    assert system.status_code == 200 and b"DOWN" in system.data


def test_page_text_is_escaped(signed_in: FlaskClient, redis_client: redis.Redis, settings: Settings) -> None:
    rid = seed_recording(redis_client, settings)
    recording = load(redis_client, rid)
    assert recording is not None
    recording.cname = "<script>x</script>"
    redis_client.set(schema.recording(rid), encode(recording))
    text = signed_in.get(f"/dashboard/recordings/{rid}").data.decode()
    assert "<script>x" not in text and "&lt;script&gt;x" in text
    assert "<script>x" not in signed_in.get("/dashboard/").data.decode()


def test_secret_key_is_required_in_production_and_never_echoed() -> None:
    from workers.core.config import ConfigError

    env = {
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "AGORA_NCS_SECRETS": "a-real-ncs-secret",
        "API_TOKENS": "a-production-token-0123456789",
    }
    with pytest.raises(ConfigError, match="SECRET_KEY is required in production"):
        Settings.from_env(env)
    with pytest.raises(ConfigError, match="SECRET_KEY") as short:
        Settings.from_env({**env, "SECRET_KEY": "too-short-secret"})
    assert "too-short-secret" not in str(short.value)
    key = "k" * 40
    settings = Settings.from_env({**env, "SECRET_KEY": key})
    assert settings.secret_key == key and key not in repr(settings)
    assert Settings.from_env({**env, "APP_ENV": "development"}).secret_key == ""  # a random one per process
