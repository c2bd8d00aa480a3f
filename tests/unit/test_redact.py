"""Redaction by rule (issue 10): credentials never come back from the API, timelines, notifications or logs.

Property tests plant credentials (under credential-like names spelled every way, in URLs' userinfo, query and
fragment, as RTMP stream keys, as ``Bearer`` values, as ``name=value`` in text, as JSON inside a string) at
random places of random JSON, and check that none comes back from ``redact``, ``public_config``, a
notification body or a log line; values that carry no credential come back unchanged, in the same shape.
The leaks found in issue 10 have a test each in ``tests/integration/test_redact.py`` (the service end).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.core.logs import configure_logging
from workers.core.redact import is_credential_name, redact, redact_text, redact_url
from workers.recordings.model import Recording, public_config
from workers.recordings.notify import notification_body

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
