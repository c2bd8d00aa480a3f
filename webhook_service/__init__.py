"""The web process: NCS receiver, API, health. Run by gunicorn as ``webhook_service:create_app()``."""

from __future__ import annotations

import logging

import redis
from flask import Flask

from webhook_service import cli, dashboard, http_errors
from webhook_service.api import deadletters, health, metrics, openapi, recordings, sessions
from webhook_service.api.ncs import NcsReceiver
from webhook_service.services import EXTENSION_KEY, Services
from workers.core.config import Settings
from workers.core.errors import StoreUnavailableError
from workers.core.logs import configure_logging
from workers.ncs import Inbox, install_drain_templates

log = logging.getLogger(__name__)

API_MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app from ``settings`` (default: read and validated from the environment)."""
    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = API_MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_socket_timeout,
    )
    inbox = Inbox(client, settings.ncs_dedupe_ttl_seconds)
    app.extensions[EXTENSION_KEY] = Services(settings=settings, redis=client, inbox=inbox)
    try:
        install_drain_templates(client)
    except StoreUnavailableError:
        # Not fatal: the web can start before Redis; the first accepted event installs them.
        log.warning("redis unavailable at start-up; drain templates will be installed on first event")
    if not settings.ncs_secrets:
        log.warning("AGORA_NCS_SECRETS is empty: every NCS callback will be refused with 401")
    if not settings.api_tokens:
        log.warning("API_TOKENS is empty: the API refuses every request with 401")

    http_errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(recordings.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(deadletters.bp)
    dashboard.init_app(app)
    cli.init_app(app)
    app.wsgi_app = NcsReceiver(  # type: ignore[method-assign]
        app.wsgi_app, inbox, settings.ncs_secrets, settings.ncs_max_body_bytes
    )
    log.info("web app created", extra={"settings": repr(settings)})
    return app
