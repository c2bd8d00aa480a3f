"""Redaction by rule (issue 10): credentials never come back from the API, timelines, notifications or logs.

Property tests plant credentials (under credential-like names spelled every way, in URLs' userinfo, query and
fragment, as RTMP stream keys, as ``Bearer`` values, as ``name=value`` in text, as JSON inside a string) at
random places of random JSON, and check that none comes back from ``redact``, ``public_config``, a
notification body or a log line; values that carry no credential come back unchanged, in the same shape.
Then one test per leak found in issue 10, each failing before the fix.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue
from rq.registry import ScheduledJobRegistry

from workers.agora.errors import AgoraApiError
from workers.agora.outcomes import Outcome
from workers.core import schema
from workers.core.config import Settings, current_settings
from workers.core.logs import configure_logging
from workers.core.redact import is_credential_name, redact, redact_text, redact_url
from workers.recordings.model import Recording, public_config
from workers.recordings.notify import notification_body, queue_notification
from workers.recordings.runner import Runner
from workers.recordings.store import load

MARK = "Xq9SECRETq9X"  # every planted credential holds this; innocent values never do

# -- strategies ---------------------------------------------------------------------------------------------

# Names the rule must recognise, as words; spelled below in every usual way, with an innocent prefix or not.
CREDENTIAL_NAMES = [
    ["access", "key"],
    ["secret", "key"],
    ["sts", "token"],
    ["token"],
    ["salt"],
    ["secret"],
    ["password"],
    ["passwd"],
    ["api", "key"],
    ["auth", "token"],
    ["authorization"],
    ["client", "secret"],
    ["private", "key"],
    ["stream", "key"],
    ["signature"],
    ["credentials"],
    ["refresh", "token"],
    ["session", "token"],
    ["access", "key", "id"],
    ["key"],
    ["auth"],
    ["pwd"],
    ["cookie"],
]
# Names that only count as a separate last word (``awsSts``, ``db_pass``): never glued to a prefix.
WORD_NAMES = [["sts"], ["sig"], ["pass"], ["otp"], ["creds"]]
PREFIXES = ["", "aws", "my", "default", "agora", "customer", "storage", "x"]


def spell(words: list[str], style: str) -> str:
    if style == "camel":
        return words[0] + "".join(w.capitalize() for w in words[1:])
    if style == "pascal":
        return "".join(w.capitalize() for w in words)
    if style == "snake":
        return "_".join(words)
    if style == "screaming":
        return "_".join(words).upper()
    if style == "kebab":
        return "-".join(words)
    if style == "train":
        return "-".join(w.capitalize() for w in words)
    if style == "dotted":
        return ".".join(words)
    if style == "upper":
        return "".join(words).upper()
    return "".join(words)  # flat lower case


STYLES = ["camel", "pascal", "snake", "screaming", "kebab", "train", "dotted", "upper", "flat"]
SEPARATED = ["camel", "pascal", "snake", "screaming", "kebab", "train", "dotted"]


@st.composite
def credential_names(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(PREFIXES))
    if draw(st.booleans()):
        words = draw(st.sampled_from(CREDENTIAL_NAMES))
        style = draw(st.sampled_from(STYLES))
    else:
        words = draw(st.sampled_from(WORD_NAMES))
        style = draw(st.sampled_from(SEPARATED))
    return spell(([prefix] if prefix else []) + words, style)


URL_SAFE = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~", min_size=0, max_size=12
)
HOSTS = st.sampled_from(
    ["cdn.example.com", "127.0.0.1:8080", "push.live.example", "[::1]:1935", "app.example"]
)
PATHS = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8), max_size=3
)
SECRET_VALUES = st.builds(lambda a, b: a + MARK + b, URL_SAFE, URL_SAFE)
ANY_SECRET_VALUES = st.builds(lambda a, b: a + MARK + b, st.text(max_size=8), st.text(max_size=8))


@st.composite
def secret_urls(draw: st.DrawFn) -> str:
    """A URL carrying a credential in its userinfo, query, fragment or (RTMP) stream key."""
    host, path, secret = draw(HOSTS), "/".join(draw(PATHS)), draw(SECRET_VALUES)
    where = draw(st.sampled_from(["password", "user", "query", "fragment", "stream_key", "rtmp_query"]))
    scheme = draw(st.sampled_from(["https", "http", "redis", "rediss", "wss", "HTTPS"]))
    if where == "password":
        return f"{scheme}://{draw(URL_SAFE)}:{secret}@{host}/{path}"
    if where == "user":
        return f"{scheme}://{secret}@{host}/{path}"
    if where == "query":
        return f"{scheme}://{host}/{path}?{draw(URL_SAFE)}={secret}&{draw(URL_SAFE)}"
    if where == "fragment":
        return f"{scheme}://{host}/{path}#access_token={secret}"
    rtmp = draw(st.sampled_from(["rtmp", "rtmps", "RTMP"]))
    app = draw(st.sampled_from(["live", "app", "live2"]))
    if where == "stream_key":
        tail = draw(st.sampled_from(["", "/more", "/x/y"]))
        return f"{rtmp}://{host}/{app}/{secret}{tail}"
    return f"{rtmp}://{host}/{app}?streamKey={secret}"


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", max_size=20)


@st.composite
def secret_texts(draw: st.DrawFn) -> str:
    """A free text (an error message, a repr) holding a credential somewhere."""
    secret = draw(SECRET_VALUES)
    kind = draw(st.sampled_from(["url", "bearer", "named", "quoted", "json"]))
    if kind == "url":
        inner = draw(secret_urls())
    elif kind == "bearer":
        inner = f"{draw(st.sampled_from(['Authorization: ', '']))}Bearer {secret}"
    elif kind == "named":
        inner = f"{draw(credential_names())}{draw(st.sampled_from(['=', ': ', ':', ' = ']))}{secret}"
    elif kind == "quoted":
        inner = f"{{'{draw(credential_names())}': '{secret}', 'n': 1}}"
    else:
        inner = json.dumps({draw(credential_names()): secret, "mode": "mix"})
    return f"{draw(WORDS)} {inner} {draw(WORDS)}"


INNOCENT_KEYS = st.sampled_from(
    [
        "cname", "uid", "mode", "maxIdleTime", "streamTypes", "channelType", "videoStreamType",
        "subscribeAudioUids", "subscribeVideoUids", "streamMode", "audioProfile", "transcodingConfig", "width",
        "height", "fps", "bitrate", "mixedVideoLayout", "backgroundColor", "layoutConfig", "xAxis", "yAxis",
        "alpha", "renderMode", "avFileType", "captureInterval", "fileType", "vendor", "region", "bucket",
        "fileNamePrefix", "extensionParams", "sse", "tag", "serviceName", "errorHandlePolicy", "serviceParam",
        "videoWidth", "videoHeight", "maxRecordingHour", "readyTimeout", "onhold", "mobile", "stsExpiration",
        "decryptionMode", "resourceId", "sid", "noticeId", "eventType", "sequence", "sendts", "notifyMs",
        "msgName", "fileList", "fileName", "trackType", "mixedAllUser", "isPlayable", "sliceStartTime",
        "uploadingStatus", "url", "rtmpUrl", "outputs", "keyframe", "keyFrameInterval", "keyboardLayout",
        "author", "authority", "hosts", "posts", "statistics", "status", "reason", "requestId",
    ]
)  # fmt: skip
_MARKERS = ("key", "secret", "token", "pass", "pwd", "salt", "sig", "cred", "auth", "sts", "otp", "cookie",
            "bearer", "jwt")  # fmt: skip
RANDOM_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ_", min_size=1, max_size=12).filter(
    lambda k: not any(m in re.sub(r"[^a-z0-9]", "", k.lower()) for m in _MARKERS)  # as the rule reads names
)
KEYS = st.one_of(INNOCENT_KEYS, RANDOM_KEYS)
INNOCENT_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=":=@?#/\\\"'"), max_size=30
).filter(lambda s: not re.search(r"bearer|basic|eyJ", s, re.IGNORECASE) and MARK not in s)
INNOCENT_URLS = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{'/'.join(path)}",
    st.sampled_from(["https", "http", "rtmp", "rtmps"]),
    HOSTS,
    PATHS.filter(lambda p: len(p) <= 1),  # an RTMP URL with no stream key: the app name only
)
INNOCENT_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    INNOCENT_TEXT,
    INNOCENT_URLS,
)
INNOCENT_JSON = st.recursive(
    INNOCENT_SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=25,
)


def _planted_value(draw: st.DrawFn) -> Any:
    """A value holding a credential: under a credential-like name (any JSON inside), or a URL or a text."""
    kind = draw(st.sampled_from(["named", "named_nested", "url", "text"]))
    if kind == "named":
        secret: Any = draw(st.one_of(ANY_SECRET_VALUES, SECRET_VALUES))
        return {draw(credential_names()): secret}
    if kind == "named_nested":
        nested = draw(st.sampled_from(["list", "dict"]))
        secret = draw(ANY_SECRET_VALUES)
        inner: Any = [draw(INNOCENT_SCALARS), secret] if nested == "list" else {draw(KEYS): secret}
        return {draw(credential_names()): inner}
    if kind == "url":
        return draw(secret_urls())
    return draw(secret_texts())


@st.composite
def planted_json(draw: st.DrawFn) -> Any:
    """Random JSON with 1 to 4 credentials planted at random places (a dict entry, a list item, a value)."""
    tree = draw(st.dictionaries(KEYS, INNOCENT_JSON, max_size=4))
    for _ in range(draw(st.integers(1, 4))):
        planted = _planted_value(draw)
        # walk down a random path of the tree and plant there
        node: Any = tree
        for _depth in range(draw(st.integers(0, 4))):
            children = [
                v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, dict | list)
            ]
            if not children:
                break
            node = draw(st.sampled_from(children))
        if isinstance(node, dict):
            if isinstance(planted, dict) and draw(st.booleans()):
                node.update(planted)
            else:
                node[draw(KEYS)] = planted
        else:
            node.insert(draw(st.integers(0, len(node))), planted)
    return tree


def shape(value: Any) -> Any:
    """Keys and nesting only."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return None


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- the rule -----------------------------------------------------------------------------------------------


