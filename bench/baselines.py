"""Baseline web apps for the ingest benchmark, run by gunicorn under the project's own gunicorn.conf.py.

* ``bare_flask()``: a Flask endpoint that only verifies the HMAC (with the project's verify_signature) and
  answers JSON: the ceiling the issue measures the receiver against.
* ``bare_wsgi()``: the same check as plain WSGI, for reference: the receiver is plain WSGI too, so this
  shows what the Redis step itself costs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request

from webhook_service.errors import SignatureError
from webhook_service.signature import HEADER_V1, HEADER_V2, verify_signature


def _secrets() -> tuple[bytes, ...]:
    return tuple(s.strip().encode() for s in os.environ["AGORA_NCS_SECRETS"].split(",") if s.strip())


def bare_flask() -> Flask:
    app = Flask(__name__)
    secrets = _secrets()

    @app.post("/webhooks/agora")
    def receive() -> tuple[dict[str, Any], int]:
        try:
            verify_signature(
                request.get_data(), request.headers.get(HEADER_V2), request.headers.get(HEADER_V1), secrets
            )
        except SignatureError as exc:
            return {"error": {"code": "invalid_signature", "message": str(exc)}}, 401
        return {"status": "accepted"}, 200

    return app


def bare_wsgi() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    secrets = _secrets()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            verify_signature(
                raw, environ.get("HTTP_AGORA_SIGNATURE_V2"), environ.get("HTTP_AGORA_SIGNATURE"), secrets
            )
        except SignatureError:
            body, status = b'{"error":{"code":"invalid_signature"}}', "401 Unauthorized"
        else:
            body, status = b'{"status":"accepted"}', "200 OK"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app
