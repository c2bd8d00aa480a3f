"""The operator's dashboard at ``/dashboard/``: server-rendered pages (Jinja, autoescaped), no front-end build.

* Login (``/dashboard/login``) with a token from ``API_TOKENS``, compared in constant time; the session is
  Flask's signed cookie (``SECRET_KEY``), HttpOnly, SameSite=Strict, Secure in production, limited to
  ``/dashboard``. It remembers a fingerprint of the token: a token removed from ``API_TOKENS`` ends its
  sessions. Without a session every page redirects to the login page and shows nothing.
* Every action (stop, retry, redeliver, logout, login) is a POST form carrying the session's CSRF token,
  compared in constant time; a POST without it is refused with 403 and changes nothing.
* Pages: recordings (counts per state, filtered and paginated listing, refreshing itself), one recording
  (sessions, files, the timeline drawn as SVG, every event), dead letters, notifications, system.
* Everything shown that could carry a credential goes through :func:`workers.core.redact.redact`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from typing import Any

import redis
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException

from webhook_service.dashboard import views
from webhook_service.services import EXTENSION_KEY, Services, get_services
from workers.core.config import Settings

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

SESSION_HOURS = 12
#: Pages reachable without a session.
PUBLIC_ENDPOINTS = {"dashboard.login", "dashboard.static"}
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def init_app(app: Flask) -> None:
    """Register the dashboard and configure the signed session cookie."""
    settings = get_settings(app)
    key = settings.secret_key
    if not key:
        # Only outside production (Settings.from_env requires it there): sessions last as long as the process.
        key = secrets.token_urlsafe(32)
        log.warning("SECRET_KEY is not set: dashboard sessions are signed with a random key for this process")
    app.config.update(
        SECRET_KEY=key,
        SESSION_COOKIE_NAME="acr_dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.is_production,
        SESSION_COOKIE_PATH="/dashboard",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    app.register_blueprint(bp)


def get_settings(app: Flask) -> Settings:
    services: Services = app.extensions[EXTENSION_KEY]
    return services.settings


def _fingerprint(token: str) -> str:
    return hashlib.sha256(b"acr-dashboard\0" + token.encode("utf-8")).hexdigest()


def _token_matches(presented: str, tokens: tuple[str, ...]) -> str | None:
    """The fingerprint of the configured token ``presented`` equals (constant time per token), or None."""
    candidate = presented.encode("utf-8", "replace")
    found = None
    for token in tokens:
        if hmac.compare_digest(token.encode("utf-8"), candidate) and presented:
            found = _fingerprint(token)
    return found


def _signed_in() -> bool:
    fingerprint = session.get("who")
    if not isinstance(fingerprint, str):
        return False
    tokens = get_services().settings.api_tokens
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(_fingerprint(token), fingerprint)
    return matched


def csrf_token() -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    presented = request.form.get("csrf", "")
    return isinstance(expected, str) and hmac.compare_digest(
        expected.encode("utf-8"), presented.encode("utf-8", "replace")
    )


@bp.before_request
def _guard() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS and request.endpoint != "dashboard.login":
        return None
    if request.endpoint != "dashboard.login" and not _signed_in():
        session.clear()
        back = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("dashboard.login", next=back))  # type: ignore[return-value]
    if request.method == "POST" and not _csrf_ok():
        return Response(
            render_template("dashboard/error.html", code=403, message="missing or wrong CSRF token"),
            status=403,
        )
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global()
def csrf() -> str:
    return csrf_token()


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    return render_template("dashboard/error.html", code=code, message=exc.description), code


@bp.errorhandler(redis.RedisError)
def _store_error(_exc: redis.RedisError) -> tuple[str, int]:
    return render_template(
        "dashboard/error.html", code=503, message="Redis is not answering; retry later"
    ), 503


# -- login ------------------------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/dashboard/") and not value.startswith("//") and "\\" not in value:
        return value
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The login form; POST checks ``token`` against API_TOKENS."""
    if request.method == "GET":
        return render_template("dashboard/login.html", next=request.args.get("next", ""), error=None)
    fingerprint = _token_matches(request.form.get("token", ""), get_services().settings.api_tokens)
    if fingerprint is None:
        return (
            render_template("dashboard/login.html", next=request.form.get("next", ""), error="wrong token"),
            401,
        )
    session.clear()
    session.permanent = True
    session["who"] = fingerprint
    session["csrf"] = secrets.token_urlsafe(32)
    return redirect(_safe_next(request.form.get("next")), code=303)


@bp.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("dashboard.login"), code=303)


# -- pages ------------------------------------------------------------------------------------------------


@bp.get("/")
def index() -> Any:
    """Counts per state and the recordings, newest first, filtered and paginated."""
    page = views.recordings_page(get_services(), request.args)
    if page is None:
        abort(400, "bad filter: state must be a recording state, cname 1 to 128 characters, cursor a number")
    return render_template("dashboard/index.html", **page)


@bp.get("/recordings/<recording_id>")
def recording(recording_id: str) -> Any:
    page = views.recording_page(get_services(), recording_id)
    if page is None:
        abort(404, "no such recording")
    return render_template("dashboard/recording.html", **page)


@bp.post("/recordings/<recording_id>/stop")
def stop(recording_id: str) -> Any:
    if not views.stop(get_services(), recording_id):
        abort(404, "no such recording")
    flash("stop requested")
    return redirect(url_for("dashboard.recording", recording_id=recording_id), code=303)


@bp.get("/dead-letters")
def dead_letters() -> Any:
    page = views.dead_letters_page(get_services(), request.args)
    if page is None:
        abort(400, "bad filter")
    return render_template("dashboard/dead_letters.html", **page)


@bp.post("/dead-letters/<entry_id>/retry")
def retry(entry_id: str) -> Any:
    message = views.retry(get_services(), entry_id)
    if message is None:
        abort(404, "no such dead letter")
    flash(message)
    return redirect(url_for("dashboard.dead_letters"), code=303)


@bp.get("/notifications")
def notifications() -> Any:
    page = views.notifications_page(get_services(), request.args)
    if page is None:
        abort(404, "no such recording")
    return render_template("dashboard/notifications.html", **page)


@bp.post("/notifications/<webhook_id>/redeliver")
def redeliver(webhook_id: str) -> Any:
    message = views.redeliver(get_services(), webhook_id)
    if message is None:
        abort(404, "no such notification")
    flash(message)
    return redirect(url_for("dashboard.notifications"), code=303)


@bp.get("/system")
def system() -> Any:
    return render_template("dashboard/system.html", **views.system_page(get_services()))
