"""Writing a dead letter: one entry of the capped stream :data:`~workers.core.schema.DEAD_LETTERS` per thing
that failed for good. Any package may write one; reading, listing and retrying them is
:mod:`workers.deadletters` (it knows every kind)."""

from __future__ import annotations

import time
from typing import Any, cast

import redis

from workers.core import schema
from workers.core.redact import redact_text

KINDS = ("callback", "drain_job", "step_job", "notification")
MAXLEN = 10_000
MAX_REASON = 1000


class NotRetryableError(Exception):
    """The dead letter exists but cannot be retried (its recording is gone, its body is no envelope...)."""


def now_ms() -> int:
    return int(time.time() * 1000)


def write(pipe: redis.client.Pipeline, kind: str, reason: str, **fields: str | int | float | bytes) -> None:
    """Queue one dead letter on the caller's pipeline (a MULTI: the entry is written with the caller's other
    writes, or not at all). ``reason`` is redacted and cut to :data:`MAX_REASON`."""
    assert kind in KINDS, kind
    entry: dict[Any, Any] = {
        "kind": kind,
        "reason": redact_text(reason)[:MAX_REASON],
        "at": now_ms(),
        **fields,
    }
    pipe.xadd(schema.DEAD_LETTERS, entry, maxlen=MAXLEN)
    pipe.hincrby(schema.STATS, "dead_lettered", 1)
    pipe.hincrby(schema.STATS, f"dead_lettered:{kind}", 1)


def add(connection: redis.Redis, kind: str, reason: str, **fields: str | int | float | bytes) -> str:
    """Write one dead letter now; returns its id (see :func:`write`)."""
    pipe = connection.pipeline(transaction=True)
    write(pipe, kind, reason, **fields)
    entry_id = cast(bytes, pipe.execute()[0])
    return entry_id.decode()


def exception_reason(exc_info: tuple[Any, ...]) -> str:
    exc_type, exc = exc_info[0], exc_info[1] if len(exc_info) > 1 else None
    name = getattr(exc_type, "__name__", "Exception")
    text = str(exc) if exc is not None else ""
    return f"{name}: {text[:500]}" if text else name