@given(planted_json())
@settings(max_examples=300, deadline=None)
def test_planted_credentials_never_come_back_from_redact(tree: Any) -> None:
    """Wherever a credential is planted and however its name is spelled, redact never shows it; the shape
    stays (same keys, same nesting) so one still sees that a value was set."""
    assert MARK in dump(tree)
    shown = redact(tree)
    assert MARK not in dump(shown)
    assert shape(shown) == shape(tree)
    assert MARK in dump(tree)  # a copy: the input is untouched


@given(INNOCENT_JSON)
@settings(max_examples=300, deadline=None)
def test_values_without_credentials_come_back_unchanged(tree: Any) -> None:
    """Agora's own field names, decoys (keyframe, author, hosts, stsExpiration), any text without a URL
    credential and URLs without userinfo, query or stream key are not touched."""
    assert redact(tree) == tree
    assert public_config(tree) == tree


@given(credential_names())
def test_every_spelling_of_a_credential_name_is_masked(name: str) -> None:
    """Strings and numbers under it become "***", inside objects and lists too; null, "" and booleans stay."""
    assert is_credential_name(name), name
    assert redact({name: "v", "n": 1}) == {name: "***", "n": 1}
    assert redact({name: 12345}) == {name: "***"}
    assert redact({name: ["a", {"u": "v", "on": True}, None]}) == {
        name: ["***", {"u": "***", "on": True}, None]
    }
    assert redact({name: None}) == {name: None} and redact({name: ""}) == {name: ""}


