"""Outbound notifications to the app server (``NOTIFY_URL``), signed as Standard Webhooks.

Types: ``recording.started``, ``recording.restarted``, ``recording.failed``, ``recording.completed``,
``recording.backed_up``, ``recording.upload_unconfirmed``. Body ``{"type", "timestamp", "data": <the recording as the API shows it>}``.
Headers ``webhook-id`` (the same on every retry), ``webhook-timestamp`` (Unix seconds of the attempt) and
``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 over ``"<id>.<timestamp>.<body>"`` keyed with
``NOTIFY_SECRET`` (a ``whsec_``-prefixed secret is base64-decoded first, as the Standard Webhooks libraries do).

``data`` is redacted by rule (:mod:`workers.core.redact`) before the body is built: no key, token, salt, stream key
or URL credential of the recording's request ever leaves in a notification.

Sending is an RQ job on its own queue (``notify``, listened to after the callback and orchestration queues);
a failed attempt schedules the next one with backoff instead of waiting, so a slow or broken app server never
holds up callback processing.

Every delivery is recorded (``acr:notification:<webhookId>``: type, recording, each attempt with its time and
answer, delivered / exhausted; listed per recording in ``acr:rec:<id>:notifications``, at most
:data:`MAX_PER_RECORDING`, both kept ``SESSION_RETENTION_SECONDS``). A notification that runs out of retries
becomes a dead letter (:mod:`workers.deadletters`); :func:`redeliver` sends it again with the same
``webhook-id``. Each redelivery starts a new *series* of attempts and the older series' pending retries stand
down, so one redelivery delivers at most once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import redis
from rq import Queue, get_current_job

from workers.core import deadletters, schema
from workers.core.config import Settings, current_settings
from workers.core.redact import redact, redact_text
from workers.recordings.model import RECORDING_ID
from workers.recordings.store import append_timeline

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (5, 30, 120, 600, 1800, 3600, 3 * 3600)
TIMEOUT_SECONDS = 5.0
#: Delivery records listed per recording (the oldest go first); attempts kept per delivery.
MAX_PER_RECORDING = 100
MAX_ATTEMPTS_KEPT = 50
DEFAULT_RETENTION_SECONDS = cast(int, Settings.__dataclass_fields__["session_retention_seconds"].default)
#: ``webhook-id`` values as :func:`queue_notification` makes them; anything else is unknown (404).
WEBHOOK_ID = re.compile(r"msg_[0-9a-f]{24}")


def _meta(body: str) -> tuple[str | None, str | None]:
    """(type, recording id) of a notification body."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None, None
    if not isinstance(decoded, dict):
        return None, None
    kind = decoded.get("type")
    data = decoded.get("data")
    recording_id = data.get("id") if isinstance(data, dict) else None
    return (
        kind if isinstance(kind, str) else None,
        recording_id if isinstance(recording_id, str) and RECORDING_ID.fullmatch(recording_id) else None,
    )


def _new_record(message_id: str, body: str) -> dict[str, Any]:
    kind, recording_id = _meta(body)
    return {
        "webhookId": message_id,
        "type": kind,
        "recordingId": recording_id,
        "createdMs": deadletters.now_ms(),
        "body": body,
        "attempts": [],
        "delivered": False,
        "deliveredMs": None,
        "exhausted": False,
        "pending": True,
        "series": 0,
        "redeliveries": 0,
    }


def load_delivery(connection: redis.Redis, message_id: str) -> dict[str, Any] | None:
    raw = connection.get(schema.notification(message_id))
    return msgspec.json.decode(raw) if isinstance(raw, bytes) else None


def _update_delivery(
    connection: redis.Redis,
    message_id: str,
    change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    retention_seconds: int,
) -> dict[str, Any] | None:
    """Read-modify-write a delivery record under WATCH; ``change`` gets the record (None: none yet)."""
    key = schema.notification(message_id)
    while True:
        with connection.pipeline() as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                record = change(msgspec.json.decode(raw) if isinstance(raw, bytes) else None)
                if record is None:
                    pipe.unwatch()
                    return None
                pipe.multi()
                pipe.set(key, msgspec.json.encode(record), ex=retention_seconds)
                recording_id = record.get("recordingId")
                if isinstance(recording_id, str):
                    listing = schema.recording_notifications(recording_id)
                    pipe.zadd(listing, {message_id: record["createdMs"]}, nx=True)
                    pipe.zremrangebyrank(listing, 0, -(MAX_PER_RECORDING + 1))
                    pipe.expire(listing, retention_seconds)
                pipe.execute()
                return record
            except redis.WatchError:
                continue


