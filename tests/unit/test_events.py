"""Envelope validation (§1.2) and lenient payload reading (§1.3, §1.8)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.factories import TRANSCODER
from workers.core.errors import EventError
from workers.ncs.envelope import Envelope, decode_envelope, parse_event


def test_reference_example_with_extra_top_level_sid() -> None:
    """§1.8 (A)/(B): extra top-level fields are ignored; payload fields are read."""
    body = json.dumps(
        {
            "noticeId": "unique-id", "productId": 3, "eventType": 31, "notifyMs": 1234567890, "sid": "dup",
            "payload": {
                "cname": "channel_name", "uid": "999999999", "sid": "recording-session-id", "sequence": 0,
                "sendts": 1234567890, "serviceType": 2,
                "details": {"msgName": "uploaded", "fileList": [{"fileName": "a.m3u8"}], "status": 0},
            },
        }
    ).encode()  # fmt: skip
    event = parse_event(body, 5)
    assert (event.notice_id, event.event_type, event.sid, event.sequence) == (
        "unique-id",
        31,
        "recording-session-id",
        0,
    )
    assert event.name == "uploaded"
    assert event.details["fileList"][0]["fileName"] == "a.m3u8"
    assert event.raw == body and event.received_ms == 5


def test_string_typed_numbers_are_accepted() -> None:
    """Older payloads carry numbers as strings (sequence was a string before callback v1.3.0)."""
    body = b'{"noticeId":"n","productId":"3","eventType":"43","notifyMs":"17","payload":{"sid":"s","sequence":"7","uid":527841,"sendts":"9"}}'
    event = parse_event(body, 0)
    assert (event.product_id, event.event_type, event.notify_ms) == (3, 43, 17)
    assert (event.sequence, event.sendts, event.uid) == (7, 9, "527841")
    assert event.name == "recorder_audio_stream_state_changed"


def test_cloud_transcoder_event_without_sid() -> None:
    """Cloud Transcoder shares productId 3 and has no sid: valid, keyed by its task."""
    event = parse_event(json.dumps(TRANSCODER).encode(), 0)
    assert event.sid == "task:1234"
    assert event.name == "cloud_transcoder_started"


def test_unknown_event_and_product_are_valid() -> None:
    """Forward compatibility: unknown eventType / productId still parse."""
    event = parse_event(b'{"noticeId":"x","productId":99,"eventType":4242,"notifyMs":1,"payload":{}}', 0)
    assert event.name == "event_4242" and event.sid is None


def test_odd_payload_fields_become_none_not_errors() -> None:
    """A payload field of an unexpected type does not cost the whole event."""
    body = b'{"noticeId":"x","productId":3,"eventType":40,"notifyMs":1,"payload":{"sid":["a"],"sequence":"x","details":[]}}'
    event = parse_event(body, 0)
    assert (event.sid, event.sequence, event.details) == (None, None, {})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b"{", "not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (b"[]", "Expected `object`"),
        (b'{"productId":3,"eventType":1,"notifyMs":1,"payload":{}}', "noticeId"),
        (b'{"noticeId":"","productId":3,"eventType":1,"notifyMs":1,"payload":{}}', "noticeId"),
        (b'{"noticeId":true,"productId":3,"eventType":1,"notifyMs":1,"payload":{}}', "noticeId"),
        (b'{"noticeId":"n","productId":"three","eventType":1,"notifyMs":1,"payload":{}}', "productId"),
        (b'{"noticeId":"n","productId":3,"eventType":1.5,"notifyMs":1,"payload":{}}', "eventType"),
        (b'{"noticeId":"n","productId":3,"eventType":1,"payload":{}}', "notifyMs"),
        (b'{"noticeId":"n","productId":3,"eventType":1,"notifyMs":1,"payload":[]}', "payload"),
        (b'{"noticeId":"n","productId":3,"eventType":1,"notifyMs":1}', "payload"),
        (
            b'{"noticeId":"' + b"x" * 300 + b'","productId":3,"eventType":1,"notifyMs":1,"payload":{}}',
            "noticeId",
        ),
    ],
)
def test_invalid_envelopes_say_why(body: bytes, reason: str) -> None:
    """Each invalid envelope is an EventError naming the problem."""
    with pytest.raises(EventError, match=reason):
        decode_envelope(body)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_parse_or_raise_event_error(body: bytes) -> None:
    """No byte string makes the parser raise anything but EventError."""
    try:
        decode_envelope(body)
    except EventError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    notice=json_values,
    product=json_values,
    event_type=json_values,
    notify=json_values,
    payload=json_values,
    drop=st.sets(st.sampled_from(["noticeId", "productId", "eventType", "notifyMs", "payload"])),
)
def test_arbitrary_json_shapes(notice, product, event_type, notify, payload, drop) -> None:
    """Any JSON shape either yields a fully valid Envelope and event, or an EventError."""
    document = {
        "noticeId": notice,
        "productId": product,
        "eventType": event_type,
        "notifyMs": notify,
        "payload": payload,
    }
    for key in drop:
        del document[key]
    body = json.dumps(document).encode()
    try:
        envelope = decode_envelope(body)
    except EventError:
        return
    assert isinstance(envelope, Envelope)
    assert envelope.notice_id and isinstance(envelope.productId, int) and isinstance(envelope.payload, dict)
    parse_event(body, 0).to_dict()  # the worker's reading of an accepted body never fails
