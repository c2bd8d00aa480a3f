"""JSON error bodies for every error Flask answers: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec

import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

P = ParamSpec("P")


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    """A JSON error response; ``field`` names the offending input when there is one."""
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    response = jsonify({"error": error})
    response.status_code = status
    return response


def store_errors(view: Callable[P, Response]) -> Callable[P, Response]:
    """Redis trouble is a 503 (retry later), never a 500."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return view(*args, **kwargs)
        except redis.RedisError:
            return error_response(503, "store_unavailable", "Redis is not answering; retry later")

    return wrapper


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(status, code, exc.description or exc.name)
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def unexpected_error(_exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")
