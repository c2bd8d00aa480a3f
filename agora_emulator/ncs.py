"""The NCS sender: posts each session's callbacks to the notify URL the way Agora's NCS does (§1.5).

Each callback is signed with both headers (``Agora-Signature`` HMAC-SHA1, ``Agora-Signature-V2``
HMAC-SHA256, hex, over the raw body). A delivery succeeds only on HTTP 200 within ``timeout`` seconds (10 on
Agora); otherwise NCS resends immediately, then after growing gaps, at most 3 times. ``notifyMs`` is updated on
every resend, ``noticeId`` never. The ``ncs`` fault adds loss, duplicates, delays and reordering.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import random
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import requests

from agora_emulator.clock import Clock, Scheduler

log = logging.getLogger(__name__)

#: Emulated seconds before each resend: immediately, then growing gaps; 3 resends at most.
RESEND_GAPS = (0.0, 2.0, 6.0)


def signature_headers(body: bytes, secret: str) -> dict[str, str]:
    """Both of Agora's signature headers for a raw body."""
    key = secret.encode()
    return {
        "Content-Type": "application/json",
        "Agora-Signature": hmac.new(key, body, hashlib.sha1).hexdigest(),
        "Agora-Signature-V2": hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


class Delivery:
    """One callback: its envelope, and every attempt to deliver it."""

    def __init__(self, envelope: dict[str, Any], duplicate_of: str | None = None) -> None:
        self.envelope = envelope
        self.duplicate = duplicate_of is not None
        self.attempts: list[dict[str, Any]] = []
        self.state = "pending"  # pending | delivered | failed | lost

    def to_json(self) -> dict[str, Any]:
        """What was sent and what came back."""
        payload = self.envelope["payload"]
        return {
            "noticeId": self.envelope["noticeId"],
            "eventType": self.envelope["eventType"],
            "sid": payload.get("sid"),
            "cname": payload.get("cname"),
            "uid": payload.get("uid"),
            "sequence": payload.get("sequence"),
            "duplicate": self.duplicate,
            "state": self.state,
            "attempts": self.attempts,
            "envelope": self.envelope,
        }


class NcsSender:
    """Schedules, signs, posts and resends callbacks."""

    def __init__(
        self,
        *,
        clock: Clock,
        scheduler: Scheduler,
        rng: random.Random,
        notify_url: str | None,
        secret: str,
        timeout: float = 10.0,
        history: int = 20_000,
    ) -> None:
        self.clock = clock
        self.scheduler = scheduler
        self.rng = rng
        self.notify_url = notify_url
        self.secret = secret
        self.timeout = timeout
        self.deliveries: deque[Delivery] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="emulator-ncs")
        self._local = threading.local()

    def send(self, envelope: dict[str, Any], fault: dict[str, float]) -> None:
        """Queue one callback, applying the ``ncs`` fault parameters (already drawn for this channel)."""
        with self._lock:
            delivery = Delivery(envelope)
            self.deliveries.append(delivery)
            if self.rng.random() < fault.get("loss", 0.0):
                delivery.state = "lost"
                return
            copies = [delivery]
            if self.rng.random() < fault.get("duplicate", 0.0):
                copy = Delivery(dict(envelope), duplicate_of=envelope["noticeId"])
                self.deliveries.append(copy)
                copies.append(copy)
            delays = [
                fault.get("delay", 0.0) + self.rng.uniform(0.0, fault.get("reorder", 0.0)) for _ in copies
            ]
        for copy, delay in zip(copies, delays, strict=True):
            self.scheduler.call_later(delay, functools.partial(self._submit, copy))

    def stop(self) -> None:
        """Stop posting (pending deliveries are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, delivery: Delivery) -> None:
        try:
            self._pool.submit(self._attempt, delivery)
        except RuntimeError:  # pool shut down
            pass

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _attempt(self, delivery: Delivery) -> None:
        if not self.notify_url:
            delivery.state = "failed"
            return
        envelope = dict(delivery.envelope, notifyMs=self.clock.wall_ms())
        body = msgspec.json.encode(envelope)
        record: dict[str, Any] = {"notifyMs": envelope["notifyMs"], "status": None, "error": None}
        try:
            response = self._session().post(
                self.notify_url, data=body, headers=signature_headers(body, self.secret), timeout=self.timeout
            )
            record["status"] = response.status_code
        except requests.RequestException as exc:
            record["error"] = type(exc).__name__
        with self._lock:
            delivery.attempts.append(record)
            if record["status"] == 200:
                delivery.state = "delivered"
                return
            resends = len(delivery.attempts) - 1
            if resends >= len(RESEND_GAPS):
                delivery.state = "failed"
                log.info("callback given up", extra={"notice_id": envelope["noticeId"]})
                return
        self.scheduler.call_later(RESEND_GAPS[resends], lambda: self._submit(delivery))
