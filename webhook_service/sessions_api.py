"""Read access to sessions (Agora ``sid``) and their callback timelines, behind a bearer token."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from webhook_service.auth import require_token
from webhook_service.http_errors import error_response
from webhook_service.services import get_services
from workers.session_store import SessionView, read_session

bp = Blueprint("sessions", __name__, url_prefix="/v1/sessions")


def _load(sid: str) -> SessionView | Response:
    try:
        view = read_session(get_services().redis, sid)
    except redis.RedisError:
        return error_response(503, "store_unavailable", "Redis is not answering; retry later")
    if view is None:
        return error_response(404, "not_found", f"no session with sid {sid!r}", field="sid")
    return view


def _session_summary(view: SessionView) -> dict[str, object]:
    return {**view.state.summary(), "events": len(view.events), "duplicates": view.duplicates}


@bp.get("/<sid>")
@require_token
def get_session(sid: str) -> Response:
    """The session's last known status, derived from its callbacks."""
    view = _load(sid)
    if isinstance(view, Response):
        return view
    return jsonify(_session_summary(view))


@bp.get("/<sid>/events")
@require_token
def get_events(sid: str) -> Response:
    """The session's callbacks in timeline order (sequence, then sendts)."""
    view = _load(sid)
    if isinstance(view, Response):
        return view
    return jsonify({"sid": sid, "session": _session_summary(view), "events": view.events})
