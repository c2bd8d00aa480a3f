"""Liveness and readiness: ``/healthz`` never touches Redis, ``/readyz`` answers 503 while Redis does not."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from webhook_service.services import get_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    try:
        get_services().redis.ping()
    except redis.RedisError as exc:
        return jsonify({"status": "unavailable", "redis": type(exc).__name__}), 503
    return jsonify({"status": "ready", "redis": "ok"}), 200
