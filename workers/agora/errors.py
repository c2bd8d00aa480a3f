"""Errors of the Agora REST client, under the package root ``ServiceError``::

AgoraError                    any failure of an Agora REST call (carries the endpoint and its Outcome)
├── AgoraRequestError         the request was refused locally, before anything was sent (names the field)
├── AgoraApiError             Agora answered with something other than success (status, code, reason, request id)
└── AgoraTransportError       no answer: DNS, connection or timeout on every host tried

None of them ever holds the customer secret, storage keys, tokens or a request body: only what Agora said,
the endpoint, the field name and the host.
"""

from __future__ import annotations

from workers.agora.outcomes import Outcome
from workers.core.errors import ServiceError


class AgoraError(ServiceError):
    """Root of the Agora client's errors; ``outcome`` says what the caller should do next."""

    outcome: Outcome = Outcome.REJECTED

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary, safe to store and to show through the API."""
        return {
            "endpoint": self.endpoint,
            "status": None,
            "code": None,
            "reason": str(self),
            "requestId": None,
            "outcome": self.outcome.value,
        }


class AgoraRequestError(AgoraError):
    """A request Agora would reject; ``field`` is the wire path, e.g. ``clientRequest.storageConfig.bucket``."""

    def __init__(self, field: str, message: str, *, endpoint: str = "") -> None:
        super().__init__(f"{field}: {message}", endpoint=endpoint)
        self.field = field
        self.reason = message


class AgoraApiError(AgoraError):
    """Agora answered, but not with success."""

    def __init__(
        self,
        *,
        endpoint: str,
        status: int,
        code: int | None,
        reason: str,
        request_id: str | None,
        outcome: Outcome,
    ) -> None:
        code_text = "" if code is None else f" code {code}"
        super().__init__(f"{endpoint}: HTTP {status}{code_text}: {reason}", endpoint=endpoint)
        self.status = status
        self.code = code
        self.reason = reason
        self.request_id = request_id
        self.outcome = outcome

    def as_dict(self) -> dict[str, object]:
        """What Agora answered, JSON-ready."""
        return {
            "endpoint": self.endpoint,
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
            "requestId": self.request_id,
            "outcome": self.outcome.value,
        }


class AgoraTransportError(AgoraError):
    """Every host tried failed before an HTTP answer; worth retrying later."""

    outcome = Outcome.RETRY

    def __init__(self, message: str, *, endpoint: str, hosts: tuple[str, ...]) -> None:
        super().__init__(f"{endpoint}: {message}", endpoint=endpoint)
        self.hosts = hosts