def delivery_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """A delivery as the API shows it (no body, no internals)."""
    return {
        "webhookId": record["webhookId"],
        "type": record.get("type"),
        "recordingId": record.get("recordingId"),
        "createdMs": record["createdMs"],
        "attempts": record.get("attempts", []),
        "delivered": bool(record.get("delivered")),
        "deliveredMs": record.get("deliveredMs"),
        "exhausted": bool(record.get("exhausted")),
        "pending": bool(record.get("pending")),
        "redeliveries": int(record.get("redeliveries", 0)),
    }


def deliveries_of(connection: redis.Redis, recording_id: str) -> list[dict[str, Any]]:
    """A recording's notifications, oldest first, each with its attempts."""
    ids = [
        m.decode()
        for m in cast(list[bytes], connection.zrange(schema.recording_notifications(recording_id), 0, -1))
    ]
    if not ids:
        return []
    raws = cast(list[bytes | None], connection.mget([schema.notification(i) for i in ids]))
    return [delivery_view(msgspec.json.decode(raw)) for raw in raws if isinstance(raw, bytes)]


def dead_letter_fields(message_id: str, body: str) -> dict[str, str | int | float | bytes]:
    """What a notification's dead letter keeps to redeliver it (the body was redacted when it was built)."""
    kind, recording_id = _meta(body)
    fields: dict[str, str | int | float | bytes] = {"webhookId": message_id, "b": body.encode()}
    if kind is not None:
        fields["type"] = kind
    if recording_id is not None:
        fields["recording"] = recording_id
    return fields


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_<base64>``) or of any other string."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def notification_body(event_type: str, data: dict[str, object]) -> bytes:
    """The JSON body of a notification, ``data`` redacted."""
    return msgspec.json.encode(
        {"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": redact(data)}
    )


def queue_notification(
    connection: redis.Redis,
    event_type: str,
    data: dict[str, object],
    *,
    scale: float = 1.0,
    retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    message_id: str | None = None,
) -> str:
    """Queue a notification and record it (pending); returns its ``webhook-id`` (``message_id`` when given:
    a notification sent again from an outbox keeps its id, so the app server can drop the copy)."""
    message_id = message_id or "msg_" + secrets.token_hex(12)
    body = notification_body(event_type, data).decode()
    _update_delivery(
        connection, message_id, lambda held: held or _new_record(message_id, body), retention_seconds
    )
    Queue(schema.NOTIFY_QUEUE, connection=connection).enqueue(
        schema.JOB_NOTIFY_QUEUED, message_id, body, 0, scale, 0, result_ttl=0, failure_ttl=7 * 86400
    )
    return message_id


def redeliver(
    connection: redis.Redis,
    message_id: str,
    *,
    notify_url: str,
    scale: float = 1.0,
    retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    fallback: Mapping[str, bytes] | None = None,
) -> dict[str, Any] | None:
    """Send a notification again with the same ``webhook-id`` and body, as a new series of attempts (the
    older series' pending retries stand down). None when it is unknown (its record expired and no dead
    letter holds its body). NotRetryableError when notifications are not configured."""
    if not notify_url:
        raise deadletters.NotRetryableError("notifications are off (NOTIFY_URL is not set)")
    fallback_body = fallback.get("b") if fallback is not None else None

    def renew(held: dict[str, Any] | None) -> dict[str, Any] | None:
        if held is None:
            if fallback_body is None:
                return None
            held = _new_record(message_id, fallback_body.decode("utf-8", "replace"))
        return {
            **held,
            "series": int(held.get("series", 0)) + 1,
            "pending": True,
            "redeliveries": int(held.get("redeliveries", 0)) + 1,
        }

    record = _update_delivery(connection, message_id, renew, retention_seconds)
    if record is None:
        return None
    Queue(schema.NOTIFY_QUEUE, connection=connection).enqueue(
        schema.JOB_NOTIFY_QUEUED,
        message_id,
        record["body"],
        0,
        scale,
        record["series"],
        result_ttl=0,
        failure_ttl=7 * 86400,
    )
    if record.get("recordingId"):
        append_timeline(
            connection,
            record["recordingId"],
            {
                "kind": "operator",
                "what": "notification redelivery queued",
                "webhookId": message_id,
                "type": record.get("type"),
            },
        )
    log.info("notification redelivery queued", extra={"message_id": message_id})
    return record


def send_notification(
    message_id: str, body: str, attempt: int, scale: float = 1.0, series: int | None = None
) -> bool:
    """RQ job: one delivery attempt; on failure the next attempt is scheduled (7 retries over ~5 hours); out
    of retries, a dead letter. ``series`` (None: jobs queued before series existed) names the redelivery the
    attempt belongs to: an attempt of a series that a redelivery replaced stands down."""
    settings = current_settings()
    if not settings.notify_url:
        return False
    job = get_current_job()
    connection = job.connection if job is not None else redis.Redis.from_url(settings.redis_url)
    try:
        return _attempt(connection, settings, message_id, body, attempt, scale, series, job is not None)
    finally:
        if job is None:
            connection.close()


