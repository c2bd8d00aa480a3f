"""Read access to sessions (Agora ``sid``) and their callback timelines, behind a bearer token."""

from __future__ import annotations

import re

import redis
from flask import Blueprint, Response, jsonify

from webhook_service.auth import require_token
from webhook_service.http_errors import error_response
from webhook_service.services import get_services
from workers.redact import redact
from workers.session_store import SessionView, read_session

bp = Blueprint("sessions", __name__, url_prefix="/v1/sessions")

#: Agora sids are 32 hex-ish characters; be lenient (letters, digits, ``_``, ``-``; Cloud Transcoder tasks
#: are stored as ``task:<taskId>``) but never let a separator through: ``<sid>:order`` would name another key.
SID = re.compile(r"(?:task:)?[A-Za-z0-9_-]{1,128}")


def _load(sid: str) -> SessionView | Response:
    if not SID.fullmatch(sid):
        return _unknown(sid)
    try:
        view = read_session(get_services().redis, sid)
    except redis.RedisError:
        return error_response(503, "store_unavailable", "Redis is not answering; retry later")
    if view is None:
        return _unknown(sid)
    return view


def _unknown(sid: str) -> Response:
    shown = sid if len(sid) <= 64 else sid[:64] + "..."
    return error_response(404, "not_found", f"no session with sid {shown!r}", field="sid")


def _session_summary(view: SessionView) -> dict[str, object]:
    return {**view.state.summary(), "events": len(view.events), "duplicates": view.duplicates}


@bp.get("/<sid>")
@require_token
def get_session(sid: str) -> Response:
    """The session's last known status, derived from its callbacks."""
    view = _load(sid)
    if isinstance(view, Response):
        return view
    return jsonify(redact(_session_summary(view)))


@bp.get("/<sid>/events")
@require_token
def get_events(sid: str) -> Response:
    """The session's callbacks in timeline order (sequence, then sendts); credentials they carry (event 100:
    the CDN stream key) are masked."""
    view = _load(sid)
    if isinstance(view, Response):
        return view
    return jsonify(redact({"sid": sid, "session": _session_summary(view), "events": view.events}))
