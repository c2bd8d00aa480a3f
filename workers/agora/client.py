"""A small client for Agora's Cloud Recording REST API v1 (``docs/agora.md`` §3).

Every call: the body is checked locally first (:mod:`workers.agora.bodies`), then sent with Basic auth,
``Content-Type: application/json;charset=utf-8`` and a timeout, over the host ladder of
:mod:`workers.agora.transport`. A success returns a lenient view of the answer; anything else raises an
:class:`~workers.agora.errors.AgoraError` whose ``outcome`` says what to do (:mod:`workers.agora.outcomes`).
Status-level retries (5xx, 206/65, 429) are the caller's decision: the orchestration owns backoff, attempt
counts and the shared rate limit. Only transport failures are retried here, along the documented ladder.

One log line per attempt (endpoint, status, code, request id, host, duration); never a body, a key or a token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import msgspec
import requests

from workers.agora.bodies import (
    MODES,
    AcquireRequest,
    Mode,
    StartRequest,
    StopRequest,
    UpdateLayoutRequest,
    UpdateRequest,
    fail,
)
from workers.agora.errors import AgoraApiError, AgoraRequestError, AgoraTransportError
from workers.agora.outcomes import Outcome, classify
from workers.agora.responses import Answer, RecordingReport, as_str
from workers.agora.transport import HostPlan, Timeout, is_dns_failure, process_session
from workers.core.coerce import as_int
from workers.core.config import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json;charset=utf-8"
USER_AGENT = "agora-recording-companion/0.1"


class AgoraClient:
    """Calls acquire, start, query, update, updateLayout and stop for one App ID."""

    def __init__(
        self,
        *,
        app_id: str,
        customer_id: str,
        customer_secret: str,
        hosts: HostPlan,
        session: requests.Session | None = None,
        timeout: Timeout | None = None,
        sleep: Callable[[float], None] = time.sleep,
        before_retry: Callable[[], bool] | None = None,
    ) -> None:
        if not app_id:
            raise AgoraRequestError("appid", "an App ID is required")
        self.app_id = app_id
        self._auth = (customer_id, customer_secret)
        self.hosts = hosts
        self._session = session
        self.timeout = timeout or Timeout()
        self._sleep = sleep
        #: Asked before each retry on another (or the same) host: False gives the call up (a shared rate
        #: limit counts every request that reaches Agora, retries included).
        self.before_retry = before_retry
        #: Called right before a request's first attempt leaves (the rate limit checks its slot is fresh).
        self.before_send: Callable[[], None] | None = None
        #: Told of every request sent (endpoint, outcome or "transport_error", seconds), for the metrics; set by
        #: the orchestration (:func:`workers.core.measure.record_agora`). Its failures never reach the call.
        self.observe: Callable[[str, str, float], None] | None = None

    def __repr__(self) -> str:
        return f"AgoraClient(app_id={self.app_id!r}, hosts={self.hosts.primary!r})"

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AgoraClient:
        """A client for the configured App ID, credentials and region (or ``AGORA_API_BASE_URL``)."""
        if settings.agora_api_base_url:
            hosts = HostPlan.single(settings.agora_api_base_url)
        else:
            hosts = HostPlan.for_region(settings.agora_region)
        kwargs.setdefault("timeout", Timeout(read=settings.agora_read_timeout_seconds))
        return cls(
            app_id=settings.agora_app_id,
            customer_id=settings.agora_customer_id,
            customer_secret=settings.agora_customer_secret,
            hosts=hosts,
            **kwargs,
        )

    def worst_case_seconds(self) -> float:
        """The longest one call can take: every host of the ladder timing out, with the pauses between."""
        attempts = 1 + len(self.hosts.fallbacks) + len(self.hosts.dns_fallbacks)
        pauses = sum(self.hosts.pause(i) for i in range(attempts - 1))
        return attempts * (self.timeout.connect + self.timeout.read) + pauses

    @property
    def session(self) -> requests.Session:
        """The injected session, else this process's shared one."""
        return self._session if self._session is not None else process_session()

    # -- endpoints ---------------------------------------------------------------------------------------

    def acquire(self, body: AcquireRequest, *, mode: Mode | None = None) -> Answer:
        """Reserve a resource ID (valid 5 minutes, single use); ``mode`` checks the scene fits what follows."""
        body.check(mode)
        answer = self._call("acquire", "POST", "acquire", body.to_json())
        if not answer.resource_id:
            raise self._malformed("acquire", answer, "resourceId")
        return answer

    def start(self, resource_id: str, mode: Mode, body: StartRequest) -> Answer:
        """Start recording on a fresh resource ID; the answer carries the ``sid``."""
        _check_mode(mode)
        _check_id("resourceId", resource_id)
        body.check(mode)
        path = f"resourceid/{quote(resource_id, safe='')}/mode/{mode}/start"
        answer = self._call("start", "POST", path, body.to_json())
        if not answer.sid:
            raise self._malformed("start", answer, "sid")
        return answer

    def query(self, resource_id: str, sid: str, mode: Mode) -> RecordingReport:
        """The recording's status and files, from the service itself (the truth, unlike callbacks)."""
        _check_mode(mode)
        answer = self._call("query", "GET", self._session_path(resource_id, sid, mode, "query"), None)
        return RecordingReport(answer.raw, answer.request_id)

    def update(self, resource_id: str, sid: str, mode: Mode, body: UpdateRequest) -> Answer:
        """Change subscriptions, pause/resume a web recording, replace its CDN URL, or refresh STS credentials."""
        _check_mode(mode)
        body.check(mode)
        return self._call(
            "update", "POST", self._session_path(resource_id, sid, mode, "update"), body.to_json()
        )

    def update_layout(self, resource_id: str, sid: str, body: UpdateLayoutRequest) -> Answer:
        """Replace the whole layout of a mix recording."""
        body.check("mix")
        path = self._session_path(resource_id, sid, "mix", "updateLayout")
        return self._call("updateLayout", "POST", path, body.to_json())

    def stop(self, resource_id: str, sid: str, mode: Mode, body: StopRequest) -> RecordingReport:
        """Stop; a synchronous stop waits for the upload and reports ``uploadingStatus`` and the files."""
        _check_mode(mode)
        body.check(mode)
        answer = self._call(
            "stop", "POST", self._session_path(resource_id, sid, mode, "stop"), body.to_json()
        )
        return RecordingReport(answer.raw, answer.request_id)

    # -- transport ---------------------------------------------------------------------------------------

    @staticmethod
    def _session_path(resource_id: str, sid: str, mode: str, action: str) -> str:
        _check_id("resourceId", resource_id)
        _check_id("sid", sid)
        return f"resourceid/{quote(resource_id, safe='')}/sid/{quote(sid, safe='')}/mode/{mode}/{action}"

    def _call(self, endpoint: str, method: str, path: str, body: dict[str, Any] | None) -> Answer:
        """Send one request along the host ladder; return the answer or raise what it means."""
        suffix = f"/v1/apps/{quote(self.app_id, safe='')}/cloud_recording/{path}"
        data = None if body is None else msgspec.json.encode(body)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = CONTENT_TYPE
        bases = [self.hosts.primary]
        tried: list[str] = []
        retry_index = 0
        if self.before_send is not None:
            self.before_send()
        while bases:
            base = bases.pop(0)
            tried.append(base)
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    base + suffix,
                    data=data,
                    headers=headers,
                    auth=self._auth,
                    timeout=self.timeout.as_requests(),
                )
            except requests.RequestException as exc:
                self._observed(endpoint, "transport_error", time.monotonic() - started)
                dns = is_dns_failure(exc)
                log.warning(
                    "agora call failed before an answer",
                    extra={"endpoint": endpoint, "host": base, "error": type(exc).__name__, "dns": dns},
                )
                if len(tried) == 1:
                    bases = self.hosts.attempts(dns)
                if not bases:
                    raise AgoraTransportError(
                        f"no answer from {len(tried)} host(s): {type(exc).__name__}",
                        endpoint=endpoint,
                        hosts=tuple(tried),
                    ) from None
                self._sleep(self.hosts.pause(retry_index))
                retry_index += 1
                if self.before_retry is not None and not self.before_retry():
                    raise AgoraTransportError(
                        f"no answer from {len(tried)} host(s): {type(exc).__name__}; no rate-limit slot to retry",
                        endpoint=endpoint,
                        hosts=tuple(tried),
                    ) from None
                continue
            return self._answer(endpoint, base, response, time.monotonic() - started)
        raise AgoraTransportError("no host to try", endpoint=endpoint, hosts=tuple(tried))  # pragma: no cover

    def _answer(self, endpoint: str, base: str, response: requests.Response, seconds: float) -> Answer:
        request_id = response.headers.get("X-Request-ID") or response.headers.get("X-Request-Id")
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = None
        parsed: dict[str, Any] = payload if isinstance(payload, dict) else {}
        code = as_int(parsed.get("code"))
        reason = as_str(parsed.get("reason")) or as_str(parsed.get("message")) or ""
        if code is None and response.status_code == 404 and "failed to find worker" in reason:
            code = 404
        outcome = classify(endpoint, response.status_code, code)
        final = outcome if payload is not None or outcome is not Outcome.OK else Outcome.RETRY
        self._observed(endpoint, final.value, seconds)
        log.info(
            "agora call answered",
            extra={
                "endpoint": endpoint,
                "host": base,
                "status": response.status_code,
                "code": code,
                "request_id": request_id,
                "outcome": outcome.value,
                "ms": round(seconds * 1000, 1),
            },
        )
        if outcome is Outcome.OK and payload is not None:
            return Answer(parsed, request_id)
        if not reason:
            reason = response.text[:200] if payload is None else (response.reason or "")
        raise AgoraApiError(
            endpoint=endpoint,
            status=response.status_code,
            code=code,
            reason=reason,
            request_id=request_id,
            outcome=final,
        )

    def _observed(self, endpoint: str, outcome: str, seconds: float) -> None:
        if self.observe is None:
            return
        try:
            self.observe(endpoint, outcome, seconds)
        except Exception:  # noqa: BLE001 (a measurement never breaks the call it measures)
            log.debug("agora request not measured", exc_info=True)

    @staticmethod
    def _malformed(endpoint: str, answer: Answer, field: str) -> AgoraApiError:
        return AgoraApiError(
            endpoint=endpoint,
            status=200,
            code=None,
            reason=f"answer without {field}",
            request_id=answer.request_id,
            outcome=Outcome.RETRY,
        )


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise fail("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")


def _check_id(field: str, value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise fail(field, "must be a non-empty string")
