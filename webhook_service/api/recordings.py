"""The management API: ``/v1/recordings`` (bearer tokens from ``API_TOKENS``).

The web process only validates, stores and wakes; workers talk to Agora (``workers/recordings/``).
Errors are ``{"error": {"code", "message", "field"}}``; a body that names a field always says which one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any

import msgspec
from flask import Blueprint, Response, jsonify, request

from webhook_service.auth import require_token
from webhook_service.http_errors import error_response, store_errors
from webhook_service.services import get_services
from workers.agora import AgoraRequestError, explain_validation_error
from workers.core.redact import redact
from workers.ncs import read_session
from workers.recordings import (
    MAX_CNAME_CHARS,
    MAX_LIST,
    RECORDING_ID,
    IdempotencyConflictError,
    Recording,
    RecordingSpec,
    State,
    TooManyCommandsError,
    check_change,
    check_json_bounds,
    create_recording,
    list_recordings,
    load,
    queue_position,
    send_command,
    timeline,
)

bp = Blueprint("recordings", __name__, url_prefix="/v1/recordings")


#: Bodies of this API are small (Agora's largest: a 17-window layout, an STS token): larger is a 413.
MAX_BODY_BYTES = 64 * 1024
#: Query parameters of the listing.
_LIMIT = re.compile(r"[0-9]{1,3}")
_CURSOR = re.compile(r"[0-9]{1,19}")
MAX_CURSOR = 2**63 - 1
MAX_IDEMPOTENCY_KEY = 200


def _json_body() -> Any | Response:
    """The request's JSON body, or the error answer: 415 not JSON, 413 too large, 400 broken, nesting too
    deep for the decoder (~1,000 levels), or any value out of bounds (naming the field)."""
    if not request.is_json:
        return error_response(
            415, "unsupported_media_type", "send Content-Type: application/json", field="Content-Type"
        )
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _too_large()
    data = request.get_data()
    if len(data) > MAX_BODY_BYTES:
        return _too_large()
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        return error_response(400, "invalid_json", f"the body is not valid JSON: {exc}", field="body")
    except RecursionError:
        return error_response(400, "invalid_json", "the body nests too deeply to be read", field="body")
    try:
        check_json_bounds(body)
    except AgoraRequestError as exc:
        return error_response(400, "invalid_request", exc.reason, field=exc.field)
    return body


def _too_large() -> Response:
    return error_response(
        413, "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes", field="body"
    )


def _with_recording(view: Callable[[Recording], Response]) -> Callable[[str], Response]:
    """Token check, Redis errors as 503, and the recording loaded (404 naming ``id`` when unknown)."""

    @functools.wraps(view)
    def wrapper(recording_id: str) -> Response:
        recording = load(get_services().redis, recording_id) if RECORDING_ID.fullmatch(recording_id) else None
        if recording is None:
            shown = recording_id if len(recording_id) <= 64 else recording_id[:64] + "..."
            return error_response(404, "not_found", f"no recording {shown!r}", field="id")
        return view(recording)

    return require_token(store_errors(wrapper))


def _view(recording: Recording) -> dict[str, Any]:
    """The API view, with its place in the admission queue when it waits there."""
    place = queue_position(get_services().redis, recording) if recording.state == State.QUEUED else None
    return recording.public(place)


def _accepted(recording: Recording, **overrides: Any) -> Response:
    response = jsonify({**_view(recording), **overrides})
    response.status_code = 202
    response.headers["Location"] = f"/v1/recordings/{recording.id}"
    return response


@bp.post("")
@require_token
@store_errors
def create() -> Response:
    """Record a channel: 202 with the new recording (state ``pending``)."""
    body = _json_body()
    if isinstance(body, Response):
        return body
    if not isinstance(body, dict):
        return error_response(400, "invalid_request", "the body must be a JSON object", field="body")
    try:
        spec = msgspec.convert(body, RecordingSpec)
    except msgspec.ValidationError as exc:
        message, field = explain_validation_error(exc)
        return error_response(400, "invalid_request", message, field=field or "body")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        return error_response(
            400,
            "invalid_request",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
            field="Idempotency-Key",
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
@store_errors
def list_all() -> Response:
    """Recordings, newest first: ``?state=&cname=&limit=&cursor=``."""
    args = request.args
    state = args.get("state")
    states = [s.value for s in State]
    if state is not None and state not in states:
        return error_response(
            400, "invalid_request", f"state must be one of {', '.join(states)}", field="state"
        )
    cname = args.get("cname")
    if cname is not None and not 1 <= len(cname) <= MAX_CNAME_CHARS:
        return error_response(
            400, "invalid_request", f"cname must be 1 to {MAX_CNAME_CHARS} characters", field="cname"
        )
    raw_limit = args.get("limit")
    limit = int(raw_limit) if raw_limit is not None and _LIMIT.fullmatch(raw_limit) else 0
    if raw_limit is None:
        limit = 50
    if not 1 <= limit <= MAX_LIST:
        return error_response(
            400, "invalid_request", f"limit must be an integer from 1 to {MAX_LIST}", field="limit"
        )
    raw_cursor = args.get("cursor")
    cursor = int(raw_cursor) if raw_cursor is not None and _CURSOR.fullmatch(raw_cursor) else None
    if raw_cursor is not None and (cursor is None or cursor > MAX_CURSOR):
        return error_response(
            400,
            "invalid_request",
            "cursor must be a nextCursor this API gave (an integer from 0 to 2^63-1)",
            field="cursor",
        )
    found, next_cursor = list_recordings(
        get_services().redis, state=state, cname=cname, limit=limit, cursor=cursor
    )
    return jsonify(
        {
            "recordings": [_view(r) for r in found],
            "nextCursor": None if next_cursor is None else str(next_cursor),
        }
    )


@bp.get("/<recording_id>")
@_with_recording
def get_one(recording: Recording) -> Response:
    """State, desired state, attempts, sessions, files, last error, place in the queue; never a secret."""
    return jsonify(_view(recording))


@bp.post("/<recording_id>/stop")
@_with_recording
def stop(recording: Recording) -> Response:
    """Stop recording (idempotent): 202."""
    if not recording.terminal:
        send_command(get_services().redis, recording.id, {"op": "stop"})
    return _accepted(recording, desiredState="stopped")


def _pause_or_resume(recording: Recording, op: str) -> Response:
    if recording.terminal or recording.desired == "stopped":
        return error_response(
            409, "conflict", f"the recording is {recording.state} (desired: {recording.desired})", field="id"
        )
    try:
        send_command(get_services().redis, recording.id, {"op": op})
    except TooManyCommandsError:
        return _too_many()
    return _accepted(recording, desiredState="paused" if op == "pause" else "recording")


@bp.post("/<recording_id>/pause")
@_with_recording
def pause(recording: Recording) -> Response:
    """Pause (idempotent, in order with other commands): web pages go on hold, individual and mix sessions
    end and a resume starts a new one. 202; 409 once stopped."""
    return _pause_or_resume(recording, "pause")


@bp.post("/<recording_id>/resume")
@_with_recording
def resume(recording: Recording) -> Response:
    """Resume a paused recording (idempotent). 202; 409 once stopped."""
    return _pause_or_resume(recording, "resume")


def _too_many() -> Response:
    response = error_response(
        429, "too_many_pending_changes", "too many changes wait for a worker; retry later", field="id"
    )
    response.headers["Retry-After"] = "5"
    return response


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
    try:
        send_command(get_services().redis, recording.id, {"op": kind, "body": checked})
    except TooManyCommandsError:
        return _too_many()
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
    # Callbacks can carry credentials (event 100: the CDN stream key); API and Agora entries echo requests.
    return jsonify({"id": recording.id, "state": recording.state, "events": redact(entries)})


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
