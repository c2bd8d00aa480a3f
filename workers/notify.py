"""Outbound notifications to the app server (``NOTIFY_URL``), signed as Standard Webhooks.

Types: ``recording.started``, ``recording.restarted``, ``recording.failed``, ``recording.completed``,
``recording.backed_up``, ``recording.upload_unconfirmed``. Body ``{"type", "timestamp", "data": <the recording as the API shows it>}``.
Headers ``webhook-id`` (the same on every retry), ``webhook-timestamp`` (Unix seconds of the attempt) and
``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 over ``"<id>.<timestamp>.<body>"`` keyed with
``NOTIFY_SECRET`` (a ``whsec_``-prefixed secret is base64-decoded first, as the Standard Webhooks libraries do).

``data`` is redacted by rule (:mod:`workers.redact`) before the body is built: no key, token, salt, stream key
or URL credential of the recording's request ever leaves in a notification.

Sending is an RQ job on its own queue (``notify``, listened to after the callback and orchestration queues);
a failed attempt schedules the next one with backoff instead of waiting, so a slow or broken app server never
holds up callback processing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta

import msgspec
import requests
from rq import Queue, get_current_job

from workers.config import current_settings
from workers.redact import redact

log = logging.getLogger(__name__)

NOTIFY_QUEUE = "notify"
BACKOFF_SECONDS = (5, 30, 120, 600, 1800, 3600, 3 * 3600)
TIMEOUT_SECONDS = 5.0


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
    connection: object, notify_url: str, event_type: str, data: dict[str, object], scale: float = 1.0
) -> str:
    """Queue a notification; returns its ``webhook-id``."""
    message_id = "msg_" + secrets.token_hex(12)
    body = notification_body(event_type, data)
    Queue(NOTIFY_QUEUE, connection=connection).enqueue(  # type: ignore[arg-type]
        send_notification, message_id, body.decode(), 0, scale, result_ttl=0, failure_ttl=7 * 86400
    )
    return message_id


def send_notification(message_id: str, body: str, attempt: int, scale: float = 1.0) -> bool:
    """RQ job: one delivery attempt; on failure the next attempt is scheduled (7 retries over ~5 hours)."""
    settings = current_settings()
    if not settings.notify_url:
        return False
    timestamp = int(time.time())
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
            outcome = str(response.status_code)
        except requests.RequestException as exc:
            delivered, outcome = False, type(exc).__name__
    log.info("notification attempt", extra={"message_id": message_id, "attempt": attempt, "outcome": outcome})
    if delivered or attempt >= len(BACKOFF_SECONDS):
        return delivered
    job = get_current_job()
    if job is not None:
        Queue(NOTIFY_QUEUE, connection=job.connection).enqueue_in(
            timedelta(seconds=BACKOFF_SECONDS[attempt] * scale),
            send_notification,
            message_id,
            body,
            attempt + 1,
            scale,
            result_ttl=0,
            failure_ttl=7 * 86400,
        )
    return False
