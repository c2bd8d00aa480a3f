"""Verification of NCS callback signatures (``docs/agora.md`` §1.4): a pure function over raw bytes.

``Agora-Signature-V2`` is the lower-case hex HMAC-SHA256 of the raw body keyed by the NCS secret;
``Agora-Signature`` the same with SHA-1. V2 is preferred; V1 is accepted only when V2 is absent (a wrong
V2 is never rescued by a V1). Every configured secret is tried, so secrets can be rotated. Comparison is
constant-time on bytes, so no header value, however malformed, raises anything but SignatureError.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from webhook_service.errors import SignatureError

HEADER_V2 = "Agora-Signature-V2"
HEADER_V1 = "Agora-Signature"

_MAX_HEADER_LENGTH = 256


def verify_signature(
    body: bytes, signature_v2: str | None, signature_v1: str | None, secrets: Sequence[bytes]
) -> str:
    """Return the scheme that matched (``"v2"`` or ``"v1"``); raise SignatureError if none did."""
    if not secrets:
        raise SignatureError("no NCS secret is configured (AGORA_NCS_SECRETS)")
    if signature_v2 is not None:
        _match(body, signature_v2, secrets, hashlib.sha256, HEADER_V2)
        return "v2"
    if signature_v1 is not None:
        _match(body, signature_v1, secrets, hashlib.sha1, HEADER_V1)
        return "v1"
    raise SignatureError(f"missing {HEADER_V2} (or {HEADER_V1}) header")


def sign(body: bytes, secret: bytes, scheme: str = "v2") -> str:
    """The header value Agora would send for ``body`` (used by tests, the emulator and the benchmark)."""
    digest = hashlib.sha256 if scheme == "v2" else hashlib.sha1
    return hmac.new(secret, body, digest).hexdigest()


def _match(
    body: bytes, header: str, secrets: Sequence[bytes], digest: Callable[..., hashlib._Hash], name: str
) -> None:
    presented = header.strip().lower().encode("utf-8", "replace")[:_MAX_HEADER_LENGTH]
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, body, digest).hexdigest().encode("ascii")
        matched |= hmac.compare_digest(expected, presented)
    if not matched:
        raise SignatureError(f"{name} does not match the body")
