"""Read access to sessions (Agora ``sid``) and their callback timelines, behind a bearer token."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import redis
from flask import Blueprint, Response, jsonify

from webhook_service.auth import require_token
from webhook_service.http_errors import error_response
from webhook_service.services import get_services
from workers.core.redact import redact
from workers.ncs import SessionSummary, read_session, read_summary

T = TypeVar("T")

bp = Blueprint("sessions", __name__, url_prefix="/v1/sessions")

#: Agora sids are 32 hex-ish characters; be lenient (letters, digits, ``_``, ``-``; Cloud Transcoder tasks
#: are stored as ``task:<taskId>``) but never let a separator through: ``<sid>:order`` would name another key.
SID = re.compile(r"(?:task:)?[A-Za-z0-9_-]{1,128}")


def _load(sid: str, read: Callable[[redis.Redis, str], T | None]) -> T | Response:
    if not SID.fullmatch(sid):
        return _unknown(sid)
    try:
        found = read(get_services().redis, sid)
    except redis.RedisError:
        return error_response(503, "store_unavailable", "Redis is not answering; retry later")
    if found is None:
        return _unknown(sid)
    return found


def _unknown(sid: str) -> Response:
    shown = sid if len(sid) <= 64 else sid[:64] + "..."
    return error_response(404, "not_found", f"no session with sid {shown!r}", field="sid")


def _session_summary(session: SessionSummary) -> dict[str, object]:
    return {**session.state.summary(), "events": session.events, "duplicates": session.duplicates}


@bp.get("/<sid>")
@require_token
def get_session(sid: str) -> Response:
    """The session's last known status, derived from its callbacks (read without reading the callbacks)."""
    summary = _load(sid, read_summary)
    if isinstance(summary, Response):
        return summary
    return jsonify(redact(_session_summary(summary)))


@bp.get("/<sid>/events")
@require_token
def get_events(sid: str) -> Response:
    """The session's callbacks in timeline order (sequence, then sendts); credentials they carry (event 100:
    the CDN stream key) are masked."""
    view = _load(sid, read_session)
    if isinstance(view, Response):
        return view
    summary = SessionSummary(state=view.state, duplicates=view.duplicates, events=len(view.events))
    return jsonify(redact({"sid": sid, "session": _session_summary(summary), "events": view.events}))
