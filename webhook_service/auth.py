"""Bearer-token access to the API: ``Authorization: Bearer <token>`` against ``API_TOKENS``."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import ParamSpec

from flask import Response, request

from webhook_service.http_errors import error_response
from webhook_service.services import get_services

P = ParamSpec("P")


def token_is_valid(header: str | None, tokens: tuple[str, ...]) -> bool:
    """True if ``header`` is ``Bearer <t>`` for a configured token; constant-time per token."""
    if not header or not tokens:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    candidate = presented.strip().encode("utf-8", "replace")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(token.encode("utf-8"), candidate)
    return matched


def require_token(view: Callable[P, Response]) -> Callable[P, Response]:
    """Answer 401 (JSON, with WWW-Authenticate) unless the request carries a valid bearer token."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        if not token_is_valid(request.headers.get("Authorization"), get_services().settings.api_tokens):
            response = error_response(401, "unauthorized", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
            return response
        return view(*args, **kwargs)

    return wrapper
