"""The management API: ``/v1/recordings`` (bearer tokens from ``API_TOKENS``).

The web process only validates, stores and wakes; workers talk to Agora (``workers/recordings/``).
Errors are ``{"error": {"code", "message", "field"}}``; a body that names a field always says which one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec
import redis
from flask import Blueprint, Response, jsonify, request

from webhook_service.auth import require_token
from webhook_service.http_errors import error_response
from webhook_service.services import get_services
from workers.agora import AgoraRequestError
from workers.agora.bodies import explain_validation_error
from workers.recordings.machine import State
from workers.recordings.model import Recording
from workers.recordings.store import (
    MAX_LIST,
    IdempotencyConflictError,
    RecordingSpec,
    check_change,
    create_recording,
    list_recordings,
    load,
    send_command,
    timeline,
)
from workers.session_store import read_session

bp = Blueprint("recordings", __name__, url_prefix="/v1/recordings")


def _json_body() -> Any | Response:
    if not request.is_json:
        return error_response(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        return msgspec.json.decode(request.get_data())
    except msgspec.DecodeError as exc:
        return error_response(400, "invalid_json", f"the body is not valid JSON: {exc}")


def _store_errors(view: Callable[..., Response]) -> Callable[..., Response]:
    """Redis trouble is a 503 (retry later), never a 500."""

    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return view(*args, **kwargs)
        except redis.RedisError:
            return error_response(503, "store_unavailable", "Redis is not answering; retry later")

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


def _with_recording(view: Callable[[Recording], Response]) -> Callable[[str], Response]:
    """Token check, Redis errors as 503, and the recording loaded (404 naming ``id`` when unknown)."""

    def wrapper(recording_id: str) -> Response:
        recording = load(get_services().redis, recording_id)
        if recording is None:
            return error_response(404, "not_found", f"no recording {recording_id!r}", field="id")
        return view(recording)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return require_token(_store_errors(wrapper))


def _accepted(recording: Recording, **overrides: Any) -> Response:
    response = jsonify({**recording.public(), **overrides})
    response.status_code = 202
    response.headers["Location"] = f"/v1/recordings/{recording.id}"
    return response


@bp.post("")
@require_token
@_store_errors
def create() -> Response:
    """Record a channel: 202 with the new recording (state ``pending``)."""
    body = _json_body()
    if isinstance(body, Response):
        return body
    try:
        spec = msgspec.convert(body, RecordingSpec)
    except msgspec.ValidationError as exc:
        message, field = explain_validation_error(exc)
        return error_response(400, "invalid_request", message, field=field or "body")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        return error_response(
            400, "invalid_request", "Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key"
        )
    services = get_services()
    scope = hashlib.sha256(request.headers.get("Authorization", "").encode()).hexdigest()
    try:
        recording, created = create_recording(services.redis, services.settings, spec, key, scope)
    except AgoraRequestError as exc:
        return error_response(400, "invalid_request", exc.reason, field=exc.field)
    except IdempotencyConflictError as exc:
        return error_response(422, "idempotency_conflict", str(exc), field="Idempotency-Key")
    response = _accepted(recording)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("")
@require_token
@_store_errors
def list_all() -> Response:
    """Recordings, newest first: ``?state=&cname=&limit=&cursor=``."""
    state = request.args.get("state") or None
    states = [s.value for s in State]
    if state is not None and state not in states:
        return error_response(
            400, "invalid_request", f"state must be one of {', '.join(states)}", field="state"
        )
    try:
        limit = int(request.args.get("limit", 50))
        cursor = int(request.args["cursor"]) if request.args.get("cursor") else None
    except ValueError:
        return error_response(400, "invalid_request", "limit and cursor are integers", field="limit")
    if not 1 <= limit <= MAX_LIST:
        return error_response(400, "invalid_request", f"limit must be 1 to {MAX_LIST}", field="limit")
    found, next_cursor = list_recordings(
        get_services().redis, state=state, cname=request.args.get("cname") or None, limit=limit, cursor=cursor
    )
    return jsonify(
        {
            "recordings": [r.public() for r in found],
            "nextCursor": None if next_cursor is None else str(next_cursor),
        }
    )


@bp.get("/<recording_id>")
@_with_recording
def get_one(recording: Recording) -> Response:
    """State, desired state, attempts, sessions, files, last error; never a secret."""
    return jsonify(recording.public())


@bp.post("/<recording_id>/stop")
@_with_recording
def stop(recording: Recording) -> Response:
    """Stop recording (idempotent): 202."""
    if not recording.terminal:
        send_command(get_services().redis, recording.id, {"op": "stop"})
    return _accepted(recording, desiredState="stopped")


def _change(recording: Recording, kind: str) -> Response:
    body = _json_body()
    if isinstance(body, Response):
        return body
    try:
        checked = check_change(recording, kind, body)
    except AgoraRequestError as exc:
        return error_response(400, "invalid_request", exc.reason, field=exc.field)
    if recording.terminal or recording.desired == "stopped":
        return error_response(
            409, "conflict", f"the recording is {recording.state} (desired: {recording.desired})", field="id"
        )
    send_command(get_services().redis, recording.id, {"op": kind, "body": checked})
    return _accepted(recording)


@bp.post("/<recording_id>/update")
@_with_recording
def update(recording: Recording) -> Response:
    """Subscriptions (individual/mix), ``webRecordingConfig.onhold`` and ``rtmpPublishConfig`` (web), or new
    ``storageConfig`` credentials; Agora's ``update`` clientRequest shape. 202."""
    return _change(recording, "update")


@bp.post("/<recording_id>/layout")
@_with_recording
def layout(recording: Recording) -> Response:
    """Replace the whole mix layout (Agora's ``updateLayout`` clientRequest shape). 202."""
    return _change(recording, "layout")


@bp.get("/<recording_id>/events")
@_with_recording
def events(recording: Recording) -> Response:
    """The timeline: API calls, Agora calls, transitions and every callback of its sessions, in time order."""
    connection = get_services().redis
    entries: list[dict[str, Any]] = list(timeline(connection, recording.id))
    for session in recording.sessions:
        if session.sid is None:
            continue
        view = read_session(connection, session.sid)
        for event in view.events if view is not None else ():
            entries.append({"ts": event.get("receivedMs"), "kind": "callback", **event})
    entries.sort(key=lambda e: e.get("ts") or 0)
    return jsonify({"id": recording.id, "state": recording.state, "events": entries})


@bp.get("/<recording_id>/files")
@_with_recording
def files(recording: Recording) -> Response:
    """The file manifest with each file's upload status."""
    public = recording.public()
    return jsonify(
        {
            "id": recording.id,
            "state": recording.state,
            "files": public["files"],
            "backedUpFiles": public["backedUpFiles"],
            "uploadStuck": public["uploadStuck"],
            "filesInDoubt": public["filesInDoubt"],
        }
    )
