"""Dead letters and notification deliveries (bearer tokens from ``API_TOKENS``).

* ``GET /v1/dead-letters?kind=&limit=&cursor=``: newest first;
* ``POST /v1/dead-letters/{id}/retry``: 202, re-queued (:func:`workers.deadletters.retry`), the entry kept and
  marked retried;
* ``GET /v1/recordings/{id}/notifications``: each notification of a recording, with its attempts;
* ``POST /v1/notifications/{webhookId}/redeliver``: 202, sent again with the same ``webhook-id``.

Ids are checked before they name a Redis key (404 otherwise). Errors are ``{"error": {"code", "message",
"field"}}``.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from webhook_service.auth import require_token
from webhook_service.http_errors import error_response, store_errors
from webhook_service.services import Services, get_services
from workers import deadletters
from workers.recordings import RECORDING_ID, WEBHOOK_ID, deliveries_of, delivery_view, load
from workers.recordings import redeliver as send_again

bp = Blueprint("deadletters", __name__)

_LIMIT = re.compile(r"[0-9]{1,3}")


def _shown(value: str) -> str:
    return value if len(value) <= 64 else value[:64] + "..."


def _not_found(what: str, value: str, field: str) -> Response:
    return error_response(404, "not_found", f"no {what} {_shown(value)!r}", field=field)


@bp.get("/v1/dead-letters")
@require_token
@store_errors
def list_dead_letters() -> Response:
    """Dead letters, newest first: ``?kind=&limit=&cursor=``."""
    args = request.args
    kind = args.get("kind")
    if kind is not None and kind not in deadletters.KINDS:
        return error_response(
            400, "invalid_request", f"kind must be one of {', '.join(deadletters.KINDS)}", field="kind"
        )
    raw_limit = args.get("limit")
    limit = 50 if raw_limit is None else int(raw_limit) if _LIMIT.fullmatch(raw_limit) else 0
    if not 1 <= limit <= deadletters.MAX_LIST:
        return error_response(
            400,
            "invalid_request",
            f"limit must be an integer from 1 to {deadletters.MAX_LIST}",
            field="limit",
        )
    cursor = args.get("cursor")
    if cursor is not None and not deadletters.ENTRY_ID.fullmatch(cursor):
        return error_response(
            400, "invalid_request", "cursor must be a nextCursor this API gave", field="cursor"
        )
    found, next_cursor = deadletters.list_entries(get_services().redis, kind=kind, limit=limit, cursor=cursor)
    return jsonify({"deadLetters": [e.view() for e in found], "nextCursor": next_cursor})


def retry_dead_letter(services: Services, entry_id: str) -> Any:
    """Re-queue one dead letter with this process's settings (API, dashboard and CLI alike)."""
    return deadletters.retry(
        services.redis,
        entry_id,
        services.inbox,
        notify_url=services.settings.notify_url,
        scale=services.settings.recording_time_scale,
        retention_seconds=services.settings.session_retention_seconds,
    )


@bp.post("/v1/dead-letters/<entry_id>/retry")
@require_token
@store_errors
def retry(entry_id: str) -> Response:
    """Re-queue a dead letter: 202 with the entry, marked retried."""
    services = get_services()
    try:
        retried = retry_dead_letter(services, entry_id)
    except deadletters.NotRetryableError as exc:
        return error_response(409, "not_retryable", str(exc), field="id")
    if retried is None:
        return _not_found("dead letter", entry_id, "id")
    response = jsonify(retried)
    response.status_code = 202
    return response


@bp.get("/v1/recordings/<recording_id>/notifications")
@require_token
@store_errors
def recording_notifications(recording_id: str) -> Response:
    """Every notification of a recording: its attempts (time, answer status or error), delivered, exhausted."""
    connection = get_services().redis
    if not RECORDING_ID.fullmatch(recording_id) or load(connection, recording_id) is None:
        return _not_found("recording", recording_id, "id")
    return jsonify({"id": recording_id, "notifications": deliveries_of(connection, recording_id)})


def redeliver_notification(services: Services, webhook_id: str) -> dict[str, Any] | None:
    """Send one notification again with this process's settings (API and dashboard alike)."""
    return send_again(
        services.redis,
        webhook_id,
        notify_url=services.settings.notify_url,
        scale=services.settings.recording_time_scale,
        retention_seconds=services.settings.session_retention_seconds,
    )


@bp.post("/v1/notifications/<webhook_id>/redeliver")
@require_token
@store_errors
def redeliver(webhook_id: str) -> Response:
    """Send a notification again with the same ``webhook-id``: 202 with its delivery record."""
    if not WEBHOOK_ID.fullmatch(webhook_id):
        return _not_found("notification", webhook_id, "webhookId")
    services = get_services()
    try:
        record = redeliver_notification(services, webhook_id)
    except deadletters.NotRetryableError as exc:
        return error_response(409, "not_retryable", str(exc), field="webhookId")
    if record is None:
        return _not_found("notification", webhook_id, "webhookId")
    response = jsonify(delivery_view(record))
    response.status_code = 202
    return response
