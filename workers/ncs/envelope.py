"""NCS callback bodies: the envelope Agora sends, and the normalised event the workers apply.

Only the envelope is validated strictly (``docs/agora.md`` §1.2): ``noticeId`` string, ``productId``,
``eventType`` and ``notifyMs`` integers (string-typed numbers from older payloads are accepted), ``payload``
an object. Everything inside ``payload`` is read leniently: unknown fields are kept in the stored raw body,
odd types become ``None`` rather than a rejection, and Cloud Transcoder events (same productId, no ``sid``)
are valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from workers.core.coerce import MAX_INT64, MIN_INT64, as_int
from workers.core.errors import EventError

CLOUD_RECORDING_PRODUCT = 3
MAX_NOTICE_ID_LENGTH = 256
#: Agora's payloads nest 4 levels (``payload.details.fileList[i]``); a body nesting deeper than this is refused
#: at the door, so nothing stored is ever too deep to decode, apply or show (msgspec gives up at ~1,000).
MAX_PAYLOAD_DEPTH = 32
Int64 = Annotated[int, msgspec.Meta(ge=MIN_INT64, le=MAX_INT64)]

#: eventType -> msgName for productId 3 (cloud recording and Cloud Transcoder), §1.6.
EVENT_NAMES: dict[int, str] = {
    1: "cloud_recording_error",
    2: "cloud_recording_warning",
    3: "cloud_recording_status_update",
    4: "cloud_recording_file_infos",
    11: "session_exit",
    12: "session_failover",
    30: "uploader_started",
    31: "uploaded",
    32: "backuped",
    33: "uploading_progress",
    40: "recorder_started",
    41: "recorder_leave",
    42: "recorder_slice_start",
    43: "recorder_audio_stream_state_changed",
    44: "recorder_video_stream_state_changed",
    45: "recorder_snapshot_file",
    60: "vod_started",
    61: "vod_triggered",
    70: "web_recorder_started",
    71: "web_recorder_stopped",
    72: "web_recorder_capability_limit",
    73: "web_recorder_reload",
    80: "transcoder_started",
    81: "transcoder_completed",
    90: "download_failed",
    100: "rtmp_publish_status",
    110: "cloud_transcoder_started",
    111: "cloud_transcoder_stopped",
    112: "cloud_transcoder_status",
    113: "cloud_transcoder_updated",
    1001: "postpone_transcode_final_result",
}


class Envelope(msgspec.Struct):
    """The top level of every NCS callback (§1.2); unknown fields are ignored here and kept in the raw body."""

    noticeId: str | Int64
    productId: Int64
    eventType: Int64
    notifyMs: Int64
    payload: dict[str, Any]

    @property
    def notice_id(self) -> str:
        return str(self.noticeId)

    def routing_key(self) -> str:
        """The key that keeps related events together: channel, else session, else transcoder task."""
        for name in ("cname", "sid", "taskId"):
            value = self.payload.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
        return ""


_DECODER = msgspec.json.Decoder(Envelope, strict=False)


def decode_envelope(raw: bytes) -> Envelope:
    """Parse and validate an NCS body; raise EventError with a reason that names the field."""
    try:
        envelope = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise EventError(f"invalid envelope: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise EventError("body is not valid UTF-8 JSON") from None
    except RecursionError:
        raise EventError(f"body nests too deeply (more than {MAX_PAYLOAD_DEPTH} levels)") from None
    notice_id = envelope.notice_id
    if not notice_id or isinstance(envelope.noticeId, bool):
        raise EventError("invalid envelope: noticeId must be a non-empty string - at `$.noticeId`")
    if len(notice_id) > MAX_NOTICE_ID_LENGTH:
        raise EventError(f"invalid envelope: noticeId longer than {MAX_NOTICE_ID_LENGTH} characters")
    # Counting brackets is C-speed; only a body with many of them (a real callback has a dozen) is walked.
    if (
        raw.count(b"{") + raw.count(b"[") > MAX_PAYLOAD_DEPTH
        and _depth(envelope.payload) > MAX_PAYLOAD_DEPTH - 1
    ):
        raise EventError(
            f"invalid envelope: payload nests too deeply (more than {MAX_PAYLOAD_DEPTH} levels) - at `$.payload`"
        )
    return envelope


def _depth(value: Any) -> int:
    """How many objects and lists nest in ``value`` (iterative: any depth is safe to measure)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


@dataclass(frozen=True, slots=True)
class NcsEvent:
    """One accepted callback, normalised for the workers; ``raw`` is the body exactly as received."""

    notice_id: str
    product_id: int
    event_type: int
    notify_ms: int
    received_ms: int
    sid: str | None
    cname: str | None
    uid: str | None
    sequence: int | None
    sendts: int | None
    service_type: int | None
    details: dict[str, Any]
    raw: bytes

    @property
    def name(self) -> str:
        """Agora's ``msgName`` when given, else the catalogue name, else ``event_<type>``."""
        msg_name = self.details.get("msgName") or self.details.get("event")
        if isinstance(msg_name, str) and msg_name:
            return msg_name
        if self.product_id == CLOUD_RECORDING_PRODUCT and self.event_type in EVENT_NAMES:
            return EVENT_NAMES[self.event_type]
        return f"event_{self.event_type}"

    @property
    def order_key(self) -> tuple[int, int, str]:
        """Total order inside a session: sequence, then sendts, then noticeId (for a stable tie-break)."""
        return (
            -1 if self.sequence is None else self.sequence,
            -1 if self.sendts is None else self.sendts,
            self.notice_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """The timeline entry: Agora's field names, plus when we received it."""
        return {
            "noticeId": self.notice_id,
            "productId": self.product_id,
            "eventType": self.event_type,
            "msgName": self.name,
            "sid": self.sid,
            "cname": self.cname,
            "uid": self.uid,
            "sequence": self.sequence,
            "sendts": self.sendts,
            "notifyMs": self.notify_ms,
            "serviceType": self.service_type,
            "receivedMs": self.received_ms,
            "details": self.details,
        }


def parse_event(raw: bytes, received_ms: int) -> NcsEvent:
    """Decode a stored body into an NcsEvent; raise EventError if the envelope is invalid."""
    envelope = decode_envelope(raw)
    payload = envelope.payload
    details = payload.get("details")
    sid = _text(payload.get("sid"))
    if sid is None and envelope.productId == CLOUD_RECORDING_PRODUCT:
        task_id = _text(payload.get("taskId"))
        sid = None if task_id is None else f"task:{task_id}"
    return NcsEvent(
        notice_id=envelope.notice_id,
        product_id=envelope.productId,
        event_type=envelope.eventType,
        notify_ms=envelope.notifyMs,
        received_ms=received_ms,
        sid=sid,
        cname=_text(payload.get("cname")),
        uid=_text(payload.get("uid")),
        sequence=as_int(payload.get("sequence")),
        sendts=as_int(payload.get("sendts")),
        service_type=as_int(payload.get("serviceType")),
        details=details if isinstance(details, dict) else {},
        raw=raw,
    )


def _text(value: object) -> str | None:
    """A non-empty string or integer as text; anything else as None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text or None