def _attempt(
    connection: redis.Redis,
    settings: Settings,
    message_id: str,
    body: str,
    attempt: int,
    scale: float,
    series: int | None,
    scheduled: bool,
) -> bool:
    if series is not None:
        try:
            held = load_delivery(connection, message_id)
        except redis.RedisError:
            held = None  # deliver anyway: the app server dedupes on webhook-id
        if held is not None and int(held.get("series", 0)) != series:
            log.info("notification attempt superseded by a redelivery", extra={"message_id": message_id})
            return False
    import requests  # here: the web process reads and redelivers notifications, only workers send them

    timestamp = int(time.time())
    status: int | None = None
    try:
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(settings.notify_secret, message_id, timestamp, body.encode()),
        }
    except ValueError:  # a secret that is not base64 (start-up refuses it; never let it escape the retries)
        delivered, outcome = False, "invalid NOTIFY_SECRET (whsec_ must be followed by base64)"
    else:
        try:
            response = requests.post(
                settings.notify_url, data=body.encode(), headers=headers, timeout=TIMEOUT_SECONDS
            )
            delivered = 200 <= response.status_code < 300
            status = response.status_code
            outcome = str(response.status_code)
        except requests.RequestException as exc:
            delivered, outcome = False, type(exc).__name__
    log.info("notification attempt", extra={"message_id": message_id, "attempt": attempt, "outcome": outcome})
    exhausted = not delivered and attempt >= len(BACKOFF_SECONDS)
    record = _record_attempt(
        connection, settings, message_id, body, attempt, status, outcome, delivered, exhausted, series
    )
    if delivered or exhausted:
        _record_outcome(connection, message_id, body, attempt, outcome, delivered, record)
        return delivered
    if scheduled:
        Queue(schema.NOTIFY_QUEUE, connection=connection).enqueue_in(
            timedelta(seconds=BACKOFF_SECONDS[attempt] * scale),
            schema.JOB_NOTIFY_QUEUED,
            message_id,
            body,
            attempt + 1,
            scale,
            series,
            result_ttl=0,
            failure_ttl=7 * 86400,
        )
    return False


def _record_attempt(
    connection: redis.Redis,
    settings: Settings,
    message_id: str,
    body: str,
    attempt: int,
    status: int | None,
    outcome: str,
    delivered: bool,
    exhausted: bool,
    series: int | None,
) -> dict[str, Any] | None:
    """Add the attempt to the delivery record (never fails the delivery: a Redis error is logged)."""
    at = deadletters.now_ms()
    entry = {
        "attempt": attempt,
        "series": series or 0,
        "atMs": at,
        "status": status,
        "error": None if status is not None else redact_text(outcome),
        "delivered": delivered,
    }

    def add(held: dict[str, Any] | None) -> dict[str, Any]:
        record = held if held is not None else _new_record(message_id, body)
        record["attempts"] = [*record.get("attempts", []), entry][-MAX_ATTEMPTS_KEPT:]
        if delivered:
            record.update(delivered=True, deliveredMs=at, exhausted=False, pending=False)
        elif exhausted:
            record.update(exhausted=True, pending=False)
        return record

    try:
        return _update_delivery(connection, message_id, add, settings.session_retention_seconds)
    except redis.RedisError as exc:
        log.warning(
            "notification attempt not recorded", extra={"message_id": message_id, "error": type(exc).__name__}
        )
        return None


def _record_outcome(
    connection: redis.Redis,
    message_id: str,
    body: str,
    attempt: int,
    outcome: str,
    delivered: bool,
    record: dict[str, Any] | None,
) -> None:
    """Delivered or out of retries: on the recording's timeline; out of retries: a dead letter too."""
    kind, recording_id = _meta(body)
    entry_id = None
    if not delivered:
        entry_id = deadletters.add(
            connection,
            "notification",
            f"out of retries after {attempt + 1} attempts; last answer: {outcome}",
            **dead_letter_fields(message_id, body),
        )
        log.warning("notification out of retries", extra={"message_id": message_id, "dead_letter": entry_id})
    if recording_id is not None:
        timeline: dict[str, Any] = {
            "kind": "notification",
            "what": "delivered" if delivered else "out of retries",
            "type": kind,
            "webhookId": message_id,
            "answer": outcome,
            "attempts": len(record["attempts"]) if record is not None else attempt + 1,
        }
        if entry_id is not None:
            timeline["deadLetter"] = entry_id
        append_timeline(connection, recording_id, timeline)
