"""Where Agora's REST API is reached, and how a call survives an unreachable host (``docs/agora.md`` §3.1).

The documented ladder: retry the primary domain; then the other primary (``api.agora.io`` ↔ ``api.sd-rtn.com``),
skipped when the failure was a network error rather than DNS; then the neighbouring regional domains, with
backoff 1 s, 3 s, 6 s between tries. ``AGORA_API_BASE_URL`` replaces the whole ladder with one base URL.

One ``requests.Session`` per process: :func:`process_session` makes a fresh one in a forked child, so pooled
connections are never shared across a fork. No background threads.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

import requests

GLOBAL_DOMAINS = ("api.agora.io", "api.sd-rtn.com")
CHINA_DOMAINS = ("api.sd-rtn.com", "api.agora.io")
#: Regional prefixes per AGORA_REGION, nearest first (both suffixes exist for every prefix).
REGION_PREFIXES: dict[str, tuple[str, ...]] = {
    "us": ("api-us-west-1", "api-us-east-1"),
    "eu": ("api-eu-west-1", "api-eu-central-1"),
    "ap": ("api-ap-southeast-1", "api-ap-northeast-1"),
    "cn": ("api-cn-east-1", "api-cn-north-1"),
}
BACKOFF_SECONDS = (1.0, 3.0, 6.0)


@dataclass(frozen=True)
class Timeout:
    """Seconds to connect and to wait for an answer, per attempt. ``Timeout(10)`` sets both."""

    connect: float = 3.05
    read: float = 10.0

    def as_requests(self) -> tuple[float, float]:
        """The ``timeout=`` argument of requests."""
        return (self.connect, self.read)


@dataclass(frozen=True)
class HostPlan:
    """The base URLs a call may try, in order, and the pause before each retry.

    ``dns_fallbacks`` are tried only when the failure was name resolution (step 2 of the ladder).
    """

    primary: str
    dns_fallbacks: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    backoff: tuple[float, ...] = BACKOFF_SECONDS

    @classmethod
    def single(cls, base_url: str, *, retries: int = 1, backoff: tuple[float, ...] = (1.0,)) -> HostPlan:
        """One base URL (``AGORA_API_BASE_URL``), retried ``retries`` times on transport errors."""
        base = base_url.rstrip("/")
        return cls(primary=base, fallbacks=(base,) * retries, backoff=backoff)

    @classmethod
    def for_region(cls, region: str) -> HostPlan:
        """Agora's ladder for a region: primary, primary again, other primary (DNS only), regional domains."""
        region = region.lower()
        primary, other = CHINA_DOMAINS if region == "cn" else GLOBAL_DOMAINS
        prefixes = REGION_PREFIXES.get(region, REGION_PREFIXES["us"])
        suffix = primary.split(".", 1)[1]
        regional = tuple(f"https://{prefix}.{suffix}" for prefix in prefixes)
        return cls(
            primary=f"https://{primary}",
            dns_fallbacks=(f"https://{other}",),
            fallbacks=(f"https://{primary}", *regional),
        )

    def attempts(self, dns_failure: bool) -> list[str]:
        """Base URLs to try after the primary failed, given whether it failed at DNS."""
        rest = list(self.fallbacks)
        if dns_failure:
            rest[1:1] = self.dns_fallbacks
        return rest

    def pause(self, retry_index: int) -> float:
        """Seconds to wait before retry number ``retry_index`` (0-based)."""
        if not self.backoff:
            return 0.0
        return self.backoff[min(retry_index, len(self.backoff) - 1)]


def is_dns_failure(exc: BaseException) -> bool:
    """True when a transport error came from name resolution (urllib3 wraps ``socket.gaierror``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or type(current).__name__ == "NameResolutionError":
            return True
        for arg in current.args:
            if isinstance(arg, BaseException) and is_dns_failure(arg):
                return True
        current = current.__cause__ or current.__context__
    return False


_sessions: dict[int, requests.Session] = {}
_sessions_lock = threading.Lock()


def process_session() -> requests.Session:
    """This process's shared ``requests.Session`` (a new one after ``fork``)."""
    pid = os.getpid()
    session = _sessions.get(pid)
    if session is None:
        with _sessions_lock:
            session = _sessions.get(pid)
            if session is None:
                _sessions.clear()  # sessions inherited from a parent process are never used again
                session = requests.Session()
                _sessions[pid] = session
    return session
