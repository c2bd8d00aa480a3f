"""Builders for NCS callbacks as Agora sends them (compact JSON, both signature headers)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from webhook_service.signature import sign

_counter = itertools.count(1)
BASE_MS = 1_700_000_000_000

#: The verified signature vectors of Agora's reference (§1.4; secret ``secret``), bodies exactly as printed there.
VECTOR_1 = (
    b'{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
    b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}'
)
VECTOR_2 = (
    b'{"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f","notifyMs":1560408533119,'
    b'"payload":{"a":"1","b":2},"productId":1}'
)

#: A Cloud Transcoder callback (no ``sid``; ``serviceScene`` rtsc/cloud-transcoder).
TRANSCODER = {
    "noticeId": "t-1",
    "productId": 3,
    "eventType": 110,
    "notifyMs": 1656573243400,
    "payload": {
        "taskId": "1234",
        "instanceId": "123",
        "sequence": 123,
        "sendts": 1656573243385,
        "serviceScene": "rtsc/cloud-transcoder",
        "details": {"event": "cloud_transcoder_started", "state": "Transcoder success"},
    },
}


def event(
    event_type: int = 40,
    *,
    notice_id: str | None = None,
    sid: str | None = "sid-1",
    cname: str = "room1",
    uid: str = "527841",
    sequence: int | None = None,
    sendts: int | None = None,
    details: dict[str, Any] | None = None,
    product_id: int = 3,
    **payload_extra: Any,
) -> dict[str, Any]:
    """An NCS envelope (as a dict) for a cloud recording event."""
    n = next(_counter)
    payload: dict[str, Any] = {"cname": cname, "uid": uid}
    if sid is not None:
        payload["sid"] = sid
    payload["sequence"] = n if sequence is None else sequence
    payload["sendts"] = BASE_MS + n if sendts is None else sendts
    payload["serviceType"] = 0
    payload["details"] = details if details is not None else {"msgName": f"event_{event_type}"}
    payload.update(payload_extra)
    return {
        "noticeId": notice_id or f"notice-{n}",
        "productId": product_id,
        "eventType": event_type,
        "notifyMs": BASE_MS + n,
        "payload": payload,
    }


def body_of(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":")).encode()


def signed_headers(body: bytes, secret: str, *, v1: bool = True, v2: bool = True) -> dict[str, str]:
    """The headers Agora sends: Content-Type and both signatures (either can be left out)."""
    headers = {"Content-Type": "application/json"}
    if v2:
        headers["Agora-Signature-V2"] = sign(body, secret.encode(), "v2")
    if v1:
        headers["Agora-Signature"] = sign(body, secret.encode(), "v1")
    return headers