def test_credentials_in_free_text() -> None:
    """Bearer and Basic credentials, name=value pairs, reprs, JSON in a string and JWTs."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert redact_text("Authorization: Bearer abc.DEF-123") == "Authorization: *** ***"
    assert redact_text("sent Basic dXNlcjpwYXNz to it") == "sent Basic *** to it"
    assert redact_text("password=hunter2&mode=mix") == "password=***&mode=mix"
    assert redact_text("{'token': 'abc', 'uid': '1'}") == "{'token': '***', 'uid': '1'}"
    assert redact_text('{"secretKey": "a\\"b", "bucket": "x"}') == '{"secretKey": "***", "bucket": "x"}'
    assert redact_text(f"id_token {jwt} expired") == "id_token *** expired"
    assert redact_text("maxIdleTime: 30, keyframe=2") == "maxIdleTime: 30, keyframe=2"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host/p?t=1", "https://***@host/p?***"),
        ("https://host/p?t=1#frag", "https://host/p?***#***"),
        ("rtmp://cdn/live/STREAMKEY", "rtmp://cdn/live/***"),
        ("rtmps://cdn:443/live/STREAMKEY/x?y=1", "rtmps://cdn:443/live/***?***"),
        ("rtmp://cdn/live", "rtmp://cdn/live"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("http://127.0.0.1:8090", "http://127.0.0.1:8090"),
        ("https://app.example/hook", "https://app.example/hook"),
    ],
)
def test_urls_lose_userinfo_query_fragment_and_stream_key(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_text(f"failed to reach {url} (timeout)") == f"failed to reach {shown} (timeout)"


def test_agora_field_names() -> None:
    """Agora's credentials (storage keys, STS token, RTC token, decryption secret and salt) are masked;
    its other fields are not."""
    request = {
        "token": "RTC",
        "recordingConfig": {"channelType": 0, "decryptionMode": 7, "secret": "S", "salt": "SALT", "maxIdleTime": 30},
        "storageConfig": {
            "vendor": 1, "region": 0, "bucket": "b", "accessKey": "AK", "secretKey": "SK", "stsToken": "STS",
            "stsExpiration": 1900000000, "fileNamePrefix": ["a"], "extensionParams": {"sse": "aes256", "tag": "t"},
        },
    }  # fmt: skip
    assert redact(request) == {
        "token": "***",
        "recordingConfig": {"channelType": 0, "decryptionMode": 7, "secret": "***", "salt": "***", "maxIdleTime": 30},
        "storageConfig": {
            "vendor": 1, "region": 0, "bucket": "b", "accessKey": "***", "secretKey": "***", "stsToken": "***",
            "stsExpiration": 1900000000, "fileNamePrefix": ["a"], "extensionParams": {"sse": "aes256", "tag": "t"},
        },
    }  # fmt: skip


def test_deep_values_do_not_hit_the_recursion_limit() -> None:
    tree: dict[str, Any] = {}
    node = tree
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    node["token"] = MARK
    shown = redact(tree)
    for _ in range(5000):
        shown = shown["a"]
    assert shown == {"token": "***"}


# -- where it applies: public_config, notification bodies, log lines -----------------------------------------


def recording_with(request: dict[str, Any]) -> Recording:
    return Recording(id="rec_1", cname="c", mode="mix", uid="1", request=request, created_ms=1, updated_ms=1)


@given(planted_json())
@settings(max_examples=150, deadline=None)
def test_planted_credentials_never_in_public_config_or_a_notification_body(tree: Any) -> None:
    """What GET, the list and every notification show of the request (``config``)."""
    public = recording_with(tree).public()
    assert MARK not in msgspec.json.encode(public).decode()
    assert MARK not in notification_body("recording.started", public).decode()
    # a body built from anything (an error echoing the request in lastError, say) is redacted too
    assert MARK not in notification_body("recording.failed", {"lastError": tree}).decode()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The service's own log configuration, writing to a buffer."""
    saved = {name: logging.getLogger(name).handlers[:] for name in ("workers", "webhook_service")}
    levels = {name: logging.getLogger(name).level for name in saved}
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    yield stream
    for name, handlers in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).setLevel(levels[name])


