"""``POST /webhooks/agora``: the NCS receiver, mounted in front of the Flask app as WSGI middleware.

It keeps the ingest promise of ``docs/design.md`` §3: read the raw body (capped), verify the signature on those
exact bytes, validate the envelope, then store + dedupe + hand to workers in one atomic Redis step, and
answer only after that step succeeded. Every other request goes on to Flask.

It is plain WSGI rather than a Flask view because this endpoint takes every callback Agora sends and
Flask's per-request machinery costs about as much as everything else here together (``bench/README.md``).

Answers (always a JSON body)::

    200  {"status": "accepted" | "duplicate", "noticeId": ...}
    400  malformed JSON or envelope, nesting deeper than 32 levels, integers beyond 64 bits
    401  signature missing or wrong
    405  not POST                            413  body over NCS_MAX_BODY_BYTES
    415  not application/json                503  Redis did not take it (Agora retries)
    500  a bug (logged with its traceback; never the sender's doing)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from webhook_service.errors import SignatureError
from webhook_service.signature import verify_signature
from workers.core.errors import EventError, StoreUnavailableError
from workers.ncs import Inbox, decode_envelope

log = logging.getLogger(__name__)

PATH = "/webhooks/agora"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REASONS = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    415: "415 Unsupported Media Type",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


class Rejection(Exception):
    """A request this endpoint refuses: HTTP status, error code and a message safe to show the sender."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class NcsReceiver:
    """WSGI middleware that answers NCS callbacks and passes everything else to ``app``."""

    def __init__(self, app: WsgiApp, inbox: Inbox, secrets: Iterable[str], max_body_bytes: int) -> None:
        self.app = app
        self.inbox = inbox
        self.secrets = tuple(secret.encode("utf-8") for secret in secrets)
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        started = time.perf_counter()
        try:
            return self._handle(environ, start_response, started)
        except (
            Exception
        ):  # a bug, never a client's doing: a JSON 500 (Agora retries), the traceback in the log
            log.exception("ncs receiver failed")
            body = b'{"error":{"code":"internal_error","message":"internal error"}}'
            return _respond(start_response, 500, body)

    def _handle(
        self, environ: dict[str, Any], start_response: StartResponse, started: float
    ) -> Iterable[bytes]:
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                raise Rejection(405, "method_not_allowed", "use POST")
            raw = self._read_body(environ)
            scheme = verify_signature(
                raw, environ.get("HTTP_AGORA_SIGNATURE_V2"), environ.get("HTTP_AGORA_SIGNATURE"), self.secrets
            )
            envelope = decode_envelope(raw)
        except Rejection as rejection:
            return self._reject(start_response, rejection, started)
        except SignatureError as exc:
            return self._reject(start_response, Rejection(401, "invalid_signature", str(exc)), started)
        except EventError as exc:
            return self._reject(start_response, Rejection(400, "invalid_event", str(exc)), started)

        notice_id = envelope.notice_id
        try:
            accepted = self.inbox.accept(notice_id, envelope.routing_key(), raw)
        except StoreUnavailableError as exc:
            log.error("ncs event not stored", extra={"notice_id": notice_id, "error": str(exc)})
            return self._reject(
                start_response, Rejection(503, "store_unavailable", "event not stored; retry later"), started
            )
        outcome = "accepted" if accepted else "duplicate"
        # DEBUG, not INFO: the session timeline already records every accepted event, and a log line per
        # callback costs a third of this endpoint's CPU (bench/README.md). Rejections are WARNING.
        log.debug(
            "ncs event",
            extra={
                "outcome": outcome,
                "notice_id": notice_id,
                "product_id": envelope.productId,
                "event_type": envelope.eventType,
                "sid": envelope.payload.get("sid"),
                "signature": scheme,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        body = b'{"status":"%s","noticeId":%s}' % (outcome.encode(), _json_string(notice_id))
        return _respond(start_response, 200, body)

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        length_header = environ.get("CONTENT_LENGTH") or ""
        if length_header:
            try:
                length = int(length_header)
            except ValueError:
                raise Rejection(400, "invalid_request", "Content-Length is not a number") from None
            if length < 0:
                raise Rejection(400, "invalid_request", "Content-Length is negative")
            if length > self.max_body_bytes:
                raise Rejection(413, "body_too_large", f"body larger than {self.max_body_bytes} bytes")
        media_type = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise Rejection(415, "unsupported_media_type", "Content-Type must be application/json")
        stream = environ["wsgi.input"]
        try:
            raw: bytes = stream.read(length) if length_header else stream.read(self.max_body_bytes + 1)
        except (OSError, ValueError):
            raise Rejection(400, "invalid_request", "could not read the request body") from None
        if len(raw) > self.max_body_bytes:
            raise Rejection(413, "body_too_large", f"body larger than {self.max_body_bytes} bytes")
        if length_header and len(raw) != length:
            raise Rejection(400, "invalid_request", "body shorter than Content-Length")
        return raw

    def _reject(self, start_response: StartResponse, rejection: Rejection, started: float) -> Iterable[bytes]:
        log.warning(
            "ncs request rejected",
            extra={
                "status": rejection.status,
                "code": rejection.code,
                "reason": rejection.message,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        body = b'{"error":{"code":"%s","message":%s}}' % (
            rejection.code.encode(),
            _json_string(rejection.message),
        )
        extra = [("Allow", "POST")] if rejection.status == 405 else []
        return _respond(start_response, rejection.status, body, extra)


def _respond(
    start_response: StartResponse, status: int, body: bytes, extra: list[tuple[str, str]] | None = None
) -> Iterable[bytes]:
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(_REASONS[status], headers + (extra or []))
    return [body]


def _json_string(text: str) -> bytes:
    return msgspec.json.encode(text)