@given(tree=planted_json(), text=secret_texts(), name=credential_names(), secret=SECRET_VALUES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_planted_credentials_never_in_a_log_line(
    log_stream: io.StringIO, tree: Any, text: str, name: str, secret: str
) -> None:
    """Message (with %-args), every ``extra`` field (a field named like a credential masked whole) and the
    traceback of a line written by the service's log configuration."""
    log_stream.seek(0)
    log_stream.truncate()
    log = logging.getLogger("workers.test_redact")
    log.info(
        "step %s failed: %s",
        "x",
        text,
        extra={"entry": tree, "safe_name": name, name.replace(".", "_"): secret},
    )
    try:
        raise ValueError(text)
    except ValueError:
        log.exception("boom", extra={"request": tree})
    lines = log_stream.getvalue().rstrip("\n").split("\n")  # not splitlines: \x85 is valid in a line
    assert len(lines) == 2
    for line in lines:
        assert MARK not in line
        json.loads(line)


def test_a_log_line_keeps_innocent_fields(log_stream: io.StringIO) -> None:
    logging.getLogger("workers.test_redact").info(
        "drained", extra={"partition": 3, "consumed": 12, "sid": "abc", "url": "https://host/x"}
    )
    line = json.loads(log_stream.getvalue())
    assert (line["msg"], line["partition"], line["consumed"], line["sid"], line["url"]) == (
        "drained", 3, 12, "abc", "https://host/x",
    )  # fmt: skip


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
        queue_notification(redis_client, "https://app.example/hook", "recording.started", recording.public())
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

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
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
